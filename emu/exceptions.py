"""Synchronous exceptions as the architecture takes them: syndrome, vector, state.

Unicorn in ``UC_TLB_VIRTUAL`` mode cannot raise an abort itself: when the
Python walker refuses a fill, emulation just stops.  This module computes what
hardware would do instead - the ESR syndrome (EC, IL, ISS with IFSC/DFSC and
WnR), the vector address, the saved state - and the machine applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from capstone import arm64_const as cs64
from unicorn import Uc
from unicorn import arm64_const as uc64

from emu.mmu.walk import Access, Fault

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


@cache
def _decoder() -> Cs:
    cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
    cs.detail = True
    return cs


def _register_value(uc: Uc, reg_name: str) -> int | None:
    """A general register's value by capstone's name (x0..x30, w0..w30, sp, wzr, xzr)."""
    name = reg_name.lower()
    if name in ("xzr", "wzr"):
        return 0
    if name in ("sp", "wsp"):
        return uc.reg_read(uc64.UC_ARM64_REG_SP)
    if name[0] in "xw" and name[1:].isdigit():
        value = uc.reg_read(getattr(uc64, f"UC_ARM64_REG_X{int(name[1:])}"))
        return value & 0xFFFF_FFFF if name[0] == "w" else value
    return None


def memory_operand_address(word: bytes, pc: int, uc: Uc) -> int | None:
    """The address a load or store accesses (base + index << shift + offset),
    from the registers as they are before it executes; None for forms not
    worked out here (extended index registers, literal loads)."""
    insn = next(_decoder().disasm(bytes(word), pc), None)
    if insn is None:
        return None
    for operand in insn.operands:
        if operand.type != cs64.ARM64_OP_MEM:
            continue
        base = _register_value(uc, insn.reg_name(operand.mem.base)) if operand.mem.base else 0
        if base is None:
            return None
        address = base + operand.mem.disp
        if operand.mem.index:
            if operand.ext not in (0, cs64.ARM64_EXT_UXTX, cs64.ARM64_EXT_SXTX):
                return None
            index = _register_value(uc, insn.reg_name(operand.mem.index))
            if index is None:
                return None
            shift = operand.shift.value if operand.shift.type == cs64.ARM64_SFT_LSL else 0
            address += index << shift
        return address & 0xFFFF_FFFF_FFFF_FFFF
    return None
