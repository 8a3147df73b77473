"""Benchmark: a real boot image in checking mode against bare Unicorn.

The image is the suite's EL2 test program (tests/images: C and assembly built
with aarch64-linux-gnu-gcc): it builds page tables, turns the MMU on, runs C
at its link address, switches TTBR through its identity map, then runs a
load/store loop of ``spin=N`` rounds (from /chosen/bootargs) and exits
through semihosting.  Three measurements, each the best of several runs:

* bare: Unicorn with only the EL2 set-up, QEMU's own walker (UC_TLB_CPU), the
  UART mapped and a Python interrupt hook for the few semihosting calls;
* run: ``bootemu run`` (the Python MMU model, devices, no rules);
* check: ``bootemu check --until exit`` (everything).

Usage: python bench/bench_images.py [--spin N] [--repeat K] [--record FILE]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, UC_PROT_ALL, Uc
from unicorn import arm64_const as a64

from emu.board.board import Board
from emu.board.guest import INTNO_UDEF
from emu.board.semihosting import SYS_EXIT, SYS_EXIT_EXTENDED
from emu.board.spec import load_image
from emu.checks.run import check_image
from emu.image.boot_image import BootImage
from emu.machine.machine import PSTATE_EL2H, SCR_EL3_BOOT, Machine
from emu.machine.mmu import cp_reg
from emu.machine.stop import StopKind

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "images"))
from build import build, toolchain_missing  # noqa: E402


def bare_run(image: BootImage, board: Board) -> tuple[float, bool]:
    """Seconds for bare Unicorn to run the image to its semihosting exit."""
    plan = board.plan(image)
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_cpu_model(a64.UC_CPU_ARM64_MAX)
    uc.mem_map(plan.ram_base, plan.ram_size, UC_PROT_ALL)
    for region in image.regions():
        uc.mem_write(region.physical, region.data)
    if image.bss:
        uc.mem_write(image.bss[0], b"\xa5" * (image.bss[1] - image.bss[0]))
    uc.mem_write(plan.dtb_address, plan.dtb)
    if plan.uart_base is not None:
        uc.mmio_map(plan.uart_base, 0x1000, lambda *_: 0x90, None, lambda *_: None, None)
    exited = []

    def on_interrupt(uc: Uc, intno: int, _user_data) -> None:
        # The test image's only undefined instructions are its semihosting HLTs.
        operation = uc.reg_read(a64.UC_ARM64_REG_X0) & 0xFFFFFFFF
        if intno == INTNO_UDEF and operation not in (SYS_EXIT, SYS_EXIT_EXTENDED):
            uc.reg_write(a64.UC_ARM64_REG_X0, 0)
            uc.reg_write(a64.UC_ARM64_REG_PC, uc.reg_read(a64.UC_ARM64_REG_PC) + 4)
            return
        exited.append(intno == INTNO_UDEF)
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_interrupt)
    scr = cp_reg("SCR_EL3") + (SCR_EL3_BOOT,)
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, scr)
    uc.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE_EL2H)
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, scr)
    uc.reg_write(a64.UC_ARM64_REG_X0, plan.dtb_address)
    start = time.perf_counter()
    uc.emu_start(image.entry, 0)
    return time.perf_counter() - start, bool(exited and exited[0])


def run_only(image: BootImage, board: Board) -> tuple[float, int]:
    start = time.perf_counter()
    machine = Machine(image, board)
    stop = machine.run(max_insns=10**10)
    elapsed = time.perf_counter() - start
    if stop.kind is not StopKind.EXIT or stop.status != 0:
        raise RuntimeError(f"run did not exit cleanly: {stop.message}")
    return elapsed, stop.index


def check_run(image: BootImage, board: Board) -> tuple[float, int]:
    start = time.perf_counter()
    run = check_image(image, until="exit", max_insns=10**10, board=board)
    elapsed = time.perf_counter() - start
    if run.verdict != "clean":
        raise RuntimeError(f"check run not clean: {run.stop.message}")
    return elapsed, run.executed


def measure(elf: Path, spin: int, repeat: int) -> dict[str, float]:
    board = Board(bootargs=f"spin={spin}")
    image = load_image(elf)
    bares = [bare_run(image, board) for _ in range(repeat)]
    if not all(exited for _, exited in bares):
        raise RuntimeError("the bare run did not reach the program's exit")
    bare = min(seconds for seconds, _ in bares)
    ran = min(run_only(image, board)[0] for _ in range(repeat))
    checks = [check_run(image, board) for _ in range(repeat)]
    checked = min(seconds for seconds, _ in checks)
    executed = checks[0][1]
    return {"instructions": executed, "bare_s": bare, "run_s": ran, "check_s": checked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spin", type=int, default=4_400_000,
                        help="rounds of the load/store loop (about 11.7 instructions each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--record", type=Path, default=None,
                        help="append the results as a Markdown section to this file")
    args = parser.parse_args()
    missing = toolchain_missing()
    if missing:
        sys.exit(f"bench_images: {missing}")
    with tempfile.TemporaryDirectory() as tmp:
        built = build("el2", Path(tmp))
        rows = []
        for label, spin in (("EL2 test image, spin 1000", 1000),
                            (f"EL2 test image, spin {args.spin}", args.spin)):
            r = measure(built.elf, spin, args.repeat)
            n = r["instructions"]

            def cell(seconds: float, n: int = n) -> str:
                return f"{seconds * 1e3:.1f} ms ({n / seconds / 1e6:.1f} M/s)"

            rows.append(f"| {label} | {n:,} | {cell(r['bare_s'])} | {cell(r['run_s'])} | "
                        f"{cell(r['check_s'])} | {r['check_s'] / r['bare_s']:.2f}x |")
    header = [
        f"## {datetime.date.today()} — real boot images (bench_images.py), "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, best of {args.repeat}",
        "",
        "| run | instructions | bare Unicorn | bootemu run | bootemu check | check / bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    text = "\n".join(header + rows) + "\n"
    print(text)
    if args.record:
        with args.record.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
