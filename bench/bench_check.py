"""Benchmark: checking mode against bare Unicorn on the same image.

Two measurements, each the best of several runs:

1. asm/head.S from reset to start_c (a few thousand instructions: dominated
   by set-up and the MMU-transition windows);
2. the same boot followed by a loop of SPIN iterations after start_c (a load,
   a store, a subtract and a branch each: loads and stores are Unicorn's slow
   spot), which shows steady-state instructions per second.

"Bare" is Unicorn with nothing installed but the EL2 set-up, translating with
QEMU's own walker (UC_TLB_CPU): the floor any checking mode is measured against.

Usage: python bench/bench_check.py [--spin N] [--repeat K] [--record FILE]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_PROT_ALL, Uc
from unicorn import arm64_const as a64

from emu.asm.assembler import assemble_text
from emu.checks.run import check_image
from emu.image.boot_image import BootImage
from emu.image.program import image_from_program
from emu.machine.machine import PSTATE_EL2H, SCR_EL3_BOOT, Machine
from emu.machine.mmu import cp_reg

REPO = Path(__file__).resolve().parent.parent
HEAD_S = REPO / "asm" / "head.S"
LOAD = 0x4000_0000


def spin_variant(iterations: int) -> str:
    """head.S with a countdown loop at start_c, ending at a new label ``bench_done``."""
    text = HEAD_S.read_text()
    marker = "\nstart_c:\n"
    assert text.count(marker) == 1, "head.S must define start_c exactly once"
    spin = (f"\nstart_c:\n    ldr x9, ={iterations}\n    ldr x10, =__bss_start\n"
            f"bench_spin:\n    ldr x11, [x10]\n    str x9, [x10]\n    subs x9, x9, #1\n"
            f"    b.ne bench_spin\nbench_done:\n")
    return text.replace(marker, spin)


def build(iterations: int) -> BootImage:
    source = spin_variant(iterations) if iterations else HEAD_S.read_text()
    program = assemble_text(source, filename=str(HEAD_S), include_dirs=[HEAD_S.parent / "include"])
    return image_from_program(program, LOAD)


def bare_run(image: BootImage, until: int) -> float:
    """Seconds for bare Unicorn (QEMU's walker, no hooks) to run the image to ``until``."""
    machine = Machine(image)  # reuse its RAM layout and device-tree placement
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_cpu_model(a64.UC_CPU_ARM64_MAX)
    uc.mem_map(machine.ram_base, machine.ram_size, UC_PROT_ALL)
    uc.mem_write(image.load_address, image.payload)
    if image.bss:
        uc.mem_write(image.bss[0], b"\xa5" * (image.bss[1] - image.bss[0]))
    scr = cp_reg("SCR_EL3") + (SCR_EL3_BOOT,)
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, scr)
    uc.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE_EL2H)
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, scr)
    uc.reg_write(a64.UC_ARM64_REG_X0, machine.dtb_address)
    start = time.perf_counter()
    uc.emu_start(image.entry, until)
    elapsed = time.perf_counter() - start
    if uc.reg_read(a64.UC_ARM64_REG_PC) != until:
        raise RuntimeError(f"bare run stopped at {uc.reg_read(a64.UC_ARM64_REG_PC):#x}")
    return elapsed


def check_run(image: BootImage, until: str) -> tuple[float, int]:
    start = time.perf_counter()
    run = check_image(image, until=until, max_insns=10**10)
    elapsed = time.perf_counter() - start
    if run.verdict != "clean":
        raise RuntimeError(f"check run not clean: {run.stop.message}")
    return elapsed, run.executed


def measure(iterations: int, repeat: int) -> dict[str, float]:
    image = build(iterations)
    target = "bench_done" if iterations else "start_c"
    bare = min(bare_run(image, image.symbols[target]) for _ in range(repeat))
    checks = [check_run(image, target) for _ in range(repeat)]
    checked = min(seconds for seconds, _ in checks)
    executed = checks[0][1]
    return {
        "instructions": executed,
        "bare_s": bare,
        "check_s": checked,
        "bare_mips": executed / bare / 1e6,
        "check_mips": executed / checked / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spin", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--record", type=Path, default=None,
                        help="append the results as a Markdown section to this file")
    args = parser.parse_args()
    rows = []
    for label, iterations in (("head.S to start_c", 0), (f"head.S + spin {args.spin}",
                                                           args.spin)):
        result = measure(iterations, args.repeat)
        rows.append(
            f"| {label} | {result['instructions']:,} | {result['bare_s'] * 1e3:.1f} ms "
            f"({result['bare_mips']:.1f} M/s) | {result['check_s'] * 1e3:.1f} ms "
            f"({result['check_mips']:.1f} M/s) | {result['check_s'] / result['bare_s']:.2f}x |"
        )
    header = [
        f"## {datetime.date.today()} — {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}, best of {args.repeat}",
        "",
        "| run | instructions | bare Unicorn | bootemu check | check / bare |",
        "|---|---:|---:|---:|---:|",
    ]
    text = "\n".join(header + rows) + "\n"
    print(text)
    if args.record:
        with args.record.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
