"""The platform an image boots on, and where everything goes for one boot.

:class:`Board` says what the platform is (RAM, entry exception level, the
device tree, the UART); :meth:`Board.plan` turns it and an image into a
:class:`MemoryPlan`, refusing images that do not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.board.fdt import BoardFacts, FdtError, board_facts, boot_tree, decode, encode
from emu.board.pl011 import PL011_SIZE
from emu.image.boot_image import BootImage, ImageError

MIB = 1 << 20
TWO_MIB = 2 * MIB
# QEMU's virt board: RAM at 1 GiB, its PL011 at 0x0900_0000.
VIRT_RAM = (0x4000_0000, 128 * MIB)
PL011_BASE = 0x0900_0000
# The boot protocol caps the device tree at 2 MiB; it gets the top 2 MiB of RAM.
DTB_RESERVE = TWO_MIB


@dataclass(frozen=True)
class MemoryPlan:
    """Where RAM, the device tree and the UART are for one boot."""

    ram_base: int
    ram_size: int
    dtb_address: int
    dtb: bytes
    uart_base: int | None

    @property
    def ram_end(self) -> int:
        return self.ram_base + self.ram_size


@dataclass(frozen=True)
class Board:
    """The platform an image boots on.

    ``ram`` is (base, size); None takes it from ``dtb``'s memory node, else
    QEMU virt's RAM when the image starts there (an assembled program: when it
    fits there), else RAM around the image.
    ``dtb`` is a device tree blob to pass instead of the generated one (its
    PL011, if any, is where the UART goes); ``bootargs`` is the generated
    tree's /chosen/bootargs.  ``el`` is the exception level at entry (1 or 2).
    """

    ram: tuple[int, int] | None = None
    el: int = 2
    dtb: bytes | None = None
    bootargs: str = ""
    uart_base: int | None = None

    def facts(self) -> BoardFacts | None:
        """The RAM, UART and bootargs of the user's device tree (None without one)."""
        if self.dtb is None:
            return None
        try:
            return board_facts(decode(self.dtb))
        except FdtError as err:
            raise ImageError(f"device tree: {err}") from None

    def ram_for(self, image: BootImage | None = None) -> tuple[int, int]:
        """The RAM this board gives ``image`` (for an Image's load base: None)."""
        if self.ram is not None:
            return self.ram
        facts = self.facts()
        if facts is not None and facts.memory:
            return facts.memory[0]
        if image is None or image.kind == "image" or _fits(image, *VIRT_RAM):
            return VIRT_RAM
        extents = _extents(image)
        low = min(e.physical for e in extents)
        if image.kind != "program" and VIRT_RAM[0] <= low < VIRT_RAM[0] + VIRT_RAM[1]:
            return VIRT_RAM  # a file made for this RAM that does not fit it: say so
        # Elsewhere (e.g. head.S at Juno's second bank, or moved by a sweep): RAM
        # around the image.
        low &= ~(TWO_MIB - 1)
        high = max(e.physical_end for e in extents)
        size = max(VIRT_RAM[1], _round_up(high - low, TWO_MIB) + DTB_RESERVE + TWO_MIB)
        return low, size

    def plan(self, image: BootImage) -> MemoryPlan:
        """Lay out RAM, device tree and UART for ``image``; :class:`ImageError` if it
        cannot be placed."""
        if self.el not in (1, 2):
            raise ImageError(f"entry exception level must be 1 or 2, not {self.el}")
        base, size = self.ram_for(image)
        if base % 4096 or size % 4096 or size < 2 * DTB_RESERVE:
            raise ImageError(f"RAM {base:#x}+{size:#x}: base and size must be 4 KiB aligned "
                             f"and the size at least {2 * DTB_RESERVE >> 20} MiB")
        dtb_address = ((base + size) & ~(TWO_MIB - 1)) - DTB_RESERVE
        facts = self.facts()
        if facts is not None:
            uart = facts.uart
        elif self.uart_base is not None:
            uart = self.uart_base
        else:
            uart = PL011_BASE
            if base < PL011_BASE + PL011_SIZE and base + size > PL011_BASE:
                uart = _round_up(base + size, TWO_MIB)  # RAM is where QEMU puts the UART
        if uart is not None and base < uart + PL011_SIZE and uart < base + size:
            raise ImageError(f"the UART at {uart:#x} lies inside RAM [{base:#x}, "
                             f"{base + size:#x})")
        if self.dtb is not None:
            dtb = self.dtb
        else:
            dtb = encode(boot_tree(ram_base=base, ram_size=size, bootargs=self.bootargs,
                                   uart_base=uart))
        plan = MemoryPlan(base, size, dtb_address, dtb, uart)
        _check_placement(image, plan)
        return plan


@dataclass(frozen=True)
class _Extent:
    what: str
    physical: int
    physical_end: int


def _extents(image: BootImage) -> list[_Extent]:
    """Every physical range the image occupies, described for error messages."""
    extents = []
    regions = image.regions()
    for number, region in enumerate(regions):
        what = f"segment {number}" if image.segments else "the image"
        size = image.memory_size if not image.segments else region.memory_size
        if image.kind == "image" and image.header is not None:
            what = f"the Image (image_size {size:#x})"
        extents.append(_Extent(what, region.physical, region.physical + size))
    if image.bss is not None:
        extents.append(_Extent("its BSS", *image.bss))
    return extents


def _fits(image: BootImage, base: int, size: int) -> bool:
    top = ((base + size) & ~(TWO_MIB - 1)) - DTB_RESERVE
    return all(base <= e.physical and e.physical_end <= top for e in _extents(image))


def _check_placement(image: BootImage, plan: MemoryPlan) -> None:
    dtb_end = plan.dtb_address + len(plan.dtb)
    for extent in _extents(image):
        span = f"[{extent.physical:#x}, {extent.physical_end:#x})"
        if extent.physical < plan.ram_base or extent.physical_end > plan.ram_end:
            raise ImageError(f"{image.name}: {extent.what} at {span} does not fit in RAM "
                             f"[{plan.ram_base:#x}, {plan.ram_end:#x}) (see --ram)")
        if extent.physical < dtb_end and plan.dtb_address < extent.physical_end:
            raise ImageError(f"{image.name}: {extent.what} at {span} overlaps the device "
                             f"tree at [{plan.dtb_address:#x}, {dtb_end:#x})")


def _round_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)
