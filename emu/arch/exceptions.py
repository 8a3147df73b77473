"""Synchronous exceptions as the architecture takes them: syndrome, vector, state.

Unicorn in ``UC_TLB_VIRTUAL`` mode cannot raise an abort itself: when the
Python walker refuses a fill, emulation just stops.  This module computes what
hardware would do instead - the ESR syndrome (EC, IL, ISS with IFSC/DFSC and
WnR), the vector address, the saved state - and the machine applies it.
"""

from __future__ import annotations

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
    """What taking one synchronous exception wrote, and where it went."""

    description: str
    from_el: int
    to_el: int
    esr: int
    far: int | None
    elr: int
    spsr: int
    vector: int

    def describe(self) -> str:
        far = f", FAR {self.far:#x}" if self.far is not None else ""
        return (f"{self.description}: EL{self.from_el} -> EL{self.to_el}, ESR {self.esr:#x}"
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
