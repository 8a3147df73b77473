"""What answers exception-generating calls (HVC, SMC, SVC) when there is no
firmware: PSCI's NOT_SUPPORTED, or delivery to the guest's own vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from emu.arch.exceptions import ESR_IL, TakenException, vector_offset
from emu.board.guest import INTNO_HVC, INTNO_SMC, INTNO_SVC, Guest, instruction_at

PSCI_NOT_SUPPORTED = (1 << 64) - 1  # -1 in x0: SMCCC and PSCI's NOT_SUPPORTED
EC_SVC64, EC_HVC64, EC_SMC64 = 0x15, 0x16, 0x17
HCR_TSC = 1 << 19  # SMC from EL1 traps to EL2


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

    def __call__(self, guest: Guest, intno: int) -> bool:
        if intno not in (INTNO_SVC, INTNO_HVC, INTNO_SMC):
            return False
        # PC is past the instruction: preferred return address for HVC/SVC.
        pc = guest.pc
        el = guest.el
        call_pc = pc - 4
        word = instruction_at(guest, call_pc) or 0
        imm16 = (word >> 5) & 0xFFFF
        function = guest.reg("x0")
        index = guest.index_at(call_pc) if word else guest.executed
        name = {INTNO_SVC: "SVC", INTNO_HVC: "HVC", INTNO_SMC: "SMC"}[intno]

        def record(outcome: str) -> None:
            self.calls.append(FirmwareCall(index, call_pc, el, name, function, outcome))

        if intno == INTNO_SMC:
            trapped = (el == 1 and self.entry_el == 2
                       and guest.read_sysreg("HCR_EL2") & HCR_TSC)
            if not trapped:
                guest.write_reg("x0", PSCI_NOT_SUPPORTED)
                record("not-supported")
                return True
            return self._deliver(guest, 2, EC_SMC64, imm16, elr=call_pc, record=record)
        if intno == INTNO_HVC:
            if el == 1 and self.entry_el == 1:
                guest.write_reg("x0", PSCI_NOT_SUPPORTED)
                record("not-supported")
                return True
            return self._deliver(guest, 2, EC_HVC64, imm16, elr=pc, record=record)
        return self._deliver(guest, max(el, 1), EC_SVC64, imm16, elr=pc, record=record)

    @staticmethod
    def _deliver(guest: Guest, to_el: int, ec: int, imm16: int, *, elr: int,
                 record: Callable[[str], None]) -> bool:
        vbar = guest.read_sysreg(f"VBAR_EL{to_el}")
        if vbar == 0:
            return False  # no vector installed: the machine reports the exception
        from_el = guest.el
        pstate = guest.reg("pstate")
        taken = TakenException(
            description={EC_SVC64: "SVC", EC_HVC64: "HVC", EC_SMC64: "SMC"}[ec],
            from_el=from_el, to_el=to_el, esr=(ec << 26) | ESR_IL | imm16, far=None,
            elr=elr, spsr=pstate, vector=vbar + vector_offset(from_el, to_el, pstate))
        # The guest asked for this exception: it is delivered, not reported.
        guest.take_exception(taken)
        record(f"delivered to EL{to_el}")
        return True
