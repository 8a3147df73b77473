"""The address a faulting load or store was about, for FAR.

Unicorn hands the TLB-fill hook only the 1 KiB page of an access; the exact
address is worked out from the instruction's memory operand (decoded with
capstone) and the registers as they are before it executes.
"""

from __future__ import annotations

from functools import cache, lru_cache

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs
from capstone import arm64_const as cs64
from unicorn import Uc
from unicorn import arm64_const as uc64


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


# What the address of a memory operand is made of: the base register's name
# (None: no base), the displacement, and the index register's name (None: no
# index) with its left shift.
_Operand = tuple[str | None, int, str | None, int]


@lru_cache(maxsize=8192)
def _memory_operand(word: bytes) -> _Operand | None:
    """The memory operand of the instruction ``word``, decoded once per encoding
    (boot code and its loops run the same few loads and stores many times);
    None for none, or a form not worked out here."""
    insn = next(_decoder().disasm(word, 0), None)
    if insn is None:
        return None
    for operand in insn.operands:
        if operand.type != cs64.ARM64_OP_MEM:
            continue
        base = insn.reg_name(operand.mem.base) if operand.mem.base else None
        index = None
        shift = 0
        if operand.mem.index:
            if operand.ext not in (0, cs64.ARM64_EXT_UXTX, cs64.ARM64_EXT_SXTX):
                return None
            index = insn.reg_name(operand.mem.index)
            shift = operand.shift.value if operand.shift.type == cs64.ARM64_SFT_LSL else 0
        return base, operand.mem.disp, index, shift
    return None


def memory_operand_address(word: bytes, pc: int, uc: Uc) -> int | None:
    """The address a load or store accesses (base + index << shift + offset),
    from the registers as they are before it executes; None for forms not
    worked out here (extended index registers, literal loads)."""
    operand = _memory_operand(bytes(word))
    if operand is None:
        return None
    base_name, disp, index_name, shift = operand
    base = _register_value(uc, base_name) if base_name is not None else 0
    if base is None:
        return None
    address = base + disp
    if index_name is not None:
        index = _register_value(uc, index_name)
        if index is None:
            return None
        address += index << shift
    return address & 0xFFFF_FFFF_FFFF_FFFF
