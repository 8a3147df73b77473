"""One entry point from a file to a bootable image: what kind it is, where it goes.

:func:`read_image` reads any file into a :class:`~emu.image.boot_image.BootImage`
with the reader for its kind (:mod:`~emu.image.elf`, :mod:`~emu.image.arm64`,
:mod:`~emu.image.raw`, or the assembler and :mod:`~emu.image.program`);
:mod:`emu.board.spec` adds the board around it.

Kinds are told apart by content, then by name:

* ``elf``: the ELF magic;
* ``image``: an arm64 Image (``ARM\\x64`` at offset 0x38), or a gzip stream
  (which must hold one), or a file named like one (``Image``, ``*.Image``);
* ``asm``: a ``.S``/``.s``/``.asm`` file, or any file of text - assembled with
  the C preprocessor and keystone, as ``bootemu check`` always has;
* ``raw``: a ``.bin``/``.raw``/``.img`` file, placed at the load address.

Anything else needs ``--format``.
"""

from __future__ import annotations

import enum
from pathlib import Path

from emu.asm.files import (
    MAX_IMAGE_FILE_BYTES,
    FileRefused,
    check_regular_file,
    named,
    read_limited,
)
from emu.image.arm64 import ARM64_MAGIC, GZIP_MAGIC, gunzip, image_from_arm64
from emu.image.boot_image import BootImage, ImageError
from emu.image.elf import ELF_MAGIC, ElfSymbols, image_from_elf, read_elf_symbols
from emu.image.program import image_from_program
from emu.image.raw import image_from_raw
from emu.image.symbols import read_system_map

DEFAULT_ASM_LOAD_ADDRESS = 0x4000_0000
ASM_SUFFIXES = {".s", ".asm", ".sx"}
RAW_SUFFIXES = {".bin", ".raw", ".img"}


class ImageKind(enum.StrEnum):
    """What a file holds."""

    ASM = "asm"
    ELF = "elf"
    IMAGE = "image"
    RAW = "raw"


def detect_kind(path: Path, head: bytes) -> ImageKind:
    """The kind of a file from its first bytes and its name, or :class:`ImageError`."""
    if head.startswith(ELF_MAGIC):
        return ImageKind.ELF
    if head.startswith(GZIP_MAGIC) or head[0x38:0x3C] == ARM64_MAGIC:
        return ImageKind.IMAGE
    suffix = path.suffix.lower()
    if suffix in ASM_SUFFIXES:
        return ImageKind.ASM
    if suffix in RAW_SUFFIXES:
        return ImageKind.RAW
    if path.name == "Image" or path.name.startswith("Image.") or suffix == ".image":
        return ImageKind.IMAGE
    if _looks_like_text(head):
        return ImageKind.ASM
    raise ImageError(f"{path}: cannot tell what kind of image this is (not ELF, no arm64 "
                     "Image magic, not gzip, not text); say it with --format "
                     "elf|image|raw|asm")


def _looks_like_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode()
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 3  # a multi-byte character cut by the read
    return True


def read_image(
    path: str | Path,
    *,
    ram: tuple[int, int],
    kind: ImageKind | str | None = None,
    load_address: int | None = None,
    defines: dict[str, str] | None = None,
    include_dirs: list[Path] | None = None,
    symbols: str | Path | None = None,
) -> BootImage:
    """Build a :class:`BootImage` from any kind of file.

    ``load_address``: for assembly and raw binaries, where the first byte goes
    (default 0x40000000 and the RAM base); for an arm64 Image, the 2 MiB-aligned
    base it goes ``text_offset`` above (default: the RAM base).  ELF files go
    where their segments say.  ``symbols``: an ELF build of a raw or Image
    file, or its System.map.  ``ram``: (base, size) of the RAM the image will boot in.
    """
    path = Path(path)
    head = read_head(path)
    image_kind = ImageKind(kind) if kind is not None else detect_kind(path, head)
    name = str(path)
    if image_kind is not ImageKind.ASM and (defines or include_dirs):
        raise ImageError(f"{name}: -D and -I apply to assembly sources, not to "
                         f"{image_kind.value} files")
    borrowed = _symbols(symbols) if symbols is not None else None
    if borrowed is not None and image_kind not in (ImageKind.IMAGE, ImageKind.RAW):
        raise ImageError(f"{name}: --symbols is for raw and Image files; "
                         f"a {image_kind.value} file has its own")

    if image_kind is ImageKind.ASM:
        from emu.asm.assembler import assemble_file

        program = assemble_file(path, defines=defines or {}, include_dirs=include_dirs or [])
        address = DEFAULT_ASM_LOAD_ADDRESS if load_address is None else load_address
        return image_from_program(program, address, include_dirs=include_dirs)
    data = read_file(path, MAX_IMAGE_FILE_BYTES)
    if image_kind is ImageKind.ELF:
        if load_address is not None:
            raise ImageError(f"{name}: an ELF file loads at its segments' physical "
                             "addresses; --load-address does not apply")
        return image_from_elf(data, name)
    ram_base, ram_size = ram
    if image_kind is ImageKind.RAW:
        address = ram_base if load_address is None else load_address
        return image_from_raw(data, name, address, symbols=borrowed)
    if data.startswith(GZIP_MAGIC):
        data = gunzip(data, name, limit=ram_size)
    base = ram_base if load_address is None else load_address
    return image_from_arm64(data, name, base, symbols=borrowed)


def read_file(path: str | Path, limit: int) -> bytes:
    """A user's file, at most ``limit`` bytes of a regular file: anything else (a
    FIFO, a device, a directory, a file too large) is an :class:`ImageError`
    naming it.  :class:`OSError` when it cannot be opened."""
    try:
        return read_limited(path, limit)
    except FileRefused as err:
        raise ImageError(str(err)) from None


def read_head(path: str | Path) -> bytes:
    """The first 4 KiB of a user's file, to tell its kind; refused as
    :func:`read_file` refuses (a FIFO would block the read forever)."""
    try:
        check_regular_file(path, MAX_IMAGE_FILE_BYTES)
    except FileRefused as err:
        raise ImageError(str(err)) from None
    try:
        with Path(path).open("rb") as stream:
            return stream.read(4096)
    except OSError as err:
        raise named(err, path) from None


def _symbols(path: str | Path) -> ElfSymbols:
    """The symbols of ``--symbols``: an ELF build (by its magic) or a System.map
    (text, as ``nm -n`` prints it); :class:`ImageError` for anything else."""
    path = Path(path)
    try:
        # An ELF build with debug information (vmlinux) can be hundreds of MiB.
        data = read_file(path, MAX_IMAGE_FILE_BYTES)
    except OSError as err:
        raise ImageError(f"{path}: cannot read the symbols file ({err.strerror})") from None
    if data.startswith(ELF_MAGIC):
        return read_elf_symbols(data, str(path))
    if not _looks_like_text(data[:4096]):
        raise ImageError(f"{path}: neither an ELF file nor a System.map (text lines "
                         "ADDRESS TYPE NAME, as nm prints them)")
    return read_system_map(data, str(path))
