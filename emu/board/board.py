"""The platform an image boots on, and where everything goes for one boot.

:class:`Board` says what the platform is (RAM, entry exception level, the
device tree, the UART); :meth:`Board.plan` turns it and an image into a
:class:`MemoryPlan`, refusing images that do not fit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from emu.board.fdt import (
    BoardFacts,
    FdtError,
    Platform,
    board_facts,
    boot_tree,
    decode,
    encode,
)
from emu.board.gic import (
    GICC_BASE,
    GICC_SIZE,
    GICD_BASE,
    GICD_SIZE,
    GICH_BASE,
    GICH_SIZE,
    GICV2M_BASE,
    GICV2M_SIZE,
    GICV_BASE,
    GICV_SIZE,
)
from emu.board.pl011 import PL011_SIZE
from emu.board.timer import PPI_HYP_PHYS, PPI_PHYS, PPI_VIRT
from emu.image.boot_image import BootImage, ImageError

MIB = 1 << 20
TWO_MIB = 2 * MIB
# QEMU's virt board: RAM at 1 GiB, its PL011 at 0x0900_0000.
VIRT_RAM = (0x4000_0000, 128 * MIB)
PL011_BASE = 0x0900_0000
# The CPU models a board can have: the names QEMU's -cpu takes.
CPU_MODELS = ("cortex-a72", "cortex-a57", "cortex-a53")
# The boot protocol caps the device tree at 2 MiB; it gets the top 2 MiB of RAM
# (but see MemoryPlan for Images and firmware, placed as QEMU places them).
DTB_RESERVE = TWO_MIB
# QEMU virt's device tree blob is 1 MiB, mostly free space; a kernel reserves
# all of it, so a smaller blob would change what Linux reports as reserved.
VIRT_FDT_SIZE = 1 * MIB
# QEMU virt's flash: the first of its two 64 MiB banks, where -bios loads firmware.
FLASH = (0, 64 * MIB)
_GICV2_COMPATIBLES = (b"arm,cortex-a15-gic\0", b"arm,gic-400\0")
PPI_SECURE_PHYS = 29  # described, never raised: there is no Secure state here


@dataclass(frozen=True)
class MemoryPlan:
    """Where RAM, the device tree, the UART and the flash are for one boot.

    ``extra_memory`` are further RAM banks (from a ``--dtb`` with several);
    ``flash`` is the read-only region firmware runs from (``Board.bios``), and
    ``gic`` says whether the board has its interrupt controller (not when a
    user's device tree is passed: then the guest may expect another).
    """

    ram_base: int
    ram_size: int
    dtb_address: int
    dtb: bytes
    uart_base: int | None
    extra_memory: tuple[tuple[int, int], ...] = ()
    flash: tuple[int, int] | None = None
    gic: bool = True

    @property
    def ram_end(self) -> int:
        return self.ram_base + self.ram_size


@dataclass(frozen=True)
class Board:
    """The platform an image boots on.

    ``ram`` is (base, size); None takes it from ``dtb``'s memory node, else
    QEMU virt's RAM for firmware (``bios``) and when the image starts there
    (an assembled program: when it fits there), else RAM around the image.
    ``dtb`` is a device tree blob to pass instead of the generated one (its
    PL011, if any, is where the UART goes); ``bootargs`` is the generated
    tree's /chosen/bootargs.  ``el`` is the exception level at entry (1 or 2).
    ``cpu`` is the CPU model (see :data:`CPU_MODELS`); ``seed`` seeds every
    source of randomness the guest sees (the device tree's ``kaslr-seed`` and
    ``rng-seed``), so two runs with one seed are identical.  With ``bios``
    the image is firmware: it sits in a flash region at 0 and is entered
    there, as under QEMU's ``-bios``, and the device tree goes to the start of
    RAM.  ``translation_buffer`` is how many bytes of host code Unicorn
    reserves for translated guest code (None: its default, 1 GiB of address
    space): many short boots in one process (a sweep) ask for less.
    """

    ram: tuple[int, int] | None = None
    el: int = 2
    dtb: bytes | None = None
    bootargs: str = ""
    uart_base: int | None = None
    cpu: str = "cortex-a72"
    seed: int = 0
    bios: bool = False
    translation_buffer: int | None = None

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
        if self.bios or image is None or image.kind == "image" or _fits(image, *VIRT_RAM):
            return VIRT_RAM  # firmware sits in the flash at 0: RAM is where QEMU puts it
        extents = _extents(image)
        low = min(e.physical for e in extents)
        if image.kind != "program" and VIRT_RAM[0] <= low < VIRT_RAM[0] + VIRT_RAM[1]:
            return VIRT_RAM  # a file made for this RAM that does not fit it: say so
        # Elsewhere (e.g. head.S at Juno's second bank, or moved by a sweep): RAM
        # around the image.
        low &= ~(TWO_MIB - 1)
        high = max(e.physical_end for e in extents)
        size = max(VIRT_RAM[1], _round_up(high - low, TWO_MIB) + DTB_RESERVE + TWO_MIB)
        if low + size > 1 << 64:
            # Refused here, before the device tree's 64-bit cells or Unicorn see it.
            hint = "" if image.kind == "elf" else "a lower --load-address, or "
            raise ImageError(f"{image.name}: the RAM bootemu would place around the image, "
                             f"[{low:#x}, {low + size:#x}), runs past the top of the 64-bit "
                             f"address space: give {hint}the RAM with --ram BASE:SIZE")
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
        dtb_address = self._dtb_address(image, base, size)
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
        extra = tuple(facts.memory[1:]) if facts is not None and self.ram is None else ()
        if self.dtb is not None:
            dtb = self.dtb
        else:
            dtb = encode(boot_tree(ram_base=base, ram_size=size, bootargs=self.bootargs,
                                   uart_base=uart, platform=self.platform()),
                         size=VIRT_FDT_SIZE)
        # A user's tree may describe another interrupt controller (QEMU's virt
        # tree dumped with gic-version=3, say, has a GICv3 at the same address):
        # model ours only for a GICv2.
        gic = self.dtb is None or any(name in self.dtb for name in _GICV2_COMPATIBLES)
        plan = MemoryPlan(base, size, dtb_address, dtb, uart, extra,
                          FLASH if self.bios else None, gic)
        _check_placement(image, plan)
        return plan

    def platform(self) -> Platform:
        """What the generated device tree says about the CPU, PSCI, GIC and timer."""
        if self.cpu not in CPU_MODELS:
            raise ImageError(f"unknown CPU model '{self.cpu}' (choose from "
                             f"{', '.join(CPU_MODELS)})")
        # One seed, two values: the kaslr-seed and the rng-seed that Linux and
        # QEMU's virt board put in /chosen.
        digest = hashlib.sha256(f"bootemu seed {self.seed}".encode()).digest()
        return Platform(
            cpu_compatible=f"arm,{self.cpu}",
            # QEMU's conduit: SMC when the guest owns EL2, HVC otherwise.
            psci_method="smc" if self.el == 2 else "hvc",
            gic=((GICD_BASE, GICD_SIZE), (GICC_BASE, GICC_SIZE), (GICH_BASE, GICH_SIZE),
                 (GICV_BASE, GICV_SIZE)),
            gic_v2m=(GICV2M_BASE, GICV2M_SIZE),
            timer_ppis=(PPI_SECURE_PHYS, PPI_PHYS, PPI_VIRT, PPI_HYP_PHYS),
            kaslr_seed=int.from_bytes(digest[:8], "big"), rng_seed=digest)

    def _dtb_address(self, image: BootImage, base: int, size: int) -> int:
        """Where the device tree goes: as QEMU puts it for firmware (the start of
        RAM) and for Images (hw/arm/boot.c: after the initrd space, which starts
        at min(RAM / 2, 128 MiB) and is empty here, 2 MiB aligned), else the top
        2 MiB of RAM."""
        top = ((base + size) & ~(TWO_MIB - 1)) - DTB_RESERVE
        if self.bios:
            return base
        if image.kind == "image":
            after_initrd = _round_up(base + min(size // 2, 128 * MIB), TWO_MIB)
            if all(e.physical_end <= after_initrd or e.physical >= after_initrd + DTB_RESERVE
                   for e in _extents(image)) and after_initrd + DTB_RESERVE <= base + size:
                return after_initrd
        return top


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
        if plan.flash is not None:
            flash_base, flash_size = plan.flash
            if not flash_base <= extent.physical < extent.physical_end <= flash_base + flash_size:
                raise ImageError(f"{image.name}: firmware {extent.what} at {span} does not "
                                 f"fit in the flash [{flash_base:#x}, "
                                 f"{flash_base + flash_size:#x})")
            continue
        banks = ((plan.ram_base, plan.ram_size), *plan.extra_memory)
        if not any(b <= extent.physical and extent.physical_end <= b + n for b, n in banks):
            raise ImageError(f"{image.name}: {extent.what} at {span} does not fit in RAM "
                             f"[{plan.ram_base:#x}, {plan.ram_end:#x}) (see --ram)")
        if extent.physical < dtb_end and plan.dtb_address < extent.physical_end:
            raise ImageError(f"{image.name}: {extent.what} at {span} overlaps the device "
                             f"tree at [{plan.dtb_address:#x}, {dtb_end:#x})")


def _round_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)
