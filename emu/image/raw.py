"""Raw binary: bytes placed at a load address and entered at their first byte.

The file says nothing about itself: the caller gives the load address, and
names come from an ELF build of the same program
(:class:`~emu.image.elf.ElfSymbols`) or, without one, from the file's name.
:func:`flat_image` is that placement; :mod:`emu.image.arm64` uses it too, an
Image being a flat image once its header has said where it goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from emu.image.boot_image import BootImage, ImageError

if TYPE_CHECKING:
    from emu.image.elf import ElfSymbols


def image_from_raw(data: bytes, name: str, load_address: int, *,
                   symbols: ElfSymbols | None = None) -> BootImage:
    """A raw binary at ``load_address``, entered at its first byte."""
    if load_address % 4:
        raise ImageError(f"{name}: load address {load_address:#x} is not 4-byte aligned")
    if not data:
        raise ImageError(f"{name}: the file is empty")
    return flat_image(data, name, load_address, symbols, kind="raw")


def flat_image(data: bytes, name: str, load: int, symbols: ElfSymbols | None,
               kind: str) -> BootImage:
    """``data`` at ``load``, entered at its first byte and named by ``symbols`` (an ELF
    build of it) or, without them, after the file."""
    if symbols is not None:
        symbols.check_same_build(data, name)
        link, table = symbols.link_start, dict(symbols.symbols)
    else:
        # No symbol table: name addresses after the file, as offsets into it.
        link, table = load, {Path(name).name: load}
    return BootImage(name=name, payload=data, load_address=load, link_address=link,
                     memory_size=len(data), entry_link=link, symbols=table, kind=kind)
