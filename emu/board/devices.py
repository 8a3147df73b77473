"""The devices boot code talks to before and just after its C entry, attached
to one guest.

* :class:`~emu.board.pl011.Pl011` is enough of Arm's PL011 UART for boot code
  to print.
* :class:`~emu.board.semihosting.Semihosting` answers Arm semihosting calls
  (``HLT #0xF000``), so test programs print and exit with a status.
* :class:`~emu.board.firmware.Firmware` stands for what sits above the boot
  code when there is no firmware: SMCs (and HVCs when the guest does not own
  EL2) are PSCI calls; HVCs and SVCs that the architecture routes to the
  guest's own vectors are delivered there.
* :class:`~emu.board.timer.GenericTimer` is the CPU's generic timer, on
  virtual time; :class:`~emu.board.gic.Gic` the GICv2 its interrupts go
  through; :class:`~emu.board.cpu.IdRegisters` the ID registers as the board
  shows them.  The timer and the ID registers are *system-register devices*:
  the machine sends them the MRS and MSR of their registers.

Everything a device prints goes to the guest's :class:`~emu.board.console.Console`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from emu.board.board import MemoryPlan
from emu.board.console import Console
from emu.board.cpu import IdRegisters
from emu.board.firmware import Firmware
from emu.board.gic import Gic
from emu.board.guest import Guest
from emu.board.pl011 import Pl011
from emu.board.semihosting import Semihosting
from emu.board.timer import GenericTimer


class SysregDevice(Protocol):
    """A device whose registers are system registers (MRS/MSR), not MMIO."""

    def handles(self, name: str) -> bool:
        """Whether the register called ``name`` is this device's."""

    def read(self, name: str) -> int:
        """The value an MRS of ``name`` reads."""

    def write(self, name: str, value: int) -> None:
        """An MSR of ``value`` to ``name``."""


@dataclass
class Devices:
    """The devices attached to one machine."""

    uart: Pl011 | None
    semihosting: Semihosting
    firmware: Firmware
    timer: GenericTimer
    gic: Gic | None
    id_registers: IdRegisters

    @property
    def sysreg_devices(self) -> tuple[SysregDevice, ...]:
        """The devices answering system registers, in the order they are asked."""
        return (self.timer, self.id_registers)


def attach_devices(guest: Guest, plan: MemoryPlan, entry_el: int, console: Console,
                   read_model_sysreg: Callable[[str], int]) -> Devices:
    """Map the UART and the GIC, and install the semihosting and firmware
    handlers, the timer and the ID registers (``read_model_sysreg`` reads a
    register as the CPU model has it)."""
    uart = None
    if plan.uart_base is not None:
        uart = Pl011(plan.uart_base, console)
        uart.attach(guest)
    gic = None
    if plan.gic:
        gic = Gic()
        gic.attach(guest)
    semihosting = Semihosting(console)
    firmware = Firmware(entry_el)
    guest.interrupt_handlers.extend([semihosting, firmware])
    timer = GenericTimer(lambda: guest.executed)
    return Devices(uart, semihosting, firmware, timer, gic, IdRegisters(read_model_sysreg))
