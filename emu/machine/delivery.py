"""Exception delivery: what the hardware does on a synchronous exception, done
for Unicorn, which never performs exception entry itself.

A walk fault met while Unicorn filled its TLB becomes an instruction or data
abort taken to the guest's vector (ESR, FAR, ELR, SPSR, PC = VBAR + offset),
unless there is no usable vector - then the run stops and says why.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from unicorn import arm64_const as a64

from emu.arch.exceptions import (
    TakenException,
    abort_syndrome,
    entry_pstate,
    target_el,
    vector_offset,
)
from emu.arch.mmu.regime import regime_for_el
from emu.arch.mmu.walk import Access, Fault, format_walk
from emu.machine.events import ExceptionTaken
from emu.machine.mmu import SOFTMMU_PAGE, FillFault, cp_reg
from emu.machine.operands import memory_operand_address
from emu.machine.stop import Stop, StopKind

if TYPE_CHECKING:
    from emu.machine.machine import Machine


class ExceptionDelivery:
    """Takes exceptions to one machine's guest vectors."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        # The last vector an abort was taken to, and when: a vector that
        # faults again before any instruction ran would loop forever.
        self._last_vector: tuple[int, int] | None = None

    def take_abort(self, fill: FillFault) -> Stop | None:
        """Deliver a walk fault to the guest as hardware would, or say why it cannot be.

        Returns None when the abort was taken (the run goes on at the vector),
        else the Stop that reports it.
        """
        machine = self._machine
        uc = machine.uc
        pc, index = machine.pc, machine.index_now()
        fault = replace(fill.fault, va=self._faulting_address(fill.fault, pc))
        from_el = fill.el
        to_el = target_el(fill.regime.name.value, from_el)
        what = "instruction abort" if fault.access is Access.FETCH else "data abort"
        cause = (f"{what}: {fault.describe()} for {fault.access.value} of VA {fault.va:#x} "
                 f"in the {fill.regime.name.value} regime")
        vbar = machine.mmu.read_sysreg(f"VBAR_EL{to_el}")
        pstate = uc.reg_read(a64.UC_ARM64_REG_PSTATE)
        vector = vbar + vector_offset(from_el, to_el, pstate)
        target_regime = machine.mmu.regime(regime_for_el(to_el))
        if vbar == 0:
            reason = f"VBAR_EL{to_el} is 0: no exception vector installed"
        elif isinstance(machine.mmu.translate(vector, Access.FETCH, target_regime), Fault):
            reason = f"the vector at {vector:#x} is not mapped for instruction fetch"
        elif self._last_vector == (vector, index):
            reason = f"the vector at {vector:#x} faulted again before any instruction ran"
        else:
            reason = None
        if reason is not None:
            machine.emit(ExceptionTaken(index, pc, machine.mmu.fetch_pa(pc), from_el, cause,
                                        None, fault))
            message = (f"{what} at {pc:#x} ({machine.symbolize(pc)}): "
                       f"{cause[len(what) + 2:]}; {reason}")
            return Stop(StopKind.EXCEPTION, pc, index, message, tuple(format_walk(fault)))
        taken = TakenException(
            description=what,
            from_el=from_el,
            to_el=to_el,
            esr=abort_syndrome(fault, same_el=from_el == to_el),
            far=fault.va,
            elr=pc,
            spsr=pstate,
            vector=vector,
        )
        self.take_exception(taken)
        self._last_vector = (vector, index)
        machine.emit(ExceptionTaken(index, pc, machine.mmu.fetch_pa(pc, fill.regime), from_el,
                                    cause, taken, fault))
        return None

    def _faulting_address(self, fault: Fault, pc: int) -> int:
        """The exact VA an abort is about, for FAR.

        Unicorn hands the fill hook only the 1 KiB page of the access.  A fetch
        faults at the PC itself; for a load or store the address is worked out
        from the instruction's memory operand, and kept only if it lies in that
        page (otherwise the page address is the best there is).
        """
        machine = self._machine
        page = fault.va & ~(SOFTMMU_PAGE - 1)
        if fault.access is Access.FETCH:
            return pc if pc & ~(SOFTMMU_PAGE - 1) == page else fault.va
        pa = machine.mmu.fetch_pa(pc)
        if pa is None:
            return fault.va
        word = machine.uc.mem_read(pa, 4)
        address = memory_operand_address(word, pc, machine.uc)
        if address is not None and address & ~(SOFTMMU_PAGE - 1) == page:
            return address
        return fault.va

    def take_exception(self, taken: TakenException) -> None:
        """Write the registers an exception entry writes, then jump to the vector."""
        uc = self._machine.uc
        el = taken.to_el
        uc.reg_write(getattr(a64, f"UC_ARM64_REG_ELR_EL{el}"), taken.elr)
        if taken.esr is not None:  # interrupts leave the syndrome registers alone
            uc.reg_write(getattr(a64, f"UC_ARM64_REG_FAR_EL{el}"), taken.far or 0)
        uc.reg_write(a64.UC_ARM64_REG_CP_REG, cp_reg(f"SPSR_EL{el}") + (taken.spsr,))
        if taken.from_el != el:
            # The stack pointer is banked per EL: save the interrupted one, load the target's.
            banked = taken.from_el if taken.spsr & 1 else 0
            uc.reg_write(getattr(a64, f"UC_ARM64_REG_SP_EL{banked}"),
                         uc.reg_read(a64.UC_ARM64_REG_SP))
            target_sp = uc.reg_read(getattr(a64, f"UC_ARM64_REG_SP_EL{el}"))
        uc.reg_write(a64.UC_ARM64_REG_PSTATE, entry_pstate(el))
        # Writing a CP register rebuilds Unicorn's cached CPU flags after PSTATE
        # (for an interrupt, SPSR again: it has no syndrome to write).
        if taken.esr is not None:
            uc.reg_write(a64.UC_ARM64_REG_CP_REG, cp_reg(f"ESR_EL{el}") + (taken.esr,))
        else:
            uc.reg_write(a64.UC_ARM64_REG_CP_REG, cp_reg(f"SPSR_EL{el}") + (taken.spsr,))
        if taken.from_el != el:
            uc.reg_write(a64.UC_ARM64_REG_SP, target_sp)
        uc.reg_write(a64.UC_ARM64_REG_PC, taken.vector)
        if taken.from_el != el:
            # The translation regime follows the EL; taken to the same EL
            # (an IRQ in an EL2 idle loop) it stays, and so do the TLB's
            # entries: the model has no PSTATE.PAN to change their permissions.
            self._machine.schedule_flush()
