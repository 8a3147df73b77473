"""A boot as the command line (or a test) describes it: the file, how to place
it, and the board around it.

:class:`BootSpec` holds the file, its kind, where to load it, the symbols to
borrow, and the board (entry EL, RAM, device tree, bootargs, CPU model, seed,
and whether the file is firmware booted as QEMU's ``-bios`` boots it).
:meth:`BootSpec.load` reads the file and returns the
:class:`~emu.image.boot_image.BootImage` and the :class:`~emu.board.board.Board`
to boot it on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from emu.asm.files import MAX_SMALL_FILE_BYTES
from emu.board.board import FLASH, Board
from emu.board.fdt import FdtError, board_facts, decode
from emu.image.boot_image import BootImage, ImageError
from emu.image.elf import ELF_MAGIC
from emu.image.load import ImageKind, read_file, read_head, read_image

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
    # The board writes both into 64-bit device tree cells and maps them in a
    # 64-bit address space: larger values must fail here, not in struct.pack.
    if ram[0] >> 64 or ram[1] >> 64:
        raise ValueError(f"'{text}': the RAM base and size must fit in 64 bits")
    if ram[0] + ram[1] > 1 << 64:
        raise ValueError(f"'{text}': the RAM would run past the top of the 64-bit "
                         "address space")
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
    cpu: str = "cortex-a72"
    seed: int = 0
    # The file is firmware: loaded at the flash base 0 and entered there, the
    # device tree at the start of RAM (QEMU's -bios).
    bios: bool = False

    def load(self) -> tuple[BootImage, Board]:
        """Read the file (and device tree, and symbols); :class:`ImageError` names the
        file at fault.  Firmware (``bios``) is read as a raw image at address 0,
        or as an ELF file at its segments' addresses."""
        dtb = None
        if self.dtb is not None:
            dtb = read_file(self.dtb, MAX_SMALL_FILE_BYTES)
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
        board = Board(ram=self.ram, el=self.el, dtb=dtb, bootargs=self.bootargs or "",
                      cpu=self.cpu, seed=self.seed, bios=self.bios)
        kind, load_address = self.kind, self.load_address
        if self.bios:
            kind, load_address = self._firmware_placement()
        image = load_image(self.path, kind=kind, load_address=load_address,
                           defines=self.defines, include_dirs=self.include_dirs,
                           symbols=self.symbols, board=board)
        return image, board

    def _firmware_placement(self) -> tuple[ImageKind, int | None]:
        """How firmware is read: an ELF file where its segments say, anything
        else as a raw image at the flash base 0."""
        if self.load_address is not None:
            raise ImageError(f"{self.path}: firmware (--bios) loads at the flash base 0; "
                             "--load-address does not apply")
        kind = self.kind
        if kind is None:
            magic = read_head(self.path)[:4]
            kind = ImageKind.ELF if magic == ELF_MAGIC else ImageKind.RAW
        if kind is ImageKind.ELF:
            return kind, None
        if kind is not ImageKind.RAW:
            raise ImageError(f"{self.path}: firmware (--bios) is a raw image or an ELF "
                             f"file, not {kind.value}")
        return kind, FLASH[0]  # the flash base


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
    """Build a :class:`BootImage` from any kind of file, for ``board`` (default: QEMU
    virt's RAM at EL2); see :func:`emu.image.load.read_image`."""
    return read_image(path, ram=(board or Board()).ram_for(None), kind=kind,
                      load_address=load_address, defines=defines,
                      include_dirs=include_dirs, symbols=symbols)
