"""The registers a GDB client sees, and the target description that names them.

GDB numbers AArch64 registers as its ``org.gnu.gdb.aarch64.core`` and
``org.gnu.gdb.aarch64.fpu`` features do (GDB manual, "AArch64 Features"):
x0-x30 are 0-30, sp 31, pc 32, cpsr 33 (32 bits), v0-v31 34-65 (128 bits),
fpsr 66 and fpcr 67.  System registers follow from 68 in a feature named as
QEMU names its own (``org.qemu.gdb.arm.sys.regs``), each under its
architectural name, so ``p/x $TTBR0_EL2`` works in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from emu.arch.sysregs import SYSREGS

CORE_FEATURE = "org.gnu.gdb.aarch64.core"
FPU_FEATURE = "org.gnu.gdb.aarch64.fpu"
SYSREG_FEATURE = "org.qemu.gdb.arm.sys.regs"

# Registers of SYSREGS that are not system registers in GDB's sense, or that
# the core and FPU features already hold.
_NOT_SYSTEM = frozenset({"NZCV", "DAIF", "SPSel", "FPCR", "FPSR"})


@dataclass(frozen=True)
class Register:
    """One register as GDB numbers it: ``name`` is also what the machine reads."""

    regnum: int
    name: str
    bits: int
    feature: str
    gdb_type: str = "uint64"
    group: str | None = None

    @property
    def size(self) -> int:
        return self.bits // 8


def _core() -> list[Register]:
    registers = [Register(i, f"x{i}", 64, CORE_FEATURE, "int") for i in range(31)]
    registers += [Register(31, "sp", 64, CORE_FEATURE, "data_ptr"),
                  Register(32, "pc", 64, CORE_FEATURE, "code_ptr"),
                  Register(33, "cpsr", 32, CORE_FEATURE, "int")]
    return registers


def _fpu() -> list[Register]:
    registers = [Register(34 + i, f"v{i}", 128, FPU_FEATURE, "uint128") for i in range(32)]
    return registers + [Register(66, "fpsr", 32, FPU_FEATURE, "int"),
                        Register(67, "fpcr", 32, FPU_FEATURE, "int")]


def _system(first: int) -> list[Register]:
    names = sorted(name for name in SYSREGS.values() if name not in _NOT_SYSTEM)
    return [Register(first + i, name, 64, SYSREG_FEATURE, "uint64", "system")
            for i, name in enumerate(names)]


REGISTERS: tuple[Register, ...] = tuple(_core() + _fpu() + _system(68))
BY_NUMBER: dict[int, Register] = {register.regnum: register for register in REGISTERS}
# What a ``g`` packet holds: the core registers (GDB fetches the rest with ``p``).
G_PACKET: tuple[Register, ...] = tuple(r for r in REGISTERS if r.feature == CORE_FEATURE)


def target_xml() -> bytes:
    """The target description GDB reads with ``qXfer:features:read:target.xml``."""
    lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
             "<target>", "  <architecture>aarch64</architecture>"]
    for feature in (CORE_FEATURE, FPU_FEATURE, SYSREG_FEATURE):
        lines.append(f'  <feature name="{feature}">')
        for register in REGISTERS:
            if register.feature != feature:
                continue
            group = f' group="{register.group}"' if register.group else ""
            lines.append(f'    <reg name="{escape(register.name)}" bitsize="{register.bits}" '
                         f'type="{register.gdb_type}" regnum="{register.regnum}"{group}/>')
        lines.append("  </feature>")
    lines.append("</target>")
    return ("\n".join(lines) + "\n").encode()
