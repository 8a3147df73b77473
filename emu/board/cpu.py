"""The CPU a board has: which of Unicorn's models runs the guest, and the ID
registers as the guest reads them.

Unicorn's ``cortex-a72``, ``cortex-a57`` and ``cortex-a53`` are QEMU's models
of those cores: Armv8.0, no SVE, no VHE, no RNDR, so nothing they advertise is
missing from the emulator (the ``max`` model advertises SVE and VHE, which
Unicorn 2.1.4 cannot run: its ``*_EL12`` registers are rejected).  Two fields
are changed on the way to the guest, as QEMU's ``virt`` board changes them
when it has no EL3 (``secure=off``, the default; target/arm/cpu.c clears them
when the CPU has no EL3): ID_AA64PFR0_EL1.EL3, ID_PFR1_EL1.Security and
ID_DFR0_EL1.CopSDbg (Secure debug needs a Secure state) read 0.
There is no EL3 code here either: SMCs are answered by the board's PSCI
(:mod:`emu.board.firmware`).  The GIC fields (ID_AA64PFR0_EL1.GIC,
ID_PFR1_EL1.GIC) read 0: the board's GICv2 has no system-register interface.
"""

from __future__ import annotations

from collections.abc import Callable

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
from unicorn import arm64_const as a64

from emu.arch.fields import pa_range_bits
from emu.arch.sysregs import sysreg_encoding

# Unicorn's model for each CPU name a board may have (Board.cpu, QEMU's -cpu).
UNICORN_MODELS = {
    "cortex-a72": a64.UC_CPU_ARM64_A72,
    "cortex-a57": a64.UC_CPU_ARM64_A57,
    "cortex-a53": a64.UC_CPU_ARM64_A53,
}

# Fields cleared, by register: (name, mask) - DDI 0487 D17.2.64 ID_AA64PFR0_EL1
# (EL3 bits 15:12, GIC bits 27:24), G8.2.93 ID_PFR1_EL1 (Security bits 7:4,
# GIC bits 31:28) and G8.2.80 ID_DFR0_EL1 (CopSDbg bits 7:4).
_CLEARED = {
    "ID_AA64PFR0_EL1": (0xF << 12) | (0xF << 24),
    "ID_PFR1_EL1": (0xF << 4) | (0xF << 28),
    "ID_DFR0_EL1": 0xF << 4,
}


class IdRegisters:
    """The ID registers the board changes, answered in place of the CPU model's.

    ``read_model`` reads a register as the Unicorn model has it.
    """

    def __init__(self, read_model: Callable[[str], int]) -> None:
        self._values = {name: read_model(name) & ~mask for name, mask in _CLEARED.items()}

    def handles(self, name: str) -> bool:
        """Whether ``name`` is one of the registers this device answers."""
        return name in self._values

    def read(self, name: str) -> int:
        """MRS: the value the guest sees."""
        return self._values[name]

    def write(self, name: str, value: int) -> None:
        """MSR to an ID register: they are read-only; the write is ignored."""


def cpu_pa_bits(model: str) -> int:
    """The physical address size, in bits, that the CPU model advertises in
    ID_AA64MMFR0_EL1.PARange (DDI 0487 D17.2.65): 44 for the Cortex-A72 and
    A57, 40 for the A53.  Read from Unicorn's model itself."""
    op0, op1, crn, crm, op2 = sysreg_encoding("ID_AA64MMFR0_EL1")
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM, UNICORN_MODELS[model])
    return pa_range_bits(uc.reg_read(a64.UC_ARM64_REG_CP_REG, (crn, crm, op0, op1, op2)))
