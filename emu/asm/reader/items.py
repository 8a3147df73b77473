"""What reading produces: sections, the items laid out in them, labels and equates.

An :class:`Item` is bytes at an offset of a :class:`Section` (an instruction,
data, padding, a literal-pool entry, or a zero-sized position marker); a
:class:`Label` is an offset of a section; an :class:`EquateDef` is one
definition of a symbol by ``.set``/``.equ``/``=``.  ``emu.asm.link`` places
the sections and turns every item into bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emu.asm.expr import Value
from emu.asm.source import Origin

__all__ = ["PREFIX", "SECTION_KINDS", "EquateDef", "Item", "Label", "PoolEntry", "ReadError",
           "Section"]

# Every name the front-end invents starts with this, so it never clashes with
# a user's symbol and is easy to leave out of the symbol table.
PREFIX = "__bootemu_"
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
