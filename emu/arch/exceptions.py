"""Synchronous exceptions as the architecture takes them: syndrome, vector, state.

Unicorn in ``UC_TLB_VIRTUAL`` mode cannot raise an abort itself: when the
Python walker refuses a fill, emulation just stops.  This module computes what
hardware would do instead - the ESR syndrome (EC, IL, ISS with IFSC/DFSC and
WnR), the vector address, the saved state - and the machine applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from emu.arch.mmu.walk import Access, Fault

# Exception classes (ESR_ELx.EC) for aborts.
EC_INSTRUCTION_ABORT_LOWER = 0x20
EC_INSTRUCTION_ABORT_SAME = 0x21
EC_DATA_ABORT_LOWER = 0x24
EC_DATA_ABORT_SAME = 0x25

ESR_IL = 1 << 25  # 32-bit instruction
ISS_WNR = 1 << 6  # data abort caused by a write

# Vector table offsets (VBAR_ELx + offset) for synchronous exceptions.
VECTOR_CURRENT_SP0 = 0x000
VECTOR_CURRENT_SPX = 0x200
VECTOR_LOWER_AARCH64 = 0x400

PSTATE_DAIF = 0xF << 6


@dataclass(frozen=True)
class TakenException:
    """What taking one exception wrote, and where it went (``esr`` None: an
    interrupt, which leaves ESR and FAR alone)."""

    description: str
    from_el: int
    to_el: int
    esr: int | None
    far: int | None
    elr: int
    spsr: int
    vector: int

    def describe(self) -> str:
        far = f", FAR {self.far:#x}" if self.far is not None else ""
        esr = f", ESR {self.esr:#x}" if self.esr is not None else ""
        return (f"{self.description}: EL{self.from_el} -> EL{self.to_el}{esr}"
                f"{far}, ELR {self.elr:#x}, vector {self.vector:#x}")


def target_el(regime_name: str, current_el: int) -> int:
    """The EL an abort from a stage-1 walk of this regime is taken to (non-VHE, TGE=0)."""
    return 2 if regime_name == "EL2" else max(1, current_el)


def abort_syndrome(fault: Fault, same_el: bool) -> int:
    """ESR_ELx for an instruction or data abort caused by a stage-1 fault."""
    if fault.access is Access.FETCH:
        ec = EC_INSTRUCTION_ABORT_SAME if same_el else EC_INSTRUCTION_ABORT_LOWER
        iss = fault.status_code
    else:
        ec = EC_DATA_ABORT_SAME if same_el else EC_DATA_ABORT_LOWER
        iss = fault.status_code | (ISS_WNR if fault.access is Access.WRITE else 0)
    return (ec << 26) | ESR_IL | iss


def vector_offset(from_el: int, to_el: int, pstate: int) -> int:
    """Offset of the synchronous vector taken from ``from_el`` into ``to_el``."""
    if from_el < to_el:
        return VECTOR_LOWER_AARCH64
    return VECTOR_CURRENT_SPX if pstate & 1 else VECTOR_CURRENT_SP0


def entry_pstate(to_el: int) -> int:
    """PSTATE on exception entry: the target EL with SP_ELx, D, A, I and F masked."""
    return PSTATE_DAIF | (to_el << 2) | 1


# The syndrome in words, for reports.

EXCEPTION_CLASSES: Mapping[int, str] = {
    0x00: "unknown reason",
    0x01: "WFI/WFE",
    0x07: "SIMD/FP access trapped",
    0x0E: "illegal execution state",
    0x15: "SVC (AArch64)",
    0x16: "HVC (AArch64)",
    0x17: "SMC (AArch64)",
    0x18: "MSR/MRS/system instruction trapped",
    0x20: "instruction abort from a lower EL",
    0x21: "instruction abort from the same EL",
    0x22: "PC alignment fault",
    0x24: "data abort from a lower EL",
    0x25: "data abort from the same EL",
    0x26: "SP alignment fault",
    0x2C: "floating-point exception (AArch64)",
    0x2F: "SError interrupt",
    0x30: "breakpoint from a lower EL",
    0x31: "breakpoint from the same EL",
    0x32: "software step from a lower EL",
    0x33: "software step from the same EL",
    0x34: "watchpoint from a lower EL",
    0x35: "watchpoint from the same EL",
    0x3C: "BRK instruction (AArch64)",
}
"""ESR_ELx.EC → description (the EC field table of ESR_ELx)."""


def fault_status_name(fsc: int) -> str:
    """Describe a DFSC/IFSC value: ``0b000111`` → ``"translation fault, level 3"``."""
    level = fsc & 0b11
    group = fsc >> 2
    leveled = {
        0b0000: "address size fault",
        0b0001: "translation fault",
        0b0010: "access flag fault",
        0b0011: "permission fault",
        0b0101: "synchronous external abort on translation table walk",
    }
    if group in leveled:
        return f"{leveled[group]}, level {level}"
    return {
        0b010000: "synchronous external abort",
        0b100001: "alignment fault",
        0b110000: "TLB conflict abort",
    }.get(fsc, f"fault status 0x{fsc:02x}")


def describe_esr(value: int) -> str:
    """Short string for an ESR_ELx value, with the fault status and WnR for aborts."""
    ec = (value >> 26) & 0x3F
    iss = value & 0x1FF_FFFF
    text = f"EC=0x{ec:02x} {EXCEPTION_CLASSES.get(ec, 'reserved/unhandled class')}"
    if ec in (0x20, 0x21, 0x24, 0x25):
        text += f", {fault_status_name(iss & 0x3F)}"
        if ec in (0x24, 0x25):
            text += f", WnR={(iss >> 6) & 1}"
    elif ec in (0x15, 0x16, 0x17, 0x3C):
        text += f", imm=0x{iss & 0xFFFF:x}"
    return text
