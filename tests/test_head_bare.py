"""asm/head.S boots on bare Unicorn, with QEMU's own MMU and no bootemu model.

This is the ground truth the emulator's checks are measured against: the
correct boot program must reach start_c at the addresses it supports and stop
in boot_failure, with the right code, at those it refuses.  Unicorn runs in
its default UC_TLB_CPU mode, so translations come from QEMU's architectural
table walker; the EL2 set-up is the one DESIGN.md §3 verified.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from unicorn import UC_ARCH_ARM64, UC_HOOK_INSN, UC_MODE_ARM, Uc, UcError
from unicorn.arm64_const import (
    UC_ARM64_INS_MRS,
    UC_ARM64_REG_CP_REG,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_X0,
    UC_CPU_ARM64_MAX,
)

from emu.asm.assembler import assemble_file
from emu.asm.preprocess import eval_c_integer
from emu.asm.program import Program

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "asm" / "head.S"
INCLUDE = ROOT / "asm" / "include"

# CpReg tuples are (crn, crm, op0, op1, op2[, value]).
SCR_EL3_NS_RW = (1, 1, 3, 6, 0, 0x501)  # NS | RW (+ bit 8, HCE): non-secure, AArch64 EL2
TTBR0_EL2 = (2, 0, 3, 4, 0)
ID_AA64MMFR0_EL1 = (3, 0, 0, 7, 0)  # (op0, op1, crn, crm, op2), as a hook sees it
PSTATE_EL2H = 0x3C9
RAM_SIZE = 4 << 20
DTB_OFFSET = 3 << 20
MAX_STEPS = 200_000


@pytest.fixture(scope="module")
def program() -> Program:
    return assemble_file(HEAD)


def code(program: Program, name: str) -> int:
    return eval_c_integer(program.defines[name])


@dataclass
class Run:
    """The state of a bare Unicorn boot run when it stopped."""

    uc: Uc
    program: Program
    load: int
    pc: int
    error: UcError | None

    def physical(self, symbol: str) -> int:
        return self.program.symbols[symbol] - self.program.base + self.load

    def read_u64(self, physical: int) -> int:
        return int.from_bytes(self.uc.mem_read(physical, 8), "little")


def boot(program: Program, load: int, until: int, *, el2: bool = True,
         pa_range: int | None = None) -> Run:
    """Load ``program`` at ``load`` like a boot loader and run until PC == ``until``."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_cpu_model(UC_CPU_ARM64_MAX)
    uc.mem_map(load, RAM_SIZE)
    symbols = program.symbols
    payload = symbols["__bss_start"] - program.base
    uc.mem_write(load, program.code[:payload])
    # A loader does not promise a zero BSS: garbage proves head.S clears it.
    uc.mem_write(load + payload, b"\xa5" * (symbols["__bss_end"] - symbols["__bss_start"]))
    if el2:
        # Non-secure EL3 state first, then EL2h; the second CP write rebuilds
        # the CPU flags that a PSTATE write alone leaves stale (unicorn #2333).
        uc.reg_write(UC_ARM64_REG_CP_REG, SCR_EL3_NS_RW)
        uc.reg_write(UC_ARM64_REG_PSTATE, PSTATE_EL2H)
        uc.reg_write(UC_ARM64_REG_CP_REG, SCR_EL3_NS_RW)
    if pa_range is not None:
        def fake_mmfr0(uc: Uc, register: int, cp: object, _user: object) -> bool:
            key = (cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)  # type: ignore[attr-defined]
            if key != ID_AA64MMFR0_EL1:
                return False
            uc.reg_write(register, pa_range)
            return True  # skip the real mrs

        uc.hook_add(UC_HOOK_INSN, fake_mmfr0, None, 1, 0, UC_ARM64_INS_MRS)
    uc.reg_write(UC_ARM64_REG_X0, load + DTB_OFFSET)
    error = None
    try:
        uc.emu_start(load, until, count=MAX_STEPS)
    except UcError as err:
        error = err
    return Run(uc, program, load, uc.reg_read(UC_ARM64_REG_PC), error)


@pytest.mark.parametrize("load", [0x4000_0000, 0x8_8000_0000, 0x100_0000_0000],
                         ids=["qemu-virt", "juno-bank2", "1TiB"])
def test_boots_to_start_c(program: Program, load: int) -> None:
    run = boot(program, load, until=program.symbols["start_c"])
    assert run.error is None
    assert run.pc == program.symbols["start_c"]
    assert run.uc.reg_read(UC_ARM64_REG_X0) == load + DTB_OFFSET  # device tree passed on

    runtime_l0 = run.physical("runtime_pgtable")
    assert run.uc.reg_read(UC_ARM64_REG_CP_REG, TTBR0_EL2) == runtime_l0
    identity_slot = (run.physical("switch_ttbr_id") >> 39) & 0x1FF
    image_slot = (program.base >> 39) & 0x1FF
    assert identity_slot != image_slot
    assert run.read_u64(runtime_l0 + 8 * identity_slot) == 0  # identity map removed
    assert run.read_u64(runtime_l0 + 8 * image_slot) & 3 == 3  # image still mapped

    # The identity tables were written over garbage: every other entry is 0.
    first_id = run.uc.mem_read(run.physical("runtime_first_id"), 4096)
    assert sum(1 for i in range(0, 4096, 8) if any(first_id[i:i + 8])) == 1


@pytest.mark.parametrize(
    ("load", "error"),
    [
        (0x80_0000_0000, "BOOT_ERR_IDMAP_CLASH"),    # slot 1: XEN_VIRT_START's slot
        (0x80_4000_0000, "BOOT_ERR_IDMAP_CLASH"),    # slot 1, on VMAP
        (0x200_0000_0000, "BOOT_ERR_IDMAP_CLASH"),   # slot 4: the frame table's
        (0x4010_0000, "BOOT_ERR_MISALIGNED"),
    ],
)
def test_refused_load_addresses(program: Program, load: int, error: str) -> None:
    failure = program.symbols["boot_failure"] - program.base + load  # MMU still off
    run = boot(program, load, until=failure)
    assert run.error is None
    assert run.pc == failure
    assert run.uc.reg_read(UC_ARM64_REG_X0) == code(program, error)
    # Refused before any table was written: the BSS is all zero (the clash is
    # found after zero_bss) or still all garbage (misalignment, found before).
    bss = run.uc.mem_read(run.physical("__bss_start"),
                          program.symbols["__bss_end"] - program.symbols["__bss_start"])
    assert set(bss) == ({0} if error == "BOOT_ERR_IDMAP_CLASH" else {0xA5})


def test_refuses_an_image_beyond_the_pa_size(program: Program) -> None:
    load = 0x1_0000_0000  # 4 GiB: out of reach with PARange = 0 (32 bits)
    failure = program.symbols["boot_failure"] - program.base + load
    run = boot(program, load, until=failure, pa_range=0)
    assert run.pc == failure
    assert run.uc.reg_read(UC_ARM64_REG_X0) == code(program, "BOOT_ERR_PA_RANGE")


def test_refuses_to_run_below_el2(program: Program) -> None:
    load = 0x4000_0000
    failure = program.symbols["boot_failure"] - program.base + load
    run = boot(program, load, until=failure, el2=False)  # Unicorn starts at EL1
    assert run.pc == failure
    assert run.uc.reg_read(UC_ARM64_REG_X0) == code(program, "BOOT_ERR_NOT_EL2")


def test_image_fits_its_2mib_block(program: Program) -> None:
    # head.S cannot assert this itself under keystone (see its last comment).
    assert program.symbols["_end"] - program.symbols["_start"] <= 2 << 20
    assert program.base % (2 << 20) == 0


def test_failure_codes_have_descriptions() -> None:
    import re

    text = (INCLUDE / "layout.h").read_text()
    found = dict(re.findall(r"#define\s+(BOOT_ERR_\w+)\s+\d+\s*/\*\s*(.*?)\s*\*/", text))
    assert set(found) >= {"BOOT_ERR_NOT_EL2", "BOOT_ERR_IDMAP_CLASH", "BOOT_ERR_MISALIGNED",
                          "BOOT_ERR_PA_RANGE"}
    assert all(found.values())


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in
        ("aarch64-linux-gnu-as", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-objcopy")),
    reason="GNU binutils for aarch64 (binutils-aarch64-linux-gnu) not installed",
)
def test_gnu_as_assembles_the_same_bytes(program: Program, tmp_path: Path) -> None:
    preprocessed = tmp_path / "head.s"
    with preprocessed.open("w") as handle:
        subprocess.run(["cpp", "-x", "assembler-with-cpp", "-undef", "-nostdinc", "-P",
                        f"-I{HEAD.parent}", f"-I{INCLUDE}", str(HEAD)], check=True, stdout=handle)
    obj, elf, binary = tmp_path / "head.o", tmp_path / "head.elf", tmp_path / "head.bin"
    subprocess.run(["aarch64-linux-gnu-as", str(preprocessed), "-o", str(obj)], check=True)
    subprocess.run(["aarch64-linux-gnu-ld", f"-Ttext={program.base:#x}", "-e",
                    f"{program.base:#x}", str(obj), "-o", str(elf)], check=True)
    subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", str(elf), str(binary)],
                   check=True)
    gnu = binary.read_bytes()
    differing = [
        f"{program.base + offset:#x} ({program.location_of(program.base + offset)}): "
        f"keystone {program.code[offset:offset + 4].hex()} GNU {gnu[offset:offset + 4].hex()}"
        for offset in range(0, max(len(gnu), len(program.code)), 4)
        if program.code[offset:offset + 4] != gnu[offset:offset + 4]
    ]
    assert not differing, "\n".join(differing[:20])
    assert len(gnu) == len(program.code)
