"""The reader: statements one at a time, labels, equates and instructions.

:class:`Reader` combines the directive mixins into one reader: it splits each
statement into labels, a mnemonic and operands, follows conditionals, expands
macros, hands a directive to its concern's handler and lays an instruction
out (an ``ldr Rt, =expr`` with its literal-pool entry).  Labels and the
symbols of ``=``, ``.set``, ``.equ``, ``.equiv`` and ``.eqv`` are defined here.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from emu.asm.expr import (
    ExpressionError,
    NotAbsolute,
    UndefinedSymbol,
    Value,
    evaluate,
)
from emu.asm.reader.conditionals import CONDITIONALS, ConditionalReading
from emu.asm.reader.data import DATA_DIRECTIVES, DATA_WIDTHS, IGNORED, DataReading
from emu.asm.reader.files import FILE_DIRECTIVES, FileReading
from emu.asm.reader.items import PREFIX, EquateDef, Label, PoolEntry, ReadError
from emu.asm.reader.macros import MACRO_DIRECTIVES, MacroReading
from emu.asm.reader.sections import SECTION_DIRECTIVES, SectionReading
from emu.asm.reader.state import MAX_STATEMENTS, Frame
from emu.asm.reader.syntax import LABEL, SYMBOL, split_operands
from emu.asm.source import Origin, SourceLocation

__all__ = ["Reader"]

_ASSIGN = re.compile(r"([A-Za-z_.$][\w.$]*)\s*=(?!=)\s*(.*)\Z", re.S)
_REQ = re.compile(r"([A-Za-z_][\w]*)\s+\.req\s+([A-Za-z_][\w]*)\s*\Z", re.I)
_NAME = re.compile(r"[A-Za-z_.$][\w.$]*")
_MNEMONIC = re.compile(r"[A-Za-z][\w.]*\Z")
_BAD_CHARACTER = re.compile(r"[^\t\x20-\x7e]")


class Reader(MacroReading, ConditionalReading, SectionReading, DataReading, FileReading):
    """Reads preprocessed source lines into sections of items (see the package docstring)."""

    def __init__(self, include_dirs: Sequence[str | Path] = (),
                 rename: Mapping[str, str] | None = None) -> None:
        super().__init__(include_dirs, rename)
        self._current = self._section(".text", None, None, None)

    # -- driving -------------------------------------------------------------

    def read(self, lines: Sequence[tuple[SourceLocation, str]]) -> None:
        """Read every line; raises ReadError at the first statement GNU as would reject."""
        self._frames.append(Frame(deque(self._pieces(lines)), "file"))
        while (piece := self._next_piece()) is not None:
            origin, text = piece
            self._seq += 1
            if self._seq > MAX_STATEMENTS:
                self._fail(f"more than {MAX_STATEMENTS} statements after expanding macros "
                           "and repetitions (a runaway .rept or recursion?)", origin)
            self._origin = origin
            if self._statement(origin, text):
                break
        if self._conditionals:
            opened = self._conditionals[0]
            raise ReadError("end of file inside conditional: this .if has no .endif",
                            opened.origin, opened.seq)
        for name, (origin, seq) in self._forward.items():
            if name not in self.labels:
                written = self.local_names[name]
                raise ReadError(f"undefined local label `{written}' (no `{written[:-1]}:' "
                                "after this line)", origin, seq)
        for section in list(self._pool_order):
            self._dump_pool(section)

    def _next_piece(self) -> tuple[Origin, str] | None:
        while self._frames:
            frame = self._frames[-1]
            if frame.pieces:
                return frame.pieces.popleft()
            self._frames.pop()
        return None

    # -- one statement ---------------------------------------------------------

    def _statement(self, origin: Origin, text: str) -> bool:
        """Process one statement; True at ``.end``."""
        if text.startswith("#"):
            return False  # a line comment for GNU as (cpp leaves "# text" lines alone)
        labels: list[str] = []
        body = text
        while match := LABEL.match(body):
            labels.append(match.group(1))
            body = body[match.end():]
        body = body.strip()
        # The mnemonic is a name: it stops at the first character that cannot
        # be part of one, as in GNU as (a macro call may be "PRINT(...)").
        name = _NAME.match(body)
        mnemonic = (name.group(0) if name else body.split(None, 1)[0] if body else "").lower()
        if mnemonic in CONDITIONALS or mnemonic.startswith(".if"):
            self._conditional(mnemonic, body[len(mnemonic):].strip())
            return False
        if not self._active:
            return False
        bad = _BAD_CHARACTER.search("".join(re.split(r'("(?:[^"\\]|\\.)*")', text)[::2]))
        if bad is not None:
            if bad.group(0) == "\ufffd":  # what an undecodable byte became
                self._fail("invalid byte in source: not UTF-8 text (a binary file?)")
            self._fail(f"invalid character {ascii(bad.group(0))} in source (a binary file?)")
        for label in labels:
            self._define_label(label, origin)
        if not body:
            return False
        if (req := _REQ.match(body)) is not None:
            self._aliases[req.group(1).lower()] = req.group(2)
            return False
        if (assign := _ASSIGN.match(body)) is not None and not self._is_directive(mnemonic):
            self._equate(assign.group(1), assign.group(2), "set")
            return False
        operands = body[len(mnemonic):].strip()
        if mnemonic in self._macros and not self._is_directive(mnemonic):
            self._expand_macro(self._macros[mnemonic], operands, origin)
            return False
        if mnemonic.startswith("."):
            return self._directive(mnemonic, operands, body)
        self._instruction(mnemonic, operands, body)
        return False

    @staticmethod
    def _is_directive(name: str) -> bool:
        return name.startswith(".") and (
            name in _DIRECTIVE_NAMES or name in DATA_WIDTHS or name in IGNORED
            or name in CONDITIONALS or name.startswith(".cfi_"))

    # -- labels and equates ------------------------------------------------------

    def _define_label(self, name: str, origin: Origin) -> None:
        if name.isdigit():
            count = self._numeric.get(name, 0)
            self._numeric[name] = count + 1
            name = f"{PREFIX}n{name}_{count}"
            self._forward.pop(name, None)
        elif name.startswith(PREFIX):
            self._fail(f"symbol names starting with {PREFIX} are reserved for bootemu")
        if name in self.labels or name in self.equates:
            self._fail(f"symbol `{name}' is already defined")
        section = self._current
        self.labels[name] = Label(name, section, section.size, origin, self._seq)

    def _equate(self, name: str, expression: str, kind: str) -> None:
        if not SYMBOL.match(name):
            self._fail(f"invalid symbol name `{name}'")
        if name in self.labels:
            self._fail(f"symbol `{name}' is already defined")
        if kind == "equiv" and name in self.equates:
            self._fail(f"symbol `{name}' is already defined")
        expression = self._local_references(expression)
        if not expression.strip():
            self._fail("missing expression")
        try:
            value: Value | None = evaluate(expression, self._resolve_now)
        except UndefinedSymbol:
            value = None  # refers to a later label: evaluated after layout
        except NotAbsolute:
            value = None
        except ExpressionError as err:
            self._fail(str(err))
        definition = EquateDef(name, self._seq, expression, self._origin, self._current,
                               self._current.size, value)
        self.equates.setdefault(name, []).append(definition)

    def equate_at(self, name: str, seq: int) -> EquateDef | None:
        """The definition of an equate in force at statement ``seq`` (the last one before it)."""
        definitions = self.equates.get(name)
        if not definitions:
            return None
        index = bisect.bisect_left([d.seq for d in definitions], seq) - 1
        return definitions[index] if index >= 0 else None

    def _d_equate(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if len(parts) < 2 or not parts[0]:
            self._fail(f"expected comma after name -- `{body}'")
        symbol = parts[0]
        expression = operands.split(",", 1)[1]
        self._equate(symbol, expression, "equiv" if name == ".equiv" else "set")

    # -- instructions --------------------------------------------------------------

    def _instruction(self, mnemonic: str, operands: str, body: str) -> None:
        if not _MNEMONIC.match(mnemonic):
            self._fail(f"unknown mnemonic `{mnemonic}' -- `{body}'")
        operands = self._local_references(self._substitute_aliases(operands))
        if self._current.kind == "bss":
            self._fail(f"attempt to store non-zero value in section `{self._current.name}'")
        if self._current.size % 4:
            self._align(4, bytes(1), None, body, False)
        self._current.align = max(self._current.align, 4)
        pool: PoolEntry | None = None
        if mnemonic in ("ldr", "ldrsw") and "=" in operands:
            pool = self._literal(mnemonic, operands, body)
        self._emit("insn", 4, body, mnemonic=mnemonic, operands=operands, pool=pool)

    def _d_nop(self, name: str, operands: str, body: str) -> None:
        self._instruction("nop", "", "nop")

    # -- directives ------------------------------------------------------------------

    def _directive(self, name: str, operands: str, body: str) -> bool:
        """Hand a directive to its concern's handler; True at ``.end``."""
        if name in DATA_WIDTHS:
            self._data(name, DATA_WIDTHS[name], operands, body)
            return False
        if name in IGNORED or name.startswith(".cfi_"):
            return False
        handler = _DIRECTIVES.get(name)
        if handler is None:
            self._fail(f"unknown pseudo-op: `{name}'")
        return bool(handler(self, name, operands, body))


_DIRECTIVES: dict[str, Callable[..., object]] = {
    **DATA_DIRECTIVES, **SECTION_DIRECTIVES, **MACRO_DIRECTIVES, **FILE_DIRECTIVES,
    ".nop": Reader._d_nop,
    ".equ": Reader._d_equate, ".set": Reader._d_equate, ".equiv": Reader._d_equate,
    ".eqv": Reader._d_equate,
}
_DIRECTIVE_NAMES = frozenset(_DIRECTIVES)
