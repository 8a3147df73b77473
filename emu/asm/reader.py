"""Read preprocessed assembly the way GNU as does, and lay it out.

This is the front half of the assembler front-end.  It turns the C
preprocessor's output into a flat list of items (instructions, data, padding,
literal-pool entries), each at an offset in its section, and collects labels,
equates, ``.size`` records and symbol bindings.  It does everything keystone
either cannot do or does differently from GNU as:

* ``.macro`` (positional, keyword, ``:req``, ``:vararg`` and default
  arguments, ``\\@``, ``\\()``, ``.exitm``, ``.purgem``), ``.rept``, ``.irp``,
  ``.irpc``, the ``.if`` family and ``.include`` are expanded here, so every
  statement a macro produces can be checked and located like any other, and a
  numeric local label inside a macro works as in GNU as;
* sections (``.text``, ``.data``, ``.bss``, ``.section``, ``.pushsection``,
  ``.popsection``, ``.previous``) are kept apart, each with its own offsets and
  alignment, to be placed one after the other later (keystone segfaults on a
  section switch);
* ``ldr Rt, =expr`` gets a GNU-style literal pool: one per section and entry
  size, equal entries shared, dumped at ``.ltorg``/``.pool`` and at the end of
  the section, aligned with zeros (keystone turns small constants into ``mov``,
  never shares entries and pads with ``nop``);
* alignment pads code sections with ``nop`` after any odd bytes, data
  sections with zeros, and an instruction after odd-sized data is aligned to
  4 bytes with zeros, as GNU as does.

Expressions needed while reading (``.if``, ``.rept``, ``.space``, ``.align``,
``.org``) are evaluated at once: labels already defined are known by their
section offset, so the difference of two of them in one section is a
constant.  Everything else (instruction operands, data values, equates that
refer to later labels) is evaluated once all sections are placed
(``emu.asm.encode``).
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from emu.asm.expr import (
    ExpressionError,
    NotAbsolute,
    UndefinedSymbol,
    Value,
    evaluate,
)
from emu.asm.source import Origin, SourceLocation

__all__ = [
    "PREFIX",
    "EquateDef",
    "Item",
    "Label",
    "PoolEntry",
    "ReadError",
    "Reader",
    "Section",
    "split_operands",
    "split_statements",
]

# Every name the front-end invents starts with this, so it never clashes with
# a user's symbol and is easy to leave out of the symbol table.
PREFIX = "__bootemu_"
NOP = 0xD503201F
MAX_MACRO_DEPTH = 100  # GNU as's own limit ("macros nested too deeply")
MAX_INCLUDE_DEPTH = 64
MAX_STATEMENTS = 2_000_000  # a runaway .rept must fail, not hang
MAX_IMAGE_BYTES = 1 << 30
SECTION_KINDS = ("text", "rodata", "data", "bss")


class ReadError(Exception):
    """A statement GNU as would reject; ``seq`` orders it among other errors."""

    def __init__(self, message: str, origin: Origin | None, seq: int) -> None:
        super().__init__(message)
        self.message = message
        self.origin = origin
        self.seq = seq


@dataclass(eq=False)
class Section:
    """One output section: its items, size and alignment (identity-hashed)."""

    name: str
    kind: str  # text, rodata, data, bss, or "none" for a section that is not allocated
    order: int
    code: bool  # executable: alignment pads with nop
    flags: str
    size: int = 0
    align: int = 1
    items: list[Item] = field(default_factory=list)
    address: int | None = None  # set when sections are placed


@dataclass(eq=False)
class PoolEntry:
    """A literal-pool entry an ``ldr Rt, =expr`` asked for."""

    expression: str
    size: int
    key: object
    origin: Origin
    seq: int
    item: Item | None = None  # the pool item, once the pool is dumped


@dataclass(eq=False)
class Item:
    """Bytes at an offset of a section, and what produces them."""

    seq: int
    section: Section
    offset: int
    size: int
    kind: str  # insn, inst (.inst), data, pool, fill, align
    origin: Origin | None
    text: str
    data: bytes = b""  # fill/align: the bytes, known when read
    width: int = 0  # data/pool/inst: bytes per value
    values: tuple[str, ...] = ()  # data/pool/inst: one expression per value
    mnemonic: str = ""
    operands: str = ""
    pool: PoolEntry | None = None  # insn: the literal an ldr = loads


@dataclass(frozen=True)
class Label:
    """A label: its section offset and where it was defined."""

    name: str
    section: Section
    offset: int
    origin: Origin
    seq: int


@dataclass
class EquateDef:
    """One definition of a symbol by ``.set``/``.equ``/``=``/``.equiv``."""

    name: str
    seq: int
    expression: str
    origin: Origin
    section: Section  # where ``.`` was
    offset: int
    value: Value | None  # known when read, else evaluated after layout


@dataclass
class _Macro:
    name: str
    params: list[tuple[str, str, str]]  # (name, default, "" | "req" | "vararg")
    body: list[tuple[Origin, str]]
    origin: Origin


@dataclass
class _Frame:
    pieces: deque[tuple[Origin, str]]
    kind: str  # file, macro, repeat
    name: str | None = None


@dataclass
class _Conditional:
    active: bool  # this branch's statements are processed
    taken: bool  # some branch of this .if was true already
    parent_active: bool
    origin: Origin
    seq: int
    else_seen: bool = False


# --------------------------------------------------------------------------
# Splitting lines and operands


def split_statements(text: str) -> list[str]:
    """Split a line at ``;`` separators and drop a ``//`` comment, minding strings."""
    parts: list[str] = []
    current: list[str] = []
    in_string = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_string:
            current.append(char)
            if char == "\\" and index + 1 < len(text):
                current.append(text[index + 1])
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            current.append(char)
        elif char == ";":
            parts.append("".join(current))
            current = []
        elif text.startswith("//", index):
            break
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def split_operands(text: str) -> list[str]:
    """Split operands at top-level commas (not inside ``[]``, ``{}``, ``()`` or strings)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    in_string = False
    for char in text:
        if in_string:
            current.append(char)
            if char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    last = "".join(current).strip()
    if last or parts:
        parts.append(last)
    return parts


def _outside_strings(text: str, function: Callable[[str], str]) -> str:
    """Apply ``function`` to the parts of ``text`` that are not string literals."""
    pieces = re.split(r'("(?:[^"\\]|\\.)*")', text)
    return "".join(piece if index % 2 else function(piece) for index, piece in enumerate(pieces))


_ESCAPE_CHARS = {"n": 10, "t": 9, "r": 13, "b": 8, "f": 12, "v": 11, "a": 7, "e": 27,
                 "\\": 92, '"': 34, "'": 39}


def _parse_strings(text: str) -> list[bytes]:
    """The C-style string literals of ``.ascii "a", "b"``; raises ValueError when malformed."""
    strings: list[bytes] = []
    index = 0
    while True:
        while index < len(text) and text[index] in " \t":
            index += 1
        if index >= len(text) or text[index] != '"':
            raise ValueError("expected a string in double quotes")
        index += 1
        out = bytearray()
        while True:
            if index >= len(text):
                raise ValueError("missing closing `\"'")
            char = text[index]
            if char == '"':
                index += 1
                break
            if char == "\\" and index + 1 < len(text):
                nxt = text[index + 1]
                if nxt in "01234567":
                    digits = re.match(r"[0-7]{1,3}", text[index + 1:])
                    assert digits is not None
                    out.append(int(digits.group(0), 8) & 0xFF)
                    index += 1 + len(digits.group(0))
                    continue
                if nxt in "xX":
                    digits = re.match(r"[0-9a-fA-F]+", text[index + 2:])
                    if digits is None:
                        raise ValueError("bad escape \\x in string")
                    out.append(int(digits.group(0), 16) & 0xFF)
                    index += 2 + len(digits.group(0))
                    continue
                out.append(_ESCAPE_CHARS.get(nxt, ord(nxt) & 0xFF))
                index += 2
                continue
            out += char.encode("utf-8", "replace")
            index += 1
        strings.append(bytes(out))
        while index < len(text) and text[index] in " \t":
            index += 1
        if index >= len(text):
            return strings
        if text[index] != ",":
            raise ValueError("junk at end of line, first unrecognized character is "
                             f"`{text[index]}'")
        index += 1


# --------------------------------------------------------------------------
# Statement syntax

_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*|\d+)\s*:(?!:)")
_ASSIGN = re.compile(r"([A-Za-z_.$][\w.$]*)\s*=(?!=)\s*(.*)\Z", re.S)
_REQ = re.compile(r"([A-Za-z_][\w]*)\s+\.req\s+([A-Za-z_][\w]*)\s*\Z", re.I)
_SYMBOL = re.compile(r"[A-Za-z_.$][\w.$]*\Z")
_NAME = re.compile(r"[A-Za-z_.$][\w.$]*")
_NUMERIC_REFERENCE = re.compile(r"(?<![\w.$])(\d+)([bf])(?![\w.$])")
_MNEMONIC = re.compile(r"[A-Za-z][\w.]*\Z")
_BAD_CHARACTER = re.compile(r"[^\t\x20-\x7e]")

_DATA_WIDTHS = {
    ".byte": 1, ".hword": 2, ".short": 2, ".half": 2, ".2byte": 2,
    ".word": 4, ".long": 4, ".int": 4, ".4byte": 4,
    ".quad": 8, ".xword": 8, ".dword": 8, ".8byte": 8,
}
_CONDITIONALS = {".if", ".ifdef", ".ifndef", ".ifnotdef", ".ifb", ".ifnb", ".ifc", ".ifnc",
                 ".ifeq", ".ifne", ".ifgt", ".ifge", ".iflt", ".ifle", ".ifeqs", ".ifnes",
                 ".elseif", ".else", ".endif"}
# Directives with no effect on a flat binary: debug info, attributes for a
# linker, architecture selection (keystone accepts every ARMv8.0 instruction).
_IGNORED = {
    ".file", ".ident", ".loc", ".loc_mark_labels", ".arch", ".arch_extension", ".cpu",
    ".variant_pcs", ".addrsig", ".addrsig_sym", ".hidden", ".protected", ".internal",
    ".symver", ".print", ".eject", ".psize", ".title", ".sbttl", ".list", ".nolist",
    ".noaltmacro", ".func", ".endfunc", ".tlsdescadd", ".tlsdesccall", ".tlsdescldr",
    ".stabs", ".stabn", ".stabd", ".gnu_attribute", ".aeabi_subsection",
}
_REPEAT_OPENERS = (".rept", ".rep", ".irp", ".irpc")


def _section_defaults(name: str) -> tuple[str, str]:
    """(flags, type) GNU as gives a section named ``name`` without flags."""
    if name == ".text" or name.startswith((".text.", ".init", ".fini")):
        return "ax", "progbits"
    if name in (".bss", ".sbss", ".tbss") or name.startswith((".bss.", ".sbss.", ".tbss.")):
        return "aw", "nobits"
    if name == ".data" or name.startswith((".data.", ".data1", ".sdata", ".tdata")):
        return "aw", "progbits"
    if name == ".rodata" or name.startswith((".rodata.", ".rodata1")):
        return "a", "progbits"
    return "", "progbits"


def _section_kind(name: str, flags: str, section_type: str) -> str:
    if "a" not in flags:
        return "none"
    if "x" in flags:
        return "text"
    if section_type == "nobits":
        return "bss"
    return "data" if "w" in flags else "rodata"


# --------------------------------------------------------------------------
# The reader


class Reader:
    """Reads preprocessed source lines into sections of items (see the module docstring)."""

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
        self._macros: dict[str, _Macro] = {}
        self._aliases: dict[str, str] = {}  # .req
        self._numeric: dict[str, int] = {}  # numeric label -> definitions so far
        self._forward: dict[str, tuple[Origin, int]] = {}  # invented forward name -> first use
        self._pools: dict[tuple[int, int], list[PoolEntry]] = {}
        self._pool_order: list[Section] = []
        self._frames: list[_Frame] = []
        self._conditionals: list[_Conditional] = []
        self._section_stack: list[tuple[Section, Section | None]] = []
        self._macro_number = 0
        self._seq = 0
        self._image_bytes = 0
        self._by_name: dict[str, Section] = {}
        self._current = self._section(".text", None, None, None)
        self._previous: Section | None = None
        self._origin = Origin(SourceLocation("<none>", 0))

    # -- driving -------------------------------------------------------------

    def read(self, lines: Sequence[tuple[SourceLocation, str]]) -> None:
        """Read every line; raises ReadError at the first statement GNU as would reject."""
        self._frames.append(_Frame(deque(self._pieces(lines)), "file"))
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

    @staticmethod
    def _pieces(lines: Sequence[tuple[SourceLocation, str]]) -> Iterator[tuple[Origin, str]]:
        for location, text in lines:
            origin = Origin(location)
            for piece in split_statements(text):
                yield origin, piece

    def _next_piece(self) -> tuple[Origin, str] | None:
        while self._frames:
            frame = self._frames[-1]
            if frame.pieces:
                return frame.pieces.popleft()
            self._frames.pop()
        return None

    def _fail(self, message: str, origin: Origin | None = None) -> NoReturn:
        raise ReadError(message, origin or self._origin, self._seq)

    @property
    def _active(self) -> bool:
        return not self._conditionals or self._conditionals[-1].active

    # -- one statement ---------------------------------------------------------

    def _statement(self, origin: Origin, text: str) -> bool:
        """Process one statement; True at ``.end``."""
        if text.startswith("#"):
            return False  # a line comment for GNU as (cpp leaves "# text" lines alone)
        labels: list[str] = []
        body = text
        while match := _LABEL.match(body):
            labels.append(match.group(1))
            body = body[match.end():]
        body = body.strip()
        # The mnemonic is a name: it stops at the first character that cannot
        # be part of one, as in GNU as (a macro call may be "PRINT(...)").
        name = _NAME.match(body)
        mnemonic = (name.group(0) if name else body.split(None, 1)[0] if body else "").lower()
        if mnemonic in _CONDITIONALS or mnemonic.startswith(".if"):
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
            name in _DIRECTIVE_NAMES or name in _DATA_WIDTHS or name in _IGNORED
            or name in _CONDITIONALS or name.startswith(".cfi_"))

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
        if not _SYMBOL.match(name):
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

        return _outside_strings(text, lambda part: _NUMERIC_REFERENCE.sub(resolve, part))

    def _substitute_aliases(self, operands: str) -> str:
        if not self._aliases:
            return operands

        def alias(match: re.Match[str]) -> str:
            return self._aliases.get(match.group(0).lower(), match.group(0))

        return re.sub(r"(?<![\w.$])[A-Za-z_]\w*(?![\w.$])", alias, operands)

    # -- emitting ----------------------------------------------------------------

    def _emit(self, kind: str, size: int, text: str, *, located: bool = True,
              **fields: object) -> Item:
        """Append an item to the current section; ``located`` ones belong to this statement."""
        section = self._current
        self._image_bytes += size
        if self._image_bytes > MAX_IMAGE_BYTES:
            self._fail(f"the image would be larger than {MAX_IMAGE_BYTES >> 20} MiB")
        item = Item(self._seq, section, section.size, size, kind,
                    self._origin if located else None, text, **fields)  # type: ignore[arg-type]
        section.size += size
        section.items.append(item)
        self.items.append(item)
        return item

    def _align(self, alignment: int, fill: bytes | None, maximum: int | None, text: str,
               located: bool) -> None:
        section = self._current
        section.align = max(section.align, alignment)
        padding = -section.size % alignment
        if padding == 0 or (maximum is not None and padding > maximum):
            return
        if fill is not None:
            data = (fill * (padding // len(fill) + 1))[:padding]
        elif section.code:
            # GNU as: zeros up to a 4-byte boundary, then nop instructions.
            odd = -section.size % 4
            data = bytes(odd) + NOP.to_bytes(4, "little") * ((padding - odd) // 4)
        else:
            data = bytes(padding)
        self._emit("align", padding, text, located=located, data=data)

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

    def _literal(self, mnemonic: str, operands: str, body: str) -> PoolEntry | None:
        parts = split_operands(operands)
        if len(parts) != 2 or not parts[1].startswith("="):
            return None
        register = parts[0].lower()
        sizes = {"x": 8, "w": 4, "d": 8, "s": 4}
        if mnemonic == "ldrsw" or not register or register[0] not in sizes:
            self._fail(f"invalid register for a literal load -- `{body}'")
        size = sizes[register[0]]
        expression = parts[1][1:].strip()
        if not expression:
            self._fail(f"missing expression after `=' -- `{body}'")
        key = self._literal_key(expression)
        pending = self._pools.setdefault((id(self._current), size), [])
        if self._current not in self._pool_order:
            self._pool_order.append(self._current)
        for entry in pending:
            if entry.key == key:
                return entry
        entry = PoolEntry(expression, size, key, self._origin, self._seq)
        pending.append(entry)
        return entry

    def _literal_key(self, expression: str) -> object:
        """What makes two literal-pool entries equal for GNU as (``object()``: never)."""
        try:
            value: Value | None = evaluate(expression, self._resolve_now)
        except ExpressionError:
            value = None
        if value is not None and value.section is None:
            return ("constant", value.offset)
        # GNU as shares a symbol + constant entry only with the same symbol and
        # constant; anything more complex gets an entry of its own.
        match = re.fullmatch(r"\s*([A-Za-z_.$][\w.$]*)\s*(?:([-+])\s*(.+))?", expression, re.S)
        if match is None or match.group(1) in self.equates:
            return object()
        addend = 0
        if match.group(3) is not None:
            try:
                addend = evaluate(f"0 {match.group(2)} {match.group(3)}",
                                  self._resolve_now).require_absolute()
            except ExpressionError:
                return object()
        return ("symbol", match.group(1), addend)

    def _dump_pool(self, section: Section) -> None:
        """Emit the pending literal pools of ``section`` (GNU order: 4-, 8-, 16-byte)."""
        saved = self._current
        self._current = section
        if section in self._pool_order:
            self._pool_order.remove(section)
        for entry_size in (4, 8, 16):
            pending = self._pools.pop((id(section), entry_size), [])
            if not pending:
                continue
            self._align(entry_size, bytes(1), None, "<literal pool>", False)
            for entry in pending:
                entry.item = self._emit("pool", entry_size, f"<literal pool: {entry.expression}>",
                                        located=False, width=entry_size,
                                        values=(entry.expression,), pool=entry)
                entry.item.seq = entry.seq
        self._current = saved

    # -- directives ------------------------------------------------------------------

    def _directive(self, name: str, operands: str, body: str) -> bool:
        if name in _DATA_WIDTHS:
            self._data(name, _DATA_WIDTHS[name], operands, body)
            return False
        if name in _IGNORED or name.startswith(".cfi_"):
            return False
        handler = _DIRECTIVES.get(name)
        if handler is None:
            self._fail(f"unknown pseudo-op: `{name}'")
        return bool(handler(self, name, operands, body))

    def _data(self, name: str, width: int, operands: str, body: str) -> None:
        values = tuple(self._local_references(value) for value in split_operands(operands))
        if not values:
            return
        if any(not value for value in values):
            self._fail(f"missing expression -- `{body}'")
        self._no_bss_data(name)
        self._emit("data", width * len(values), body, width=width, values=values)

    def _no_bss_data(self, name: str) -> None:
        if self._current.kind == "bss":
            self._fail(f"attempt to store non-zero value in section `{self._current.name}'"
                       f" ({name})")

    def _d_inst(self, name: str, operands: str, body: str) -> None:
        values = tuple(self._local_references(value) for value in split_operands(operands))
        if not values or any(not value for value in values):
            self._fail(f"missing expression -- `{body}'")
        if self._current.size % 4:
            self._align(4, bytes(1), None, body, False)
        self._current.align = max(self._current.align, 4)
        self._emit("inst", 4 * len(values), body, width=4, values=values)

    def _d_nop(self, name: str, operands: str, body: str) -> None:
        self._instruction("nop", "", "nop")

    def _d_ascii(self, name: str, operands: str, body: str) -> None:
        try:
            strings = _parse_strings(operands)
        except ValueError as err:
            self._fail(str(err))
        terminator = b"" if name == ".ascii" else b"\0"
        data = b"".join(string + terminator for string in strings)
        if data:
            self._no_bss_data(name)
            self._emit("fill", len(data), body, data=data)

    def _d_space(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if not parts or not parts[0] or len(parts) > 2:
            self._fail(f"bad arguments -- `{body}'")
        message = ".space, .nops or .fill specifies non-absolute value"
        size = self._absolute_now(parts[0], message)
        fill = self._absolute_now(parts[1], message) & 0xFF if len(parts) > 1 else 0
        if size < 0:
            self.warnings.append(f"{self._origin.location}: Warning: .space repeat count "
                                 "is negative, ignored")
            return
        if fill and self._current.kind == "bss":
            self._no_bss_data(name)
        if size:
            self._emit("fill", size, body, data=bytes([fill]) * size if fill else bytes(size))

    def _d_fill(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if not parts or not parts[0] or len(parts) > 3:
            self._fail(f"bad arguments -- `{body}'")
        message = ".space, .nops or .fill specifies non-absolute value"
        repeat = self._absolute_now(parts[0], message)
        size = self._absolute_now(parts[1], message) if len(parts) > 1 and parts[1] else 1
        value = self._absolute_now(parts[2], message) if len(parts) > 2 else 0
        size = min(max(size, 0), 8)
        if repeat <= 0 or size == 0:
            return
        if value and self._current.kind == "bss":
            self._no_bss_data(name)
        # GNU as writes the low 4 bytes of the value; wider repetitions get zeros above.
        word = (value & 0xFFFFFFFF).to_bytes(8, "little")[:size]
        total = repeat * size
        if total + self._image_bytes > MAX_IMAGE_BYTES:
            self._fail(f"the image would be larger than {MAX_IMAGE_BYTES >> 20} MiB")
        self._emit("fill", total, body, data=word * repeat)

    def _d_align(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if not parts or not parts[0]:
            self._fail(f"missing alignment -- `{body}'")
        if len(parts) > 3:
            self._fail(f"bad arguments -- `{body}'")
        message = "alignment not an absolute expression"
        argument = self._absolute_now(parts[0], message)
        if name.startswith(".balign"):
            if argument <= 0 or argument & (argument - 1):
                self._fail(f"alignment not a power of 2 -- `{body}'")
            alignment = argument
        else:
            if not 0 <= argument <= 30:
                self._fail(f"alignment too large: 2^{argument} -- `{body}'")
            alignment = 1 << argument
        fill_width = {"w": 2, "l": 4}.get(name[-1], 1)
        fill: bytes | None = None
        if len(parts) > 1 and parts[1]:
            value = self._absolute_now(parts[1], message)
            fill = (value & ((1 << (8 * fill_width)) - 1)).to_bytes(fill_width, "little")
        maximum = self._absolute_now(parts[2], message) if len(parts) > 2 and parts[2] else None
        self._align(alignment, fill, maximum, body, True)

    def _d_org(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if not parts or not parts[0]:
            self._fail(f"missing expression -- `{body}'")
        expression = self._local_references(parts[0])
        try:
            value = evaluate(expression, self._resolve_now)
        except (UndefinedSymbol, NotAbsolute):
            self._fail("attempt to .org to a non-constant location")
        except ExpressionError as err:
            self._fail(str(err))
        if value.section is not None and value.section is not self._current:
            self._fail("attempt to move .org into another section")
        fill = self._absolute_now(parts[1], "bad fill") & 0xFF if len(parts) > 1 else 0
        target = value.offset
        if target < self._current.size:
            self._fail("attempt to move .org backwards")
        padding = target - self._current.size
        if padding:
            self._emit("fill", padding, body, data=bytes([fill]) * padding)

    def _d_incbin(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        try:
            [file_name] = _parse_strings(parts[0]) if parts and parts[0] else [b""]
        except ValueError as err:
            self._fail(str(err))
        path = self._find_file(file_name.decode("utf-8", "replace"))
        try:
            data = path.read_bytes()
        except OSError as err:
            self._fail(f"file not found: {file_name.decode('utf-8', 'replace')} "
                       f"({err.strerror})")
        self.dependencies.append(path)
        skip = self._absolute_now(parts[1], "bad skip") if len(parts) > 1 else 0
        count = self._absolute_now(parts[2], "bad count") if len(parts) > 2 else len(data) - skip
        if not 0 <= skip <= len(data) or count < 0 or skip + count > len(data):
            self._fail(f"skip ({skip}) or count ({count}) invalid for file size ({len(data)})")
        chunk = data[skip:skip + count]
        if chunk:
            self._no_bss_data(name)
            self._emit("fill", len(chunk), body, data=chunk)

    def _d_ltorg(self, name: str, operands: str, body: str) -> None:
        self._dump_pool(self._current)

    def _d_equate(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if len(parts) < 2 or not parts[0]:
            self._fail(f"expected comma after name -- `{body}'")
        symbol = parts[0]
        expression = operands.split(",", 1)[1]
        self._equate(symbol, expression, "equiv" if name == ".equiv" else "set")

    def _d_global(self, name: str, operands: str, body: str) -> None:
        for symbol in split_operands(operands):
            if not _SYMBOL.match(symbol):
                self._fail(f"invalid symbol name `{symbol}' -- `{body}'")
            if name == ".local":
                # Local binding: it stays out of the global list (nm: lower case).
                if symbol in self.globals:
                    self.globals.remove(symbol)
                continue
            if name == ".weak":
                self.weak.add(symbol)
            if symbol not in self.globals:
                self.globals.append(symbol)

    def _d_type(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if len(parts) != 2 or not _SYMBOL.match(parts[0]):
            self._fail(f"expected `symbol, type' -- `{body}'")

    def _d_size(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if len(parts) != 2 or not _SYMBOL.match(parts[0]) or not parts[1]:
            self._fail(f"expected `symbol, size' -- `{body}'")
        marker = Item(self._seq, self._current, self._current.size, 0, "marker", self._origin,
                      body)
        self.sizes.append((parts[0], self._local_references(parts[1]), marker))

    def _d_error(self, name: str, operands: str, body: str) -> None:
        if name == ".err":
            self._fail(".err encountered")
        message = operands
        try:
            strings = _parse_strings(operands) if operands else []
            message = b"".join(strings).decode("utf-8", "replace") if strings else message
        except ValueError:
            pass
        self._fail(message or ".error directive invoked in source file")

    def _d_warning(self, name: str, operands: str, body: str) -> None:
        try:
            text = b"".join(_parse_strings(operands)).decode("utf-8", "replace")
        except ValueError:
            text = operands
        self.warnings.append(f"{self._origin.location}: Warning: "
                             f"{text or '.warning directive invoked in source file'}")

    def _d_end(self, name: str, operands: str, body: str) -> bool:
        return True

    def _d_req(self, name: str, operands: str, body: str) -> None:
        self._fail(f"`.req' needs a name before it (alias .req register) -- `{body}'")

    def _d_unreq(self, name: str, operands: str, body: str) -> None:
        self._aliases.pop(operands.strip().lower(), None)

    def _d_unsupported(self, name: str, operands: str, body: str) -> None:
        what = {".altmacro": "alternate macro mode (.altmacro)",
                ".comm": "common symbols (.comm)", ".lcomm": "common symbols (.lcomm)",
                ".subsection": "subsections", ".octa": ".octa data",
                ".float": "floating-point data", ".single": "floating-point data",
                ".double": "floating-point data", ".uleb128": "LEB128 data",
                ".sleb128": "LEB128 data", ".nops": ".nops"}.get(name, name)
        self._fail(f"{what} not supported by bootemu's assembler -- `{body}'")

    # -- sections ------------------------------------------------------------------

    def _section(self, name: str, flags: str | None, section_type: str | None,
                 origin: Origin | None) -> Section:
        existing = self._by_name.get(name)
        if existing is not None:
            return existing
        default_flags, default_type = _section_defaults(name)
        flags = default_flags if flags is None else flags
        section_type = default_type if section_type is None else section_type
        kind = _section_kind(name, flags, section_type)
        if kind == "none" and origin is not None:
            self.warnings.append(f"{origin.location}: Warning: section `{name}' is not "
                                 "allocated (no \"a\" flag): its contents are left out")
        section = Section(name, kind, len(self.sections), "x" in flags, flags)
        self.sections.append(section)
        self._by_name[name] = section
        return section

    def _switch(self, section: Section) -> None:
        if section is not self._current:
            self._previous = self._current
            self._current = section

    def _subsection(self, argument: str, body: str) -> None:
        if argument.strip() and self._absolute_now(argument, "bad subsection") != 0:
            self._fail(f"subsections not supported by bootemu's assembler -- `{body}'")

    def _d_text(self, name: str, operands: str, body: str) -> None:
        self._subsection(operands, body)
        self._switch(self._section(name, None, None, self._origin))

    def _parse_section(self, operands: str, body: str, push: bool) -> Section:
        parts = split_operands(operands)
        if not parts or not parts[0]:
            self._fail(f"missing name -- `{body}'")
        section_name = parts[0].strip('"')
        rest = parts[1:]
        if push and rest and not rest[0].startswith('"'):
            self._subsection(rest[0], body)
            rest = rest[1:]
        flags: str | None = None
        section_type: str | None = None
        if rest:
            if rest[0].startswith('"'):
                flags = rest[0].strip('"')
                unknown = set(flags) - set("awxMSGTRoed?")
                if unknown:
                    self._fail(f"unknown section flag `{sorted(unknown)[0]}' -- `{body}'")
            elif rest[0].startswith("#"):
                flags = {"#alloc": "a", "#write": "w", "#execinstr": "x"}.get(rest[0], "")
            if len(rest) > 1:
                section_type = rest[1].lstrip("@%").lower()
        existing = self._by_name.get(section_name)
        if existing is not None:
            return existing
        return self._section(section_name, flags, section_type, self._origin)

    def _d_section(self, name: str, operands: str, body: str) -> None:
        self._switch(self._parse_section(operands, body, push=False))

    def _d_pushsection(self, name: str, operands: str, body: str) -> None:
        section = self._parse_section(operands, body, push=True)
        self._section_stack.append((self._current, self._previous))
        self._switch(section)

    def _d_popsection(self, name: str, operands: str, body: str) -> None:
        if not self._section_stack:
            self._fail(".popsection without corresponding .pushsection; ignored")
        self._current, self._previous = self._section_stack.pop()

    def _d_previous(self, name: str, operands: str, body: str) -> None:
        if self._previous is None:
            self._fail(".previous without corresponding .section; ignored")
        self._current, self._previous = self._previous, self._current

    # -- conditionals ----------------------------------------------------------------

    def _conditional(self, name: str, operands: str) -> None:
        stack = self._conditionals
        if name == ".endif":
            if not stack:
                self._fail('".endif" without ".if"')
            stack.pop()
            return
        if name in (".else", ".elseif"):
            if not stack:
                self._fail(f'"{name}" without matching ".if"')
            top = stack[-1]
            if top.else_seen:
                self._fail(f'"{name}" after ".else"' if name == ".elseif" else 'duplicate "else"')
            if name == ".else":
                top.else_seen = True
                top.active = top.parent_active and not top.taken
            else:
                condition = (top.parent_active and not top.taken
                             and self._condition(".if", operands))
                top.active = condition
            top.taken = top.taken or top.active
            return
        parent = self._active
        condition = parent and self._condition(name, operands)
        stack.append(_Conditional(condition, condition, parent, self._origin, self._seq))

    def _condition(self, name: str, operands: str) -> bool:
        non_constant = f'non-constant expression in "{name}" statement'
        if name in (".if", ".ifne"):
            return self._absolute_now(operands, non_constant) != 0
        if name in (".ifeq", ".ifgt", ".ifge", ".iflt", ".ifle"):
            value = self._absolute_now(operands, non_constant)
            return {".ifeq": value == 0, ".ifgt": value > 0, ".ifge": value >= 0,
                    ".iflt": value < 0, ".ifle": value <= 0}[name]
        if name in (".ifdef", ".ifndef", ".ifnotdef"):
            symbol = operands.strip()
            if not _SYMBOL.match(symbol):
                self._fail(f"invalid identifier for \"{name}\"")
            defined = symbol in self.labels or symbol in self.equates
            return defined if name == ".ifdef" else not defined
        if name in (".ifb", ".ifnb"):
            return (not operands.strip()) == (name == ".ifb")
        if name in (".ifc", ".ifnc", ".ifeqs", ".ifnes"):
            parts = split_operands(operands)
            if len(parts) != 2:
                self._fail(f'".{name[1:]}" needs two operands separated by a comma')
            quote = '"' if name in (".ifeqs", ".ifnes") else "'"
            left, right = (part.strip() for part in parts)
            if quote == '"' or left.startswith("'"):
                left, right = left.strip(quote), right.strip(quote)
            return (left == right) == (name in (".ifc", ".ifeqs"))
        self._fail(f"unknown pseudo-op: `{name}'")
        return False

    # -- macros and repetitions ------------------------------------------------------

    def _capture(self, opener: Callable[[str], bool], closer: str, what: str,
                 origin: Origin) -> list[tuple[Origin, str]]:
        """Statements up to the matching ``closer``, from the current input only."""
        frame = self._frames[-1]
        body: list[tuple[Origin, str]] = []
        depth = 1
        while frame.pieces:
            piece = frame.pieces.popleft()
            text = piece[1]
            stripped = text
            while match := _LABEL.match(stripped):
                stripped = stripped[match.end():]
            word = stripped.strip().split(None, 1)[0].lower() if stripped.strip() else ""
            if opener(word):
                depth += 1
            elif word == closer:
                depth -= 1
                if depth == 0:
                    return body
            body.append(piece)
        raise ReadError(what, origin, self._seq)

    def _d_macro(self, name: str, operands: str, body: str) -> None:
        origin = self._origin
        match = re.match(r"([A-Za-z_.$][\w.$]*)\s*,?\s*(.*)\Z", operands, re.S)
        macro_name = match.group(1) if match else ""
        statements = self._capture(lambda word: word == ".macro", ".endm",
                                   f"unexpected end of file in macro `{macro_name}' definition",
                                   origin)
        if match is None:
            self._fail("Missing macro name")
        assert match is not None
        params = self._parameters(match.group(2), macro_name)
        key = macro_name.lower()
        if key in self._macros:
            self._fail(f"Macro `{macro_name}' was already defined")
        self._macros[key] = _Macro(macro_name, params, statements, origin)

    def _parameters(self, text: str, macro_name: str) -> list[tuple[str, str, str]]:
        params: list[tuple[str, str, str]] = []
        index = 0
        text = text.strip()
        while index < len(text):
            match = re.match(r"\s*([A-Za-z_.$][\w.$]*)\s*", text[index:])
            if match is None:
                self._fail(f"Bad parameter list for macro `{macro_name}'")
            assert match is not None
            param = match.group(1)
            index += match.end()
            qualifier = ""
            qualified = re.match(r":\s*(\w+)\s*", text[index:])
            if qualified is not None:
                qualifier = qualified.group(1)
                if qualifier not in ("req", "vararg"):
                    self._fail(f"`{qualifier}' is not a valid parameter qualifier for "
                               f"`{param}' in macro `{macro_name}'")
                index += qualified.end()
            default = ""
            if index < len(text) and text[index] == "=":
                default, index = _macro_argument(text, index + 1)
            if any(existing == param for existing, _, _ in params):
                self._fail(f"A parameter named `{param}' already exists for macro "
                           f"`{macro_name}'")
            params.append((param, default, qualifier))
            if qualifier == "vararg":
                break
            index = _skip_comma(text, index)
        return params

    def _d_endm(self, name: str, operands: str, body: str) -> None:
        self.warnings.append(f"{self._origin.location}: Warning: .endm encountered without "
                             "preceding .macro")

    def _d_endr(self, name: str, operands: str, body: str) -> None:
        self.warnings.append(f"{self._origin.location}: Warning: .endr encountered without "
                             "preceding .rept, .irp, or .irpc")

    def _d_exitm(self, name: str, operands: str, body: str) -> None:
        while self._frames and self._frames[-1].kind != "macro":
            self._frames.pop()
        if not self._frames:
            self._fail(".exitm outside a macro")
        self._frames.pop()

    def _d_purgem(self, name: str, operands: str, body: str) -> None:
        for macro_name in split_operands(operands):
            if self._macros.pop(macro_name.lower(), None) is None:
                self.warnings.append(f"{self._origin.location}: Warning: Attempt to purge "
                                     f"non-existing macro `{macro_name}'")

    def _expand_macro(self, macro: _Macro, operands: str, origin: Origin) -> None:
        depth = sum(1 for frame in self._frames if frame.kind == "macro")
        if depth >= MAX_MACRO_DEPTH:
            self._fail("macros nested too deeply")
        actuals: dict[str, str] = {}
        positional = iter(macro.params)
        keyword_seen = False
        index = 0
        text = operands.strip()
        while index < len(text):
            keyword = re.match(r"\s*([A-Za-z_.$][\w.$]*)\s*=(?!=)", text[index:])
            if keyword is not None:
                keyword_seen = True
                param = keyword.group(1)
                value, index = _macro_argument(text, index + keyword.end())
                if not any(p == param for p, _, _ in macro.params):
                    self._fail(f"Parameter named `{param}' does not exist for macro "
                               f"`{macro.name}'")
                actuals[param] = value
            else:
                if keyword_seen:
                    self._fail("can't mix positional and keyword arguments")
                spec = next(positional, None)
                if spec is None:
                    self._fail(f"too many positional arguments for macro `{macro.name}'")
                assert spec is not None
                if spec[2] == "vararg":
                    actuals[spec[0]] = text[index:].strip()
                    index = len(text)
                else:
                    value, index = _macro_argument(text, index)
                    actuals[spec[0]] = value
            index = _skip_comma(text, index)
        for param, _default, qualifier in macro.params:
            if qualifier == "req" and not actuals.get(param):
                self._fail(f"Missing value for required parameter `{param}' of macro "
                           f"`{macro.name}'")
        values = {param: (actuals.get(param) or default) for param, default, _ in macro.params}
        number = str(self._macro_number)
        self._macro_number += 1
        pieces: deque[tuple[Origin, str]] = deque()
        for body_origin, text_line in macro.body:
            expanded = _substitute(text_line, values, number)
            inner = Origin(origin.location, body_origin.body or body_origin.location,
                           body_origin.macro if body_origin.body else macro.name)
            for piece in split_statements(expanded):
                pieces.append((inner, piece))
        self._frames.append(_Frame(pieces, "macro", macro.name))

    def _d_rept(self, name: str, operands: str, body: str) -> None:
        origin = self._origin
        statements = self._capture(lambda word: word in _REPEAT_OPENERS, ".endr",
                                   "REPT without ENDR (this .rept has no .endr)", origin)
        count = self._absolute_now(operands, "non-constant expression in \".rept\"")
        if count < 0:
            self.warnings.append(f"{origin.location}: Warning: negative count for REPT - "
                                 "ignored")
            count = 0
        if count * max(len(statements), 1) > MAX_STATEMENTS:
            self._fail(f".rept {count} would expand to more than {MAX_STATEMENTS} statements")
        pieces: deque[tuple[Origin, str]] = deque()
        for _ in range(count):
            pieces.extend(statements)
        self._frames.append(_Frame(pieces, "repeat"))

    def _d_irp(self, name: str, operands: str, body: str) -> None:
        origin = self._origin
        statements = self._capture(lambda word: word in _REPEAT_OPENERS, ".endr",
                                   f"unexpected end of file in irp or irpc (this {name} has "
                                   "no .endr)", origin)
        match = re.match(r"\s*([A-Za-z_.$][\w.$]*)\s*(.*)\Z", operands, re.S)
        if match is None:
            self._fail("missing model parameter")
        assert match is not None
        param = match.group(1)
        rest = match.group(2).strip()
        if rest.startswith(","):
            rest = rest[1:].strip()
        values: list[str] = []
        if name == ".irpc":
            values = list(rest.strip('"').replace(" ", "")) if rest else [""]
        elif not rest:
            values = [""]
        else:
            index = 0
            while index < len(rest):
                value, index = _macro_argument(rest, index)
                values.append(value)
                index = _skip_comma(rest, index)
        pieces: deque[tuple[Origin, str]] = deque()
        for value in values:
            for piece_origin, text in statements:
                for piece in split_statements(_substitute(text, {param: value}, None)):
                    pieces.append((piece_origin, piece))
        self._frames.append(_Frame(pieces, "repeat"))

    def _d_include(self, name: str, operands: str, body: str) -> None:
        try:
            [file_name] = _parse_strings(operands)
        except ValueError:
            self._fail(f"missing string -- `{body}'")
        depth = sum(1 for frame in self._frames if frame.kind == "file")
        if depth > MAX_INCLUDE_DEPTH:
            self._fail(f".include nested more than {MAX_INCLUDE_DEPTH} deep (recursive include?)")
        decoded = file_name.decode("utf-8", "replace")
        path = self._find_file(decoded)
        try:
            text = path.read_text(errors="replace")
        except OSError:
            self._fail(f"can't open {decoded} for reading: No such file or directory")
        self.dependencies.append(path)
        shown = self.rename.get(str(path), str(path))
        lines = [(SourceLocation(shown, number), line)
                 for number, line in enumerate(text.splitlines(), start=1)]
        self._frames.append(_Frame(deque(self._pieces(lines)), "file"))

    def _find_file(self, name: str) -> Path:
        candidate = Path(name)
        if candidate.is_absolute():
            return candidate
        here = Path(self._origin.location.file).parent
        for directory in [here, *self.include_dirs]:
            if (directory / name).is_file():
                return directory / name
        return candidate


def _skip_comma(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t":
        index += 1
    if index < len(text) and text[index] == ",":
        index += 1
    while index < len(text) and text[index] in " \t":
        index += 1
    return index


def _macro_argument(text: str, index: int) -> tuple[str, int]:
    """One macro argument as GNU as's ``get_any_string`` reads it: up to a comma or a
    blank outside brackets; a double-quoted argument loses its quotes."""
    while index < len(text) and text[index] in " \t":
        index += 1
    if index < len(text) and text[index] == '"':
        out: list[str] = []
        index += 1
        while index < len(text):
            char = text[index]
            if char == "\\" and index + 1 < len(text) and text[index + 1] == '"':
                out.append('"')
                index += 2
                continue
            if char == '"':
                index += 1
                if index < len(text) and text[index] == '"':
                    out.append('"')
                    index += 1
                    continue
                break
            out.append(char)
            index += 1
        return "".join(out), index
    out = []
    brackets: list[str] = []
    while index < len(text):
        char = text[index]
        if not brackets and (char in " \t,"):
            break
        if char in "([":
            brackets.append(char)
        elif char in ")]" and brackets and brackets[-1] == "([" [char == "]"]:
            brackets.pop()
        elif char in "\"'":
            end = text.find(char, index + 1)
            end = len(text) - 1 if end < 0 else end
            out.append(text[index:end + 1])
            index = end + 1
            continue
        out.append(char)
        index += 1
    return "".join(out), index


_SUBSTITUTION = re.compile(r"\\\(([^)]*)\)?|\\@|\\&|\\([A-Za-z_.$][\w.$]*)|&([A-Za-z_.$][\w.$]*)&?")


def _substitute(text: str, values: Mapping[str, str], number: str | None) -> str:
    """Expand ``\\param``, ``&param``, ``\\@`` and ``\\()`` in a macro or .irp body line."""

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole.startswith("\\("):
            return match.group(1) or ""
        if whole == "\\@":
            return number if number is not None else whole
        if whole == "\\&":
            return whole
        name = match.group(2) or match.group(3)
        if name in values:
            return values[name]
        return whole

    return _SUBSTITUTION.sub(replace, text)


_DIRECTIVES: dict[str, Callable[..., object]] = {
    ".inst": Reader._d_inst,
    ".nop": Reader._d_nop,
    ".ascii": Reader._d_ascii, ".asciz": Reader._d_ascii, ".string": Reader._d_ascii,
    ".space": Reader._d_space, ".skip": Reader._d_space, ".zero": Reader._d_space,
    ".fill": Reader._d_fill,
    ".align": Reader._d_align, ".p2align": Reader._d_align, ".p2alignw": Reader._d_align,
    ".p2alignl": Reader._d_align, ".balign": Reader._d_align, ".balignw": Reader._d_align,
    ".balignl": Reader._d_align,
    ".org": Reader._d_org,
    ".incbin": Reader._d_incbin,
    ".ltorg": Reader._d_ltorg, ".pool": Reader._d_ltorg,
    ".equ": Reader._d_equate, ".set": Reader._d_equate, ".equiv": Reader._d_equate,
    ".eqv": Reader._d_equate,
    ".globl": Reader._d_global, ".global": Reader._d_global, ".weak": Reader._d_global,
    ".local": Reader._d_global,
    ".type": Reader._d_type, ".size": Reader._d_size,
    ".error": Reader._d_error, ".err": Reader._d_error,
    ".warning": Reader._d_warning,
    ".end": Reader._d_end,
    ".req": Reader._d_req, ".unreq": Reader._d_unreq,
    ".text": Reader._d_text, ".data": Reader._d_text, ".bss": Reader._d_text,
    ".section": Reader._d_section, ".pushsection": Reader._d_pushsection,
    ".popsection": Reader._d_popsection, ".previous": Reader._d_previous,
    ".macro": Reader._d_macro, ".endm": Reader._d_endm, ".exitm": Reader._d_exitm,
    ".purgem": Reader._d_purgem,
    ".rept": Reader._d_rept, ".rep": Reader._d_rept,
    ".irp": Reader._d_irp, ".irpc": Reader._d_irp, ".endr": Reader._d_endr,
    ".include": Reader._d_include,
    ".altmacro": Reader._d_unsupported, ".comm": Reader._d_unsupported,
    ".lcomm": Reader._d_unsupported, ".subsection": Reader._d_unsupported,
    ".octa": Reader._d_unsupported, ".float": Reader._d_unsupported,
    ".single": Reader._d_unsupported, ".double": Reader._d_unsupported,
    ".uleb128": Reader._d_unsupported, ".sleb128": Reader._d_unsupported,
    ".nops": Reader._d_unsupported,
}
_DIRECTIVE_NAMES = frozenset(_DIRECTIVES)
