"""What answers exception-generating calls (HVC, SMC, SVC) when there is no
firmware: PSCI, as QEMU's virt board answers it, or delivery to the guest's
own vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from emu.arch.exceptions import ESR_IL, TakenException, vector_offset
from emu.board.guest import INTNO_HVC, INTNO_SMC, INTNO_SVC, Guest, instruction_at

PSCI_NOT_SUPPORTED = (1 << 64) - 1  # -1 in x0: SMCCC and PSCI's NOT_SUPPORTED
PSCI_INVALID_PARAMETERS = (1 << 64) - 2
PSCI_ALREADY_ON = (1 << 64) - 4
PSCI_SUCCESS = 0

# PSCI function IDs (Arm DEN 0022, "Power State Coordination Interface"); the
# SMC64 forms are the SMC32 ones with bit 30 set.
PSCI_VERSION = 0x8400_0000
PSCI_CPU_SUSPEND = 0x8400_0001
PSCI_CPU_OFF = 0x8400_0002
PSCI_CPU_ON = 0x8400_0003
PSCI_AFFINITY_INFO = 0x8400_0004
PSCI_MIGRATE_INFO_TYPE = 0x8400_0006
PSCI_SYSTEM_OFF = 0x8400_0008
PSCI_SYSTEM_RESET = 0x8400_0009
PSCI_FEATURES = 0x8400_000A
SMC64 = 0x4000_0000
# What QEMU 7.2's PSCI emulation reports (target/arm/psci.c): version 1.1,
# migration not required (2: "Trusted OS not present or does not require
# migration").
PSCI_VERSION_1_1 = 0x0001_0001
MIGRATE_NOT_REQUIRED = 2
_IMPLEMENTED = frozenset({PSCI_VERSION, PSCI_CPU_SUSPEND, PSCI_CPU_OFF, PSCI_CPU_ON,
                          PSCI_AFFINITY_INFO, PSCI_MIGRATE_INFO_TYPE, PSCI_SYSTEM_OFF,
                          PSCI_SYSTEM_RESET, PSCI_FEATURES})
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
    outcome: str  # "psci ...", "not-supported" or "delivered to ELn"


@dataclass
class Firmware:
    """What answers exception-generating calls when there is no firmware.

    * SMC: there is no EL3, so the board answers it as PSCI firmware would
      (:meth:`psci`); other SMCCC functions return NOT_SUPPORTED (-1) in X0 -
      unless the SMC came from EL1 with HCR_EL2.TSC set, which traps it to
      the guest's EL2.
    * HVC from EL1 when the guest owns EL2 (it was entered there): delivered
      to its EL2 vector.  When the boot was entered at EL1, there is no
      hypervisor guest and HVC is the PSCI conduit, as on QEMU's virt board
      without virtualization.  HVC at EL2 goes to the guest's own EL2 vector.
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
                record(self.psci(guest, function, pc))
                return True
            return self._deliver(guest, 2, EC_SMC64, imm16, elr=call_pc, record=record)
        if intno == INTNO_HVC:
            if el == 1 and self.entry_el == 1:
                record(self.psci(guest, function, pc))
                return True
            return self._deliver(guest, 2, EC_HVC64, imm16, elr=pc, record=record)
        return self._deliver(guest, max(el, 1), EC_SVC64, imm16, elr=pc, record=record)

    def psci(self, guest: Guest, function: int, pc: int) -> str:
        """Answer a PSCI call for the machine's one CPU; X0 gets the result.

        CPU_ON is refused (ALREADY_ON for this CPU, INVALID_PARAMETERS for any
        other: there is no second CPU); SYSTEM_OFF, SYSTEM_RESET and CPU_OFF
        of the only CPU end the run.  Returns the outcome, for the record.
        """
        base = function & ~SMC64 & 0xFFFF_FFFF
        target = guest.reg("x1")
        result = PSCI_NOT_SUPPORTED
        if function >> 32 or base not in _IMPLEMENTED:
            guest.write_reg("x0", result)
            return "not-supported"
        if base == PSCI_VERSION:
            result = PSCI_VERSION_1_1
        elif base == PSCI_MIGRATE_INFO_TYPE:
            result = MIGRATE_NOT_REQUIRED
        elif base == PSCI_FEATURES:
            asked = target & 0xFFFF_FFFF
            result = PSCI_SUCCESS if (asked & ~SMC64) in _IMPLEMENTED else PSCI_NOT_SUPPORTED
        elif base == PSCI_CPU_ON:
            result = PSCI_ALREADY_ON if target & 0xFF_00FF_FFFF == 0 else PSCI_INVALID_PARAMETERS
        elif base == PSCI_AFFINITY_INFO:
            result = PSCI_SUCCESS if target & 0xFF_00FF_FFFF == 0 else PSCI_INVALID_PARAMETERS
        elif base == PSCI_CPU_SUSPEND:
            result = PSCI_SUCCESS  # a standby request: returning at once is allowed
        else:
            what, message = {
                PSCI_SYSTEM_OFF: ("power-off", "the guest powered off (PSCI SYSTEM_OFF)"),
                PSCI_SYSTEM_RESET: ("reset", "the guest asked for a reset (PSCI SYSTEM_RESET)"),
                PSCI_CPU_OFF: ("power-off", "the guest turned its only CPU off (PSCI CPU_OFF)"),
            }[base]
            guest.request_power(what, pc - 4, guest.index_at(pc - 4), message)
            return f"psci {what}"
        guest.write_reg("x0", result)
        return f"psci {_PSCI_NAMES[base]}"

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


_PSCI_NAMES = {PSCI_VERSION: "PSCI_VERSION", PSCI_CPU_SUSPEND: "CPU_SUSPEND",
               PSCI_CPU_ON: "CPU_ON", PSCI_AFFINITY_INFO: "AFFINITY_INFO",
               PSCI_MIGRATE_INFO_TYPE: "MIGRATE_INFO_TYPE", PSCI_FEATURES: "PSCI_FEATURES"}
