"""One entry point from a file to a bootable image: what kind it is, where it goes.

:class:`BootSpec` holds what the command line (or a test) says about a boot:
the file, its kind, where to load it, the symbols to borrow, and the board
(entry EL, RAM, device tree, bootargs).  :meth:`BootSpec.load` reads the
file and returns the :class:`~emu.image.BootImage` and the
:class:`~emu.devices.Board` to boot it on.

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
import re
from dataclasses import dataclass, field
from pathlib import Path

from emu.devices import Board
from emu.fdt import FdtError, board_facts, decode
from emu.image import (
    ARM64_MAGIC,
    GZIP_MAGIC,
    BootImage,
    ElfSymbols,
    ImageError,
    gunzip,
    image_from_arm64,
    image_from_elf,
    image_from_program,
    image_from_raw,
    read_elf_symbols,
)

DEFAULT_ASM_LOAD_ADDRESS = 0x4000_0000
ELF_MAGIC = b"\x7fELF"
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


_SIZE = re.compile(r"^\s*(0x[0-9a-f_]+|[0-9_]+)\s*([kmgt]i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """A number with an optional K/M/G/T suffix (binary units): ``128M``, ``0x8000000``."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a size (try 128M or 0x8000000)")
    number = int(match.group(1).replace("_", ""), 0)
    return number * _UNITS[(match.group(2) or "")[:1].lower()]


def parse_ram(text: str) -> tuple[int, int]:
    """``BASE:SIZE`` (e.g. ``0x40000000:128M``) as (base, size)."""
    base, sep, size = text.partition(":")
    if not sep:
        raise ValueError(f"'{text}' is not BASE:SIZE (try 0x40000000:128M)")
    ram = parse_size(base), parse_size(size)
    if ram[1] == 0:
        raise ValueError(f"'{text}': the RAM size is 0")
    return ram


@dataclass
class BootSpec:
    """Everything said about one boot: the file and how to place it, and the board."""

    path: Path
    kind: ImageKind | None = None
    load_address: int | None = None
    defines: dict[str, str] = field(default_factory=dict)
    include_dirs: list[Path] = field(default_factory=list)
    symbols: Path | None = None
    el: int = 2
    ram: tuple[int, int] | None = None
    dtb: Path | None = None
    bootargs: str | None = None

    def load(self) -> tuple[BootImage, Board]:
        """Read the file (and device tree, and symbols); :class:`ImageError` names the
        file at fault."""
        dtb = None
        if self.dtb is not None:
            dtb = self.dtb.read_bytes()
            try:
                facts = board_facts(decode(dtb))
            except FdtError as err:
                raise ImageError(f"{self.dtb}: {err}") from None
            if self.ram is None and not facts.memory:
                raise ImageError(f"{self.dtb}: the device tree has no memory node; "
                                 "give the RAM with --ram BASE:SIZE")
            if self.bootargs is not None:
                raise ImageError(f"{self.dtb}: --bootargs goes into the generated device "
                                 "tree; put it in your own tree's /chosen instead")
        board = Board(ram=self.ram, el=self.el, dtb=dtb, bootargs=self.bootargs or "")
        image = load_image(self.path, kind=self.kind, load_address=self.load_address,
                           defines=self.defines, include_dirs=self.include_dirs,
                           symbols=self.symbols, board=board)
        return image, board


def load_image(
    path: str | Path,
    *,
    kind: ImageKind | str | None = None,
    load_address: int | None = None,
    defines: dict[str, str] | None = None,
    include_dirs: list[Path] | None = None,
    symbols: str | Path | None = None,
    board: Board | None = None,
) -> BootImage:
    """Build a :class:`BootImage` from any kind of file.

    ``load_address``: for assembly and raw binaries, where the first byte goes
    (default 0x40000000 and the RAM base); for an arm64 Image, the 2 MiB-aligned
    base it goes ``text_offset`` above (default: the RAM base).  ELF files go
    where their segments say.  ``symbols``: an ELF build of a raw or Image file.
    """
    path = Path(path)
    board = board or Board()
    with path.open("rb") as stream:
        head = stream.read(4096)
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
        from emu.assembler import assemble_file

        program = assemble_file(path, defines=defines or {}, include_dirs=include_dirs or [])
        address = DEFAULT_ASM_LOAD_ADDRESS if load_address is None else load_address
        return image_from_program(program, address, include_dirs=include_dirs)
    data = path.read_bytes()
    if image_kind is ImageKind.ELF:
        if load_address is not None:
            raise ImageError(f"{name}: an ELF file loads at its segments' physical "
                             "addresses; --load-address does not apply")
        return image_from_elf(data, name)
    ram_base, ram_size = board.ram_for(None)
    if image_kind is ImageKind.RAW:
        address = ram_base if load_address is None else load_address
        return image_from_raw(data, name, address, symbols=borrowed)
    if data.startswith(GZIP_MAGIC):
        data = gunzip(data, name, limit=ram_size)
    base = ram_base if load_address is None else load_address
    return image_from_arm64(data, name, base, symbols=borrowed)


def _symbols(path: str | Path) -> ElfSymbols:
    path = Path(path)
    return read_elf_symbols(path.read_bytes(), str(path))
