"""arm64 ``Image``: the kernel image of Linux's arm64 boot protocol.

Takes the 64-byte header (the ``ARM\\x64`` magic at 0x38; a branch at offset 0,
or at 4 behind an EFI stub's ``MZ``; text_offset, image_size and flags) and
places the file ``text_offset`` above a 2 MiB-aligned base.  A gzipped Image is
inflated first (:func:`gunzip`).  Names come from an ELF build of the same
kernel, if given (:class:`~emu.image.elf.ElfSymbols`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emu.image.boot_image import BootImage, ImageError
from emu.image.raw import flat_image

if TYPE_CHECKING:
    from emu.image.elf import ElfSymbols

TWO_MIB = 2 << 20

ARM64_MAGIC = b"ARM\x64"
ARM64_HEADER_SIZE = 64
# Before Linux 3.17 image_size was 0 and text_offset meant 0x80000.
LEGACY_TEXT_OFFSET = 0x80000
_B_MASK, _B = 0xFC000000, 0x14000000
_MZ = b"MZ"  # EFI stub: code0 is "add x13, x18, #0x16", whose first bytes read "MZ"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Arm64Header:
    """The 64-byte header of an arm64 ``Image`` (Linux's boot protocol)."""

    code0: int
    code1: int
    text_offset: int
    image_size: int
    flags: int

    @property
    def big_endian(self) -> bool:
        return bool(self.flags & 1)

    @property
    def page_size(self) -> int | None:
        """The kernel's page size from flags bits 1-2 (None: unspecified)."""
        return {1: 4096, 2: 16384, 3: 65536}.get((self.flags >> 1) & 3)

    @property
    def place_anywhere(self) -> bool:
        """Flags bit 3: the 2 MiB-aligned base may be anywhere in RAM, not only low."""
        return bool(self.flags & 8)


def parse_arm64_header(data: bytes, name: str) -> Arm64Header:
    """Read and validate an Image header; :class:`ImageError` says what is wrong."""
    if len(data) < ARM64_HEADER_SIZE:
        raise ImageError(f"{name}: truncated arm64 Image header: {len(data)} bytes, "
                         f"the header is {ARM64_HEADER_SIZE}")
    code0, code1, text_offset, image_size, flags = struct.unpack_from("<IIQQQ", data)
    magic = data[0x38:0x3C]
    if magic != ARM64_MAGIC:
        raise ImageError(f"{name}: not an arm64 Image: magic at offset 0x38 is {magic!r}, "
                         f"expected {ARM64_MAGIC!r}")
    branch = code1 if data[:2] == _MZ else code0
    if branch & _B_MASK != _B:
        raise ImageError(f"{name}: not an arm64 Image: no branch instruction at offset "
                         f"{4 if data[:2] == _MZ else 0} (found {branch:#010x})")
    header = Arm64Header(code0, code1, text_offset, image_size, flags)
    if header.big_endian:
        raise ImageError(f"{name}: big-endian arm64 Image (flags bit 0); bootemu runs "
                         "little-endian kernels only")
    if image_size != 0 and text_offset % 4:
        # The entry point is text_offset above the base: it must be an
        # instruction's address, or the CPU would run at an odd PC.
        raise ImageError(f"{name}: header's text_offset {text_offset:#x} is not a "
                         "multiple of 4 (the entry point must be an instruction's address)")
    if image_size == 0:
        header = Arm64Header(code0, code1, LEGACY_TEXT_OFFSET, 0, flags)
    elif image_size < len(data):
        raise ImageError(f"{name}: header's image_size {image_size:#x} is smaller than the "
                         f"file ({len(data):#x} bytes)")
    return header


def gunzip(data: bytes, name: str, limit: int) -> bytes:
    """Decompress a gzip stream of at most ``limit`` bytes, or say why it cannot be."""
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = stream.decompress(data, limit + 1)
    except zlib.error as err:
        raise ImageError(f"{name}: corrupt gzip stream ({err})") from None
    if len(out) > limit:
        raise ImageError(f"{name}: decompresses to more than {limit:#x} bytes, "
                         "larger than RAM")
    if not stream.eof:
        raise ImageError(f"{name}: gzip stream is cut short ({len(data)} compressed bytes "
                         f"gave {len(out)} before the data ended)")
    return out


def image_from_arm64(data: bytes, name: str, base: int, *,
                     symbols: ElfSymbols | None = None) -> BootImage:
    """Place an arm64 Image ``text_offset`` bytes above the 2 MiB-aligned ``base``.

    Bytes between the end of the file and ``image_size`` (the kernel's BSS and
    early data) are left as garbage: the boot protocol makes clearing them
    the kernel's job.
    """
    header = parse_arm64_header(data, name)
    if base % TWO_MIB:
        raise ImageError(f"{name}: load base {base:#x} is not 2 MiB aligned, as the arm64 "
                         "boot protocol requires (the Image goes text_offset above it)")
    load = base + header.text_offset
    size = max(header.image_size, len(data))
    image = flat_image(data, name, load, symbols, kind="image")
    image.memory_size = size
    image.header = header
    if size > len(data):
        image.bss = (load + len(data), load + size)
    return image
