"""The board around the CPU: RAM and device-tree placement, and the few devices
boot code talks to before and just after its C entry.

* :class:`Board` says what the platform is (RAM, entry exception level, the
  device tree, the UART); :meth:`Board.plan` turns it and an image into a
  :class:`MemoryPlan`, refusing images that do not fit.
* :class:`Pl011` is enough of Arm's PL011 UART for boot code to print: the
  data register transmits at once and the flag register always says "room
  to send".
* :class:`Semihosting` answers Arm semihosting calls (``HLT #0xF000``), so
  test programs print and exit with a status.
* :class:`Firmware` stands for what sits above the boot code when there is no
  firmware: SMCs and unanswered HVCs get PSCI's NOT_SUPPORTED; HVCs and SVCs
  that the architecture routes to the guest's own vectors are delivered there.

Everything a device prints goes to the machine's :class:`Console`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from unicorn import UcError
from unicorn import arm64_const as a64

from emu.arch.exceptions import ESR_IL, TakenException, vector_offset
from emu.arch.mmu.walk import Access, Translation
from emu.board.fdt import BoardFacts, FdtError, board_facts, boot_tree, decode, encode
from emu.image.boot_image import BootImage, ImageError

if TYPE_CHECKING:
    from emu.machine.machine import Machine

MIB = 1 << 20
TWO_MIB = 2 * MIB
# QEMU's virt board: RAM at 1 GiB, its PL011 at 0x0900_0000.
VIRT_RAM = (0x4000_0000, 128 * MIB)
PL011_BASE = 0x0900_0000
PL011_SIZE = 0x1000
# The boot protocol caps the device tree at 2 MiB; it gets the top 2 MiB of RAM.
DTB_RESERVE = TWO_MIB

# Unicorn's interrupt numbers (QEMU's EXCP_*) for the calls handled here.
INTNO_UDEF = 1
INTNO_SVC = 2
INTNO_HVC = 11
INTNO_SMC = 13

PSCI_NOT_SUPPORTED = (1 << 64) - 1  # -1 in x0: SMCCC and PSCI's NOT_SUPPORTED
EC_SVC64, EC_HVC64, EC_SMC64 = 0x15, 0x16, 0x17
HCR_TSC = 1 << 19  # SMC from EL1 traps to EL2

# A64 HLT #0xF000: the semihosting trap.
SEMIHOSTING_HLT = 0xD4400000 | (0xF000 << 5)


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


# -- console --------------------------------------------------------------------


class Console:
    """Everything the guest printed, in order, from every output device.

    ``listeners`` are called with (device name, bytes) as output arrives, e.g.
    by the command line to echo it to the terminal.
    """

    def __init__(self) -> None:
        # (device, bytes) runs in order; a UART prints a byte at a time, so
        # the last run grows in place.
        self.chunks: list[tuple[str, bytearray]] = []
        self.listeners: list[Callable[[str, bytes], None]] = []

    def write(self, device: str, data: bytes) -> None:
        if not data:
            return
        if self.chunks and self.chunks[-1][0] == device:
            self.chunks[-1][1].extend(data)
        else:
            self.chunks.append((device, bytearray(data)))
        for listener in self.listeners:
            listener(device, data)

    def output(self, device: str | None = None) -> bytes:
        """The bytes printed (by one device, or all of them)."""
        return b"".join(data for name, data in self.chunks if device in (None, name))

    def text(self, device: str | None = None) -> str:
        return self.output(device).decode(errors="replace")


# -- PL011 UART --------------------------------------------------------------------

UARTDR, UARTRSR, UARTFR, UARTILPR = 0x00, 0x04, 0x18, 0x20
UARTIBRD, UARTFBRD, UARTLCR_H, UARTCR = 0x24, 0x28, 0x2C, 0x30
UARTIFLS, UARTIMSC, UARTRIS, UARTMIS, UARTICR, UARTDMACR = 0x34, 0x38, 0x3C, 0x40, 0x44, 0x48
FR_TXFE, FR_RXFE = 1 << 7, 1 << 4
# Peripheral and PrimeCell identification registers, as a real PL011 r1p5 reads.
_PL011_ID = {0xFE0: 0x11, 0xFE4: 0x10, 0xFE8: 0x34, 0xFEC: 0x00,
             0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}


class Pl011:
    """The programmer's view of a PL011 at ``base``, as memory-mapped I/O.

    A byte written to UARTDR is printed at once.  UARTFR reads "transmit FIFO
    empty, receive FIFO empty, not busy", so polling loops proceed; there is
    never input.  Control registers keep what is written; interrupts never
    assert.
    """

    name = "uart"

    def __init__(self, base: int, console: Console) -> None:
        self.base = base
        self.console = console
        self.registers: dict[int, int] = {UARTCR: 0x300, UARTIFLS: 0x12}

    def attach(self, machine: Machine) -> None:
        try:
            machine.uc.mmio_map(self.base, PL011_SIZE, self._read, None, self._write, None)
        except UcError as err:
            raise ImageError(f"cannot map the UART at {self.base:#x}: {err}") from None

    def _read(self, _uc, offset: int, _size: int, _user_data) -> int:
        if offset == UARTFR:
            return FR_TXFE | FR_RXFE
        if offset in (UARTDR, UARTRSR, UARTRIS, UARTMIS):
            return 0
        if offset in _PL011_ID:
            return _PL011_ID[offset]
        return self.registers.get(offset, 0)

    def _write(self, _uc, offset: int, _size: int, value: int, _user_data) -> None:
        if offset == UARTDR:
            self.console.write(self.name, bytes([value & 0xFF]))
        elif offset not in (UARTFR, UARTRIS, UARTMIS, UARTICR):
            self.registers[offset] = value


# -- guest memory -------------------------------------------------------------------


def read_guest(machine: Machine, va: int, size: int) -> bytes | None:
    """``size`` bytes at a virtual address as the CPU would read them now, or None
    if part of the range does not translate (or is not RAM)."""
    out = bytearray()
    while size > 0:
        result = machine.mmu.translate(va, Access.READ)
        if not isinstance(result, Translation):
            return None
        chunk = min(size, 0x1000 - (va & 0xFFF))
        try:
            out += machine.uc.mem_read(result.pa, chunk)
        except UcError:
            return None
        va, size = va + chunk, size - chunk
    return bytes(out)


def read_guest_string(machine: Machine, va: int, limit: int = 1 << 16) -> bytes | None:
    """A NUL-terminated string at a virtual address (at most ``limit`` bytes)."""
    out = bytearray()
    while len(out) < limit:
        chunk = read_guest(machine, va, 0x100 - (va & 0xFF))
        if chunk is None:
            return None
        nul = chunk.find(b"\0")
        if nul >= 0:
            return bytes(out + chunk[:nul])
        out += chunk
        va += len(chunk)
    return bytes(out)


def _to_signed(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value


# -- semihosting -------------------------------------------------------------------

SYS_OPEN, SYS_CLOSE, SYS_WRITEC, SYS_WRITE0, SYS_WRITE = 0x01, 0x02, 0x03, 0x04, 0x05
SYS_ISTTY, SYS_ERRNO, SYS_EXIT, SYS_EXIT_EXTENDED = 0x09, 0x13, 0x18, 0x20
ADP_STOPPED_APPLICATION_EXIT = 0x20026
STDOUT, STDERR = 1, 2
_OPERATION_NAMES = {SYS_OPEN: "SYS_OPEN", SYS_CLOSE: "SYS_CLOSE", SYS_WRITEC: "SYS_WRITEC",
                    SYS_WRITE0: "SYS_WRITE0", SYS_WRITE: "SYS_WRITE", SYS_ISTTY: "SYS_ISTTY",
                    SYS_ERRNO: "SYS_ERRNO", SYS_EXIT: "SYS_EXIT",
                    SYS_EXIT_EXTENDED: "SYS_EXIT_EXTENDED"}


@dataclass
class SemihostingCall:
    """One semihosting call: where, which operation, what it returned."""

    index: int
    pc: int
    operation: int
    result: int | None

    @property
    def name(self) -> str:
        return _OPERATION_NAMES.get(self.operation, f"operation {self.operation:#x}")


@dataclass
class Semihosting:
    """Arm semihosting through ``HLT #0xF000`` (A64): console output and exit.

    W0 holds the operation, X1 its argument or the address of its parameter
    block; the result goes to X0.  Supported: SYS_WRITEC, SYS_WRITE0,
    SYS_WRITE (to handles 1 and 2, the console), SYS_OPEN of ``:tt`` (the
    console), SYS_CLOSE, SYS_ISTTY, SYS_ERRNO, SYS_EXIT and SYS_EXIT_EXTENDED.
    Any other operation returns -1.  Unicorn does not implement semihosting:
    HLT arrives as an undefined-instruction exception with PC at the HLT.
    """

    console: Console
    calls: list[SemihostingCall] = field(default_factory=list)
    exit_status: int | None = None
    name = "semihosting"

    def __call__(self, machine: Machine, intno: int) -> bool:
        if intno != INTNO_UDEF:
            return False
        pc = machine.pc
        pa = machine.mmu.fetch_pa(pc)
        if pa is None:
            return False
        try:
            word = int.from_bytes(machine.uc.mem_read(pa, 4), "little")
        except UcError:
            return False
        if word != SEMIHOSTING_HLT:
            return False
        operation = machine.reg("x0") & 0xFFFFFFFF
        argument = machine.reg("x1")
        index = machine.index_at(pc)
        if operation in (SYS_EXIT, SYS_EXIT_EXTENDED):
            self._exit(machine, operation, argument, pc, index)
            return True
        result = self._call(machine, operation, argument)
        self.calls.append(SemihostingCall(index, pc, operation, result))
        machine.uc.reg_write(a64.UC_ARM64_REG_X0, result & ((1 << 64) - 1))
        machine.uc.reg_write(a64.UC_ARM64_REG_PC, pc + 4)  # the call is done: resume after it
        return True

    def _call(self, machine: Machine, operation: int, argument: int) -> int:
        if operation == SYS_WRITEC:
            data = read_guest(machine, argument, 1)
            if data is None:
                return -1
            self.console.write(self.name, data)
            return 0
        if operation == SYS_WRITE0:
            text = read_guest_string(machine, argument)
            if text is None:
                return -1
            self.console.write(self.name, text)
            return 0
        block = read_guest(machine, argument, 24)
        words = [int.from_bytes(block[i:i + 8], "little") for i in range(0, len(block), 8)] \
            if block is not None else []
        if operation == SYS_WRITE and words:
            handle, address, length = words
            if handle not in (STDOUT, STDERR):
                return length  # nothing written
            data = read_guest(machine, address, length)
            if data is None:
                return length
            self.console.write(self.name, data)
            return 0
        if operation == SYS_OPEN and words:
            name = read_guest_string(machine, words[0], limit=256)
            if name != b":tt":
                return -1  # there is no host file system
            return STDOUT if words[1] >= 4 else 0  # modes "w..." and "a..." are >= 4
        if operation == SYS_CLOSE:
            return 0
        if operation == SYS_ISTTY and words:
            return 1 if words[0] in (0, STDOUT, STDERR) else 0
        if operation == SYS_ERRNO:
            return 0
        return -1

    def _exit(self, machine: Machine, operation: int, argument: int, pc: int,
              index: int) -> None:
        from emu.machine.machine import Stop, StopKind  # the machine imports this module

        # A64: X1 points at (reason, subcode); the subcode is the status only
        # for a normal application exit, anything else is a failure.
        block = read_guest(machine, argument, 16)
        if block is None:
            reason, status = None, 1
        else:
            reason = int.from_bytes(block[:8], "little")
            subcode = _to_signed(int.from_bytes(block[8:], "little"))
            status = subcode if reason == ADP_STOPPED_APPLICATION_EXIT else 1
        self.exit_status = status
        self.calls.append(SemihostingCall(index, pc, operation, None))
        why = ("application exit" if reason == ADP_STOPPED_APPLICATION_EXIT
               else f"reason {reason:#x}" if reason is not None
               else f"unreadable parameter block at {argument:#x}")
        name = _OPERATION_NAMES[operation]
        machine.request_stop(Stop(
            StopKind.EXIT, pc, index,
            f"the program exited with status {status} ({name}, {why}) at {pc:#x} "
            f"({machine.symbolize(pc, machine.mmu.fetch_pa(pc))})",
            status=status,
        ))


# -- no firmware ---------------------------------------------------------------------


@dataclass
class FirmwareCall:
    """An HVC, SMC or SVC and what became of it."""

    index: int
    pc: int
    el: int
    instruction: str
    function: int
    outcome: str  # "not-supported" or "delivered to ELn"


@dataclass
class Firmware:
    """What answers exception-generating calls when there is no firmware.

    * SMC: there is no EL3, so the call returns PSCI/SMCCC NOT_SUPPORTED (-1)
      in X0 - unless it came from EL1 with HCR_EL2.TSC set, which traps it to
      the guest's EL2.
    * HVC from EL1 when the guest owns EL2 (it was entered there): delivered
      to its EL2 vector.  When the boot was entered at EL1, there is no
      hypervisor and the call returns NOT_SUPPORTED.  HVC at EL2 goes to the
      guest's own EL2 vector.
    * SVC: delivered to the vector of EL1 (of EL2 when executed there).

    A call the architecture sends to a vector the guest never installed
    (VBAR 0) is left unanswered: the run stops there.
    """

    entry_el: int
    calls: list[FirmwareCall] = field(default_factory=list)

    def __call__(self, machine: Machine, intno: int) -> bool:
        if intno not in (INTNO_SVC, INTNO_HVC, INTNO_SMC):
            return False
        # PC is past the instruction: preferred return address for HVC/SVC.
        pc = machine.pc
        el = machine.el
        call_pc = pc - 4
        word = self._word(machine, call_pc)
        imm16 = (word >> 5) & 0xFFFF
        function = machine.reg("x0")
        index = machine.index_at(call_pc) if word else machine.executed
        name = {INTNO_SVC: "SVC", INTNO_HVC: "HVC", INTNO_SMC: "SMC"}[intno]

        def record(outcome: str) -> None:
            self.calls.append(FirmwareCall(index, call_pc, el, name, function, outcome))

        if intno == INTNO_SMC:
            trapped = (el == 1 and self.entry_el == 2
                       and machine.mmu.read_sysreg("HCR_EL2") & HCR_TSC)
            if not trapped:
                machine.uc.reg_write(a64.UC_ARM64_REG_X0, PSCI_NOT_SUPPORTED)
                record("not-supported")
                return True
            return self._deliver(machine, 2, EC_SMC64, imm16, elr=call_pc, record=record)
        if intno == INTNO_HVC:
            if el == 1 and self.entry_el == 1:
                machine.uc.reg_write(a64.UC_ARM64_REG_X0, PSCI_NOT_SUPPORTED)
                record("not-supported")
                return True
            return self._deliver(machine, 2, EC_HVC64, imm16, elr=pc, record=record)
        return self._deliver(machine, max(el, 1), EC_SVC64, imm16, elr=pc, record=record)

    @staticmethod
    def _word(machine: Machine, va: int) -> int:
        pa = machine.mmu.fetch_pa(va)
        if pa is None:
            return 0
        try:
            return int.from_bytes(machine.uc.mem_read(pa, 4), "little")
        except UcError:
            return 0

    @staticmethod
    def _deliver(machine: Machine, to_el: int, ec: int, imm16: int, *, elr: int,
                 record: Callable[[str], None]) -> bool:
        vbar = machine.mmu.read_sysreg(f"VBAR_EL{to_el}")
        if vbar == 0:
            return False  # no vector installed: the machine reports the exception
        from_el = machine.el
        pstate = machine.reg("pstate")
        taken = TakenException(
            description={EC_SVC64: "SVC", EC_HVC64: "HVC", EC_SMC64: "SMC"}[ec],
            from_el=from_el, to_el=to_el, esr=(ec << 26) | ESR_IL | imm16, far=None,
            elr=elr, spsr=pstate, vector=vbar + vector_offset(from_el, to_el, pstate))
        # The guest asked for this exception: it is delivered, not reported.
        machine.take_exception(taken)
        record(f"delivered to EL{to_el}")
        return True


@dataclass
class Devices:
    """The devices attached to one machine."""

    uart: Pl011 | None
    semihosting: Semihosting
    firmware: Firmware


def attach_devices(machine: Machine, plan: MemoryPlan, entry_el: int) -> Devices:
    """Map the UART and install the semihosting and firmware handlers."""
    uart = None
    if plan.uart_base is not None:
        uart = Pl011(plan.uart_base, machine.console)
        uart.attach(machine)
    semihosting = Semihosting(machine.console)
    firmware = Firmware(entry_el)
    machine.interrupt_handlers.extend([semihosting, firmware])
    return Devices(uart, semihosting, firmware)
