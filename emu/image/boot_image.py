"""BootImage: what goes into physical memory, where, and how to name it.

An image is bytes linked for one (virtual) address and loaded at another
(physical) one.  Names of addresses come from the link-time symbol table; a
physical address inside the loaded image is named through its link alias, so
a PC is named the same before the MMU is on (physical) and after (virtual).

This module is the model.  The readers that build one are
:mod:`emu.image.program` (an assembled program), :mod:`emu.image.elf`,
:mod:`emu.image.arm64` (an arm64 ``Image``, possibly gzipped) and
:mod:`emu.image.raw`; :mod:`emu.image.load` picks the reader for a file.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emu.asm.program import Program
    from emu.image.arm64 import Arm64Header

_FAILURE_CODE = re.compile(
    r"^\s*#\s*define\s+(BOOT_ERR_\w+)\s+(\d+|0x[0-9a-fA-F]+)\s*/\*\s*(.*?)\s*\*/", re.MULTILINE
)


class ImageError(ValueError):
    """An image that cannot be placed or booted as asked (a user mistake)."""


@dataclass(frozen=True)
class FailureCode:
    """A code the boot program leaves in x0 when it gives up, with its meaning."""

    value: int
    name: str
    description: str


@dataclass(frozen=True)
class Segment:
    """Bytes placed at one physical address and linked for one virtual address.

    ``memory_size`` may exceed ``len(data)``: the rest is zero-filled, as an
    ELF loader does for a segment's BSS part.
    """

    physical: int
    virtual: int
    data: bytes
    memory_size: int

    @property
    def physical_end(self) -> int:
        return self.physical + self.memory_size


@dataclass
class BootImage:
    """Bytes to place in physical memory and the facts needed to boot and name them.

    A simple image is one ``payload`` at ``load_address``, linked at
    ``link_address``; an ELF image lists its ``segments`` instead, each with
    its own physical and virtual address.
    """

    name: str
    payload: bytes
    load_address: int
    link_address: int
    memory_size: int
    entry_link: int
    symbols: dict[str, int]
    bss: tuple[int, int] | None = None
    program: Program | None = None
    failure_codes: dict[int, FailureCode] = field(default_factory=dict)
    failure_symbol: str = "boot_failure"
    segments: tuple[Segment, ...] = ()
    kind: str = "program"
    header: Arm64Header | None = None
    _index: tuple[int, list[int], list[str]] | None = field(
        default=None, init=False, repr=False, compare=False)

    @property
    def phys_offset(self) -> int:
        """Physical minus link address of the image's first byte (of every byte,
        unless its segments say otherwise)."""
        return self.load_address - self.link_address

    @property
    def entry(self) -> int:
        """Physical address of the first instruction."""
        return self.physical(self.entry_link)

    def regions(self) -> tuple[Segment, ...]:
        """What to write into RAM: the segments, or the payload as one segment."""
        if self.segments:
            return self.segments
        return (Segment(self.load_address, self.link_address, self.payload,
                        len(self.payload)),)

    def physical(self, link_address: int) -> int:
        for segment in self.segments:
            if segment.virtual <= link_address < segment.virtual + segment.memory_size:
                return segment.physical + (link_address - segment.virtual)
        return link_address + self.phys_offset

    def link(self, physical: int) -> int:
        """The link (virtual) address of a physical address in the image."""
        for segment in self.segments:
            if segment.physical <= physical < segment.physical_end:
                return segment.virtual + (physical - segment.physical)
        return physical - self.phys_offset

    def symbol_physical(self, name: str) -> int:
        return self.physical(self.symbols[name])

    def in_image(self, address: int, *, physical: bool) -> bool:
        if self.segments:
            return any(
                (s.physical if physical else s.virtual) <= address
                < (s.physical if physical else s.virtual) + s.memory_size
                for s in self.segments
            )
        start = self.load_address if physical else self.link_address
        return start <= address < start + self.memory_size

    def symbolize(self, va: int, pa: int | None = None) -> str:
        """``name+0xoff`` for an address: as a link address, then via its PA, then
        as an identity alias (VA == PA) of the loaded image."""
        for candidate, physical in ((va, False), (pa, True), (va, True)):
            if candidate is None or not self.in_image(candidate, physical=physical):
                continue
            link = self.link(candidate) if physical else candidate
            if self.program is not None:
                named = self.program.symbolize(link)
            else:
                named = self._nearest(link)
            if named is not None:
                name, offset = named
                return f"{name}+{offset:#x}" if offset else name
        return "?"

    def _nearest(self, address: int) -> tuple[str, int] | None:
        # ELF images can have a hundred thousand symbols and tracing names
        # every instruction: keep a sorted index, rebuilt if the table changes.
        if self._index is None or self._index[0] != len(self.symbols):
            best: dict[int, str] = {}
            for _rank, value, name in sorted((_symbol_rank(name), value, name)
                                             for name, value in self.symbols.items()):
                best.setdefault(value, name)
            values = sorted(best)
            self._index = (len(self.symbols), values, [best[v] for v in values])
        _count, values, names = self._index
        position = bisect.bisect_right(values, address) - 1
        if position < 0:
            return None
        return names[position], address - values[position]


def _symbol_rank(name: str) -> bool:
    """Of several names for one address, prefer plain ones to ``_``/``.L`` helpers."""
    return name.startswith(("_", ".", "$"))


def failure_codes_in(paths: list[Path]) -> dict[int, FailureCode]:
    """Collect ``#define BOOT_ERR_X N /* meaning */`` lines from sources and headers."""
    codes: dict[int, FailureCode] = {}
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for name, value, description in _FAILURE_CODE.findall(text):
            number = int(value, 0)
            codes.setdefault(number, FailureCode(number, name, description))
    return codes
