"""BootImage: what goes into physical memory, where, and how to name it.

An image is bytes linked for one (virtual) address and loaded at another
(physical) one.  Names of addresses come from the link-time symbol table; a
physical address inside the loaded image is named through its link alias, so
a PC is named the same before the MMU is on (physical) and after (virtual).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emu.assembler import Program

TWO_MIB = 2 << 20

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


@dataclass
class BootImage:
    """Bytes to place in physical memory and the facts needed to boot and name them."""

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

    @property
    def phys_offset(self) -> int:
        """Physical minus link address of every byte of the image."""
        return self.load_address - self.link_address

    @property
    def entry(self) -> int:
        """Physical address of the first instruction."""
        return self.physical(self.entry_link)

    def physical(self, link_address: int) -> int:
        return link_address + self.phys_offset

    def symbol_physical(self, name: str) -> int:
        return self.physical(self.symbols[name])

    def in_image(self, address: int, *, physical: bool) -> bool:
        start = self.load_address if physical else self.link_address
        return start <= address < start + self.memory_size

    def symbolize(self, va: int, pa: int | None = None) -> str:
        """``name+0xoff`` for an address: as a link address, then via its PA, then
        as an identity alias (VA == PA) of the loaded image."""
        for candidate, physical in ((va, False), (pa, True), (va, True)):
            if candidate is None or not self.in_image(candidate, physical=physical):
                continue
            link = candidate - self.phys_offset if physical else candidate
            if self.program is not None:
                named = self.program.symbolize(link)
            else:
                named = _nearest(self.symbols, link)
            if named is not None:
                name, offset = named
                return f"{name}+{offset:#x}" if offset else name
        return "?"


def _nearest(symbols: dict[str, int], address: int) -> tuple[str, int] | None:
    best: tuple[str, int] | None = None
    for name, value in symbols.items():
        if value <= address and (best is None or value > symbols[best[0]]):
            best = (name, address - value)
    return best


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


def image_from_program(
    program: Program,
    load_address: int,
    *,
    include_dirs: list[Path] | None = None,
    entry_symbol: str = "_start",
) -> BootImage:
    """Place an assembled program at a physical load address.

    Bytes from ``__bss_start`` on are not copied: a loader does not promise
    they are zero, and the boot code must clear them itself.
    """
    if load_address % 4:
        raise ImageError(f"load address {load_address:#x} is not 4-byte aligned")
    code = program.code
    bss: tuple[int, int] | None = None
    payload_size = len(code)
    start, end = program.symbols.get("__bss_start"), program.symbols.get("__bss_end")
    if start is not None and end is not None and program.base <= start <= end:
        payload_size = start - program.base
        bss = (load_address + payload_size, load_address + (end - program.base))
    source = Path(program.source)
    headers = [source]
    for directory in [source.parent / "include", *(include_dirs or [])]:
        headers.extend(sorted(Path(directory).glob("*.h")))
    return BootImage(
        name=source.name,
        payload=code[:payload_size],
        load_address=load_address,
        link_address=program.base,
        memory_size=max(len(code), (bss[1] - load_address) if bss else 0),
        entry_link=program.symbols.get(entry_symbol, program.base),
        symbols=dict(program.symbols),
        bss=bss,
        program=program,
        failure_codes=failure_codes_in(headers),
    )
