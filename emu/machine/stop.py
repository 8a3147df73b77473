"""Why a run ended: every call to :meth:`~emu.machine.machine.Machine.run`
returns a :class:`Stop`."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StopKind(enum.StrEnum):
    """Why a run ended."""

    ARRIVED = "arrived"          # PC reached one of the requested addresses
    BUDGET = "budget"            # the instruction budget ran out
    EXCEPTION = "exception"      # a fault or exception the run cannot continue past
    UNMAPPED = "unmapped"        # an access to physical memory that does not exist
    EXIT = "exit"                # the program exited (semihosting), with a status
    POWER_OFF = "power-off"      # the guest asked the firmware to power off (PSCI SYSTEM_OFF)
    RESET = "reset"              # the guest asked the firmware to reset (PSCI SYSTEM_RESET)
    IDLE = "idle"                # the guest waits (WFI) for an interrupt that cannot come
    STEPPED = "stepped"          # Machine.step executed the instructions it was asked to
    WATCHPOINT = "watchpoint"    # an access hit a watchpoint (stopped before it)
    INTERRUPTED = "interrupted"  # Machine.interrupt was called (a debugger's Ctrl-C)


@dataclass(frozen=True)
class Stop:
    """The end of a run: where, after how many instructions, and why, in words."""

    kind: StopKind
    pc: int
    index: int
    message: str
    detail: tuple[str, ...] = ()
    status: int | None = None    # the program's exit status, for StopKind.EXIT
