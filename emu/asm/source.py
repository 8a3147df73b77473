"""Types shared by the assembler front-end's modules: source locations and errors.

:class:`SourceLocation` names a line of a source file, :class:`Origin` the
statement behind an item (with the macro it came from), and
:class:`AssemblyError` (with its subclass :class:`KeystoneCrash`) is the one
error every stage of the front-end raises to its callers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AssemblyError", "KeystoneCrash", "Origin", "SourceLocation"]


@dataclass(frozen=True)
class SourceLocation:
    """A line of a source file, as the user named the file."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Origin:
    """Where a statement comes from.

    ``location`` is the line of the top-level source that produced it (for a
    macro expansion, the line invoking the macro: what GNU as's line table and
    a debugger show); ``body`` is the line inside the macro definition, and
    ``macro`` the macro's name, when the statement came from a macro.
    """

    location: SourceLocation
    body: SourceLocation | None = None
    macro: str | None = None

    def describe(self, message: str) -> str:
        """``message``, followed by where in which macro, when it came from one."""
        if self.macro is None or self.body is None:
            return message
        return f"{message} (in macro `{self.macro}' at {self.body})"


class AssemblyError(Exception):
    """A source that cannot be assembled: a user's mistake, never a traceback.

    ``str()`` gives ``file:line: message``, or ``file: message`` when no line
    is known, in the style of GNU as.
    """

    def __init__(
        self, message: str, location: SourceLocation | None, *, file: str | None = None
    ) -> None:
        self.message = message
        self.location = location
        self.file = location.file if location is not None else file
        super().__init__(str(self))

    def __str__(self) -> str:
        # One line whatever the message holds (``.error "a\nb"``, a file name
        # with a newline): the error is one line of stderr.
        message = _one_line(self.message)
        if self.location is not None:
            return f"{self.location}: {message}"
        if self.file:
            return f"{_one_line(self.file)}: {message}"
        return message

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only ``file`` would be lost by the default pickling.
        return (_rebuild_error, (type(self), self.message, self.location, self.file))


class KeystoneCrash(AssemblyError):
    """Keystone aborted, crashed or hung on a statement (in its child process).

    The statement is named by ``location``; the caller's process is unharmed.
    """


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but the tab


def _one_line(text: str) -> str:
    """``text`` with control characters other than the tab written as escapes."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def _rebuild_error(cls: type[AssemblyError], message: str, location: SourceLocation | None,
                   file: str | None) -> AssemblyError:
    return cls(message, location, file=file)
