"""Interrupts: from the generic timer through the GIC to the guest's IRQ vector,
and what WFI does while none is due.

Unicorn has no interrupt controller and never enters an exception itself, so
the machine does both (DDI 0487 D1.3 "Exception entry"), between blocks: the
run loop stops at the next *deadline* - when a timer falls due, or soon
again while an interrupt is pending but masked - and asks :meth:`poll`.
Nothing is called per instruction.

Routing and masking of a physical IRQ (DDI 0487 D1.3.6, "Asynchronous
exception routing", and D1.19.2 "Asynchronous exception masking"; no Secure
state): it is taken to EL2 when HCR_EL2.IMO or HCR_EL2.TGE is set, otherwise
to EL1.  Taken to a higher EL than the current one, it is not masked by
PSTATE.I; taken to the current EL, it is.  An IRQ that targets EL1 while the
CPU is at EL2 is not taken: it waits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.arch.exceptions import TakenException, vector_offset
from emu.board.gic import Gic
from emu.board.guest import instruction_at
from emu.board.timer import GenericTimer

if TYPE_CHECKING:
    from emu.machine.machine import Machine

HCR_IMO = 1 << 4
HCR_TGE = 1 << 27
PSTATE_I = 1 << 7
IRQ_VECTOR = 0x80  # the IRQ entry is 0x80 past the synchronous one (D1.10.2)
# While an interrupt is pending but masked, look again this often (instructions):
# unmasking (MSR DAIFClr, ERET) has no hook, and an interrupt may be late by this.
MASKED_POLL_INTERVAL = 10_000
WFI = 0xD503207F


class InterruptDelivery:
    """Drives the timer's outputs into the GIC and the GIC's IRQ line into the CPU."""

    def __init__(self, machine: Machine, timer: GenericTimer, gic: Gic | None) -> None:
        self._machine = machine
        self._timer = timer
        self._gic = gic
        self.taken = 0  # IRQs delivered so far
        self._last_idle_index: int | None = None
        self.idle_reason = ""  # why, when after_wfi says nothing can wake the CPU

    def _sync(self) -> bool:
        """Update the GIC's inputs from the timer; whether the CPU's IRQ line is high."""
        gic = self._gic
        if gic is None:
            return False
        for ppi, level in self._timer.levels().items():
            gic.set_level(ppi, level)
        return gic.irq_line()

    def _target(self) -> int | None:
        """The EL a pending IRQ would be taken to now, or None while it must wait."""
        machine = self._machine
        el = machine.el
        to_el = 2 if machine.read_sysreg("HCR_EL2") & (HCR_IMO | HCR_TGE) else 1
        if to_el < el:
            return None
        if to_el == el and machine.reg("pstate") & PSTATE_I:
            return None
        if machine.read_sysreg(f"VBAR_EL{to_el}") == 0:
            return None  # no vector table yet: the interrupt stays pending
        return to_el

    def poll(self) -> bool:
        """Take a pending IRQ if the CPU can take it now; whether it did."""
        if not self._sync():
            return False
        to_el = self._target()
        if to_el is None:
            return False
        machine = self._machine
        pstate = machine.reg("pstate")
        from_el = machine.el
        vector = (machine.read_sysreg(f"VBAR_EL{to_el}")
                  + vector_offset(from_el, to_el, pstate) + IRQ_VECTOR)
        # The preferred return address of an asynchronous exception is the
        # instruction not yet executed: the PC the run stopped at.
        machine.take_exception(TakenException(
            description="IRQ", from_el=from_el, to_el=to_el, esr=None, far=None,
            elr=machine.pc, spsr=pstate, vector=vector))
        self.taken += 1
        return True

    def deadline(self) -> int | None:
        """The instruction count at which the run loop should stop to poll again."""
        machine = self._machine
        now = machine.executed
        if self._sync():
            return now + MASKED_POLL_INTERVAL
        due = self._timer.next_deadline_ns()
        if due is None:
            return None
        start = due - self._timer.idle_ns
        if start <= now:
            # It fell due and its interrupt still does not reach the CPU (the
            # GIC does not forward it yet): stopping for it at once would stop
            # again and again with no instruction run.  Poll now and then, as
            # for a masked interrupt, so that the guest can route it first.
            return now + MASKED_POLL_INTERVAL
        return start

    def after_wfi(self) -> bool | None:
        """Called when emulation returned at ``pc`` with the previous instruction a
        WFI: let virtual time run to the next timer interrupt.

        True: the CPU woke (an interrupt is pending, or a timer fell due);
        False: nothing can ever wake it; None: this stop was not a WFI.
        """
        machine = self._machine
        index = machine.executed
        if index == self._last_idle_index or instruction_at(machine, machine.pc - 4) != WFI:
            return None
        self._last_idle_index = index
        if self._sync():
            # WFI wakes on a pending interrupt even when it is masked.  In the
            # idle loop `1: wfi; b 1b` that changes nothing: the loop touches
            # no memory and no register, so the interrupt stays masked and
            # pending and each pass wakes at once, forever.
            if self._target() is None and _branches_to(machine, machine.pc, machine.pc - 4):
                self.idle_reason = ("an interrupt is pending but cannot be taken (masked, "
                                    "or no vector table yet), so it wakes the WFI at once, "
                                    "and the loop back to it changes nothing")
                return False
            return True
        due = self._timer.next_deadline_ns()
        if due is None or due <= self._timer.now_ns():
            # No timer will fire (one that has cannot reach the CPU).
            self.idle_reason = "no timer is armed and none is pending"
            return False
        self._timer.skip_to(due)
        return True


def _branches_to(machine: Machine, pc: int, target: int) -> bool:
    """Whether the instruction at ``pc`` is ``B target`` (DDI 0487 C6.2 "B":
    0b000101 then a signed 26-bit word offset)."""
    word = instruction_at(machine, pc)
    if word is None or word >> 26 != 0b000101:
        return False
    offset = (word & 0x3FF_FFFF) << 2
    if offset & (1 << 27):
        offset -= 1 << 28
    return (pc + offset) & 0xFFFF_FFFF_FFFF_FFFF == target
