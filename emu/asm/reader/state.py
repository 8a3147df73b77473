"""What a reader knows while reading, and the primitives every directive uses.

:class:`ReaderState` holds the input (a stack of frames: files, macro
expansions, repetitions), the sections with their items, labels, equates and
the stacks of open macros, conditionals and sections, and provides what each
concern's directives build on: failing with GNU as's message at the current
statement, evaluating an expression while reading, rewriting numeric label
references, and emitting items and alignment.  Each concern's directives are a
mixin subclass of it (``macros``, ``conditionals``, ``sections``, ``data``,
``files``); :class:`emu.asm.reader.core.Reader` combines them.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from emu.asm.expr import (
    ExpressionError,
    NotAbsolute,
    UndefinedSymbol,
    Value,
    evaluate,
)
from emu.asm.reader.items import (
    PREFIX,
    EquateDef,
    Item,
    Label,
    PoolEntry,
    ReadError,
    Section,
)
from emu.asm.reader.syntax import outside_strings, split_statements
from emu.asm.source import Origin, SourceLocation

__all__ = ["MAX_IMAGE_BYTES", "MAX_STATEMENTS", "Conditional", "Frame", "Macro", "ReaderState"]

NOP = 0xD503201F
MAX_STATEMENTS = 1_000_000  # a runaway .rept must fail, not hang; 1 M stays under 1 GiB
# The most bytes of output a source may produce: far above any boot image, low
# enough that a typo like ``.skip 0x10000000000`` fails with file:line before
# the bytes are allocated, not with a MemoryError.
MAX_IMAGE_BYTES = 256 << 20

_NUMERIC_REFERENCE = re.compile(r"(?<![\w.$])(\d+)([bf])(?![\w.$])")


@dataclass
class Macro:
    """A ``.macro`` definition: parameters and body statements."""

    name: str
    params: list[tuple[str, str, str]]  # (name, default, "" | "req" | "vararg")
    body: list[tuple[Origin, str]]
    origin: Origin


@dataclass
class Frame:
    """Statements still to read from one input: a file, a macro expansion or a repetition."""

    pieces: deque[tuple[Origin, str]]
    kind: str  # file, macro, repeat
    name: str | None = None


@dataclass
class Conditional:
    """An open ``.if``: which of its branches is being read."""

    active: bool  # this branch's statements are processed
    taken: bool  # some branch of this .if was true already
    parent_active: bool
    origin: Origin
    seq: int
    else_seen: bool = False


class ReaderState:
    """A reader's state and the primitives its directives share (see the module docstring)."""

    # The section statements go to; the reader opens ``.text`` first.
    _current: Section

    def __init__(self, include_dirs: Sequence[str | Path] = (),
                 rename: Mapping[str, str] | None = None) -> None:
        self.include_dirs = [Path(directory) for directory in include_dirs]
        self.rename = dict(rename or {})
        self.sections: list[Section] = []
        self.items: list[Item] = []  # every item, in reading order
        self.labels: dict[str, Label] = {}
        self.equates: dict[str, list[EquateDef]] = {}
        self.sizes: list[tuple[str, str, Item]] = []  # (symbol, expression, position marker)
        self.globals: list[str] = []
        self.weak: set[str] = set()
        self.warnings: list[str] = []
        self.dependencies: list[Path] = []  # files read by .include/.incbin
        self.local_names: dict[str, str] = {}  # invented name -> "1f"/"1b" as written
        self._macros: dict[str, Macro] = {}
        self._aliases: dict[str, str] = {}  # .req
        self._numeric: dict[str, int] = {}  # numeric label -> definitions so far
        self._forward: dict[str, tuple[Origin, int]] = {}  # invented forward name -> first use
        self._pools: dict[tuple[int, int], list[PoolEntry]] = {}
        self._pool_order: list[Section] = []
        self._frames: list[Frame] = []
        self._conditionals: list[Conditional] = []
        self._section_stack: list[tuple[Section, Section | None]] = []
        self._macro_number = 0
        self._seq = 0
        self._image_bytes = 0
        self._expanded_bytes = 0  # text produced by macro expansions (bounded)
        self._by_name: dict[str, Section] = {}
        self._previous: Section | None = None
        self._origin = Origin(SourceLocation("<none>", 0))

    # -- input and errors ------------------------------------------------------------

    @staticmethod
    def _pieces(lines: Sequence[tuple[SourceLocation, str]]) -> Iterator[tuple[Origin, str]]:
        for location, text in lines:
            origin = Origin(location)
            for piece in split_statements(text):
                yield origin, piece

    def _fail(self, message: str, origin: Origin | None = None) -> NoReturn:
        raise ReadError(message, origin or self._origin, self._seq)

    # -- values while reading --------------------------------------------------------

    def _resolve_now(self, name: str) -> Value:
        """Value of a symbol at this point of reading (section-relative for labels)."""
        if name == ".":
            return Value(self._current.size, self._current)
        label = self.labels.get(name)
        if label is not None:
            return Value(label.offset, label.section)
        definitions = self.equates.get(name)
        if definitions:
            definition = definitions[-1]
            if definition.value is not None:
                return definition.value
            section, offset = definition.section, definition.offset

            def resolve(inner: str) -> Value:
                if inner == ".":
                    return Value(offset, section)
                if inner == name:
                    raise UndefinedSymbol(inner)
                return self._resolve_now(inner)

            return evaluate(definition.expression, resolve)
        raise UndefinedSymbol(name)

    def _absolute_now(self, expression: str, non_constant: str) -> int:
        """An expression that must be a constant while reading (.if, .rept, .space, ...)."""
        expression = self._local_references(expression)
        try:
            value = evaluate(expression, self._resolve_now)
        except (UndefinedSymbol, NotAbsolute):
            self._fail(non_constant)
        except ExpressionError as err:
            self._fail(str(err))
        if value.section is not None:
            self._fail(non_constant)
        return value.offset

    def _local_references(self, text: str) -> str:
        """Rewrite numeric label references (``1b``, ``2f``) to the names of their labels."""
        if not _NUMERIC_REFERENCE.search(text):
            return text

        def resolve(match: re.Match[str]) -> str:
            number, direction = match.groups()
            count = self._numeric.get(number, 0)
            if direction == "b":
                if count == 0:
                    self._fail(f"undefined local label `{match.group(0)}' (no `{number}:' "
                               "before this line)")
                name = f"{PREFIX}n{number}_{count - 1}"
            else:
                name = f"{PREFIX}n{number}_{count}"
                self._forward.setdefault(name, (self._origin, self._seq))
            self.local_names[name] = match.group(0)
            return name

        return outside_strings(text, lambda part: _NUMERIC_REFERENCE.sub(resolve, part))

    # -- emitting ----------------------------------------------------------------

    def _emit(self, kind: str, size: int, text: str, *, located: bool = True,
              **fields: object) -> Item:
        """Append an item to the current section; ``located`` ones belong to this statement."""
        section = self._current
        self._reserve(size)
        self._image_bytes += size
        item = Item(self._seq, section, section.size, size, kind,
                    self._origin if located else None, text, **fields)  # type: ignore[arg-type]
        section.size += size
        section.items.append(item)
        self.items.append(item)
        return item

    def _reserve(self, size: int) -> None:
        """Fail, naming the statement, if ``size`` more bytes would pass
        :data:`MAX_IMAGE_BYTES`; called before the bytes are built."""
        if self._image_bytes + size > MAX_IMAGE_BYTES:
            self._fail(f"the image would be larger than {MAX_IMAGE_BYTES >> 20} MiB "
                       f"({size:#x} more bytes asked for)")

    def _align(self, alignment: int, fill: bytes | None, maximum: int | None, text: str,
               located: bool) -> None:
        section = self._current
        section.align = max(section.align, alignment)
        padding = -section.size % alignment
        if padding == 0 or (maximum is not None and padding > maximum):
            return
        self._reserve(padding)
        if fill is not None:
            data = (fill * (padding // len(fill) + 1))[:padding]
        elif section.code:
            # GNU as: zeros up to a 4-byte boundary, then nop instructions.
            odd = -section.size % 4
            data = bytes(odd) + NOP.to_bytes(4, "little") * ((padding - odd) // 4)
        else:
            data = bytes(padding)
        self._emit("align", padding, text, located=located, data=data)

    def _no_bss_data(self, name: str) -> None:
        if self._current.kind == "bss":
            self._fail(f"attempt to store non-zero value in section `{self._current.name}'"
                       f" ({name})")
