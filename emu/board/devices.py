"""The devices boot code talks to before and just after its C entry, attached
to one guest.

* :class:`~emu.board.pl011.Pl011` is enough of Arm's PL011 UART for boot code
  to print.
* :class:`~emu.board.semihosting.Semihosting` answers Arm semihosting calls
  (``HLT #0xF000``), so test programs print and exit with a status.
* :class:`~emu.board.firmware.Firmware` stands for what sits above the boot
  code when there is no firmware: SMCs and unanswered HVCs get PSCI's
  NOT_SUPPORTED; HVCs and SVCs that the architecture routes to the guest's
  own vectors are delivered there.

Everything a device prints goes to the guest's :class:`~emu.board.console.Console`.
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.board.board import MemoryPlan
from emu.board.console import Console
from emu.board.firmware import Firmware
from emu.board.guest import Guest
from emu.board.pl011 import Pl011
from emu.board.semihosting import Semihosting


@dataclass
class Devices:
    """The devices attached to one machine."""

    uart: Pl011 | None
    semihosting: Semihosting
    firmware: Firmware


def attach_devices(guest: Guest, plan: MemoryPlan, entry_el: int, console: Console) -> Devices:
    """Map the UART and install the semihosting and firmware handlers."""
    uart = None
    if plan.uart_base is not None:
        uart = Pl011(plan.uart_base, console)
        uart.attach(guest)
    semihosting = Semihosting(console)
    firmware = Firmware(entry_el)
    guest.interrupt_handlers.extend([semihosting, firmware])
    return Devices(uart, semihosting, firmware)
