"""Benchmark: idle guests - WFI without a cost per instruction, memory flat.

Two guests, each run by the whole ``bootemu`` command in a subprocess (Python
start-up, loading, the run), wall clock and the child's peak RSS:

* ``wfi; b .`` - the idle loop with nothing that can ever wake it, under
  ``--max-insns 100000000``.  bootemu ends it as IDLE at its first pass.
* bench/guests/idle_tick.S - an idle loop woken by the EL2 physical timer
  every 4 ms of guest time (HZ=250); each tick's handler does ``--work``
  iterations of a two-instruction loop, and after ``--ticks`` ticks the guest
  powers off (PSCI SYSTEM_OFF).  With the defaults, 50,000 ticks are 200 s of
  guest time and 100,650,023 instructions (2,013 a tick).  Built once by GNU
  as and ld; bootemu runs the ELF file with ``run`` and with ``check`` (every
  rule on), QEMU 7.2 runs it with ``-icount shift=0,sleep=off`` (virtual
  time, idle periods skipped: the same work, no real 4 ms waits), and the
  ratio is bootemu's wall time over QEMU's.

Memory over the run: the same tick guest run in-process by the Machine in
slices to 10 M, 20 M, 50 M instructions and the end, with the resident set
size after each slice; flat means no list that grows per instruction or per
idle period.

Usage: python bench/bench_idle.py [--ticks N] [--work N] [--repeat K] [--record FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUEST = REPO / "bench" / "guests" / "idle_tick.S"
QEMU = "qemu-system-aarch64"
QEMU_ARGS = ["-nodefaults", "-no-user-config", "-display", "none", "-serial", "none",
             "-no-reboot", "-M", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a72",
             "-m", "128", "-icount", "shift=0,sleep=off"]
BOOTEMU = [sys.executable, "-m", "emu.cli"]
LINK_ADDRESS = 0x4008_0000
SLICES = (10_000_000, 20_000_000, 50_000_000)


@dataclass
class Timed:
    seconds: float
    peak_rss_mib: float
    status: int
    stderr: str


def timed(command: list[str]) -> Timed:
    """Run ``command``: its wall time, its own peak RSS (wait4), its status."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, cwd=REPO)
    assert child.stderr is not None
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return Timed(seconds, usage.ru_maxrss / 1024, child.returncode, stderr.strip())


def best(command: list[str], repeat: int) -> Timed:
    runs = [timed(command) for _ in range(repeat)]
    return min(runs, key=lambda run: run.seconds)


def build_guest(out: Path, ticks: int, work: int) -> Path:
    """idle_tick.S assembled and linked by GNU binutils."""
    obj, elf = out / "idle_tick.o", out / "idle_tick.elf"
    subprocess.run(["aarch64-linux-gnu-as", "--defsym", f"TICKS={ticks}",
                    "--defsym", f"WORK={work}", str(GUEST), "-o", str(obj)], check=True)
    subprocess.run(["aarch64-linux-gnu-ld", f"-Ttext={LINK_ADDRESS:#x}", "-e", "_start",
                    str(obj), "-o", str(elf)], check=True)
    return elf


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def memory_over_run(elf: Path) -> list[tuple[int, float, float]]:
    """(instructions, seconds so far, RSS MiB) after each slice of one run."""
    sys.path.insert(0, str(REPO))
    from emu.board.board import Board
    from emu.board.spec import load_image
    from emu.machine.machine import Machine
    from emu.machine.stop import StopKind

    board = Board(el=2)
    machine = Machine(load_image(elf, board=board), board)
    rows = []
    start = time.perf_counter()
    for budget in (*SLICES, 1 << 40):
        stop = machine.run(max_insns=budget)
        rows.append((stop.index, time.perf_counter() - start, rss_mib()))
        if stop.kind is not StopKind.BUDGET:
            break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50_000, help="timer ticks [50000]")
    parser.add_argument("--work", type=int, default=1000,
                        help="loop iterations in each tick's handler [1000]")
    parser.add_argument("--repeat", type=int, default=2, help="best of K runs [2]")
    parser.add_argument("--record", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    for tool in ("aarch64-linux-gnu-as", QEMU):
        if shutil.which(tool) is None:
            sys.exit(f"bench_idle: {tool} is not installed (make tools)")

    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        spin = out / "spin.S"
        spin.write_text("    .text\n_start:\n1:  wfi\n    b 1b\n")
        idle = best([*BOOTEMU, "run", str(spin), "--max-insns", "100000000"], args.repeat)
        assert idle.status == 1 and "waits for an interrupt" in idle.stderr, idle.stderr

        elf = build_guest(out, args.ticks, args.work)
        qemu = best([QEMU, *QEMU_ARGS, "-kernel", str(elf)], args.repeat)
        assert qemu.status == 0, qemu.stderr
        run = best([*BOOTEMU, "run", str(elf), "--max-insns", str(1 << 40)], args.repeat)
        assert "powered off" in run.stderr, run.stderr
        check = best([*BOOTEMU, "check", str(elf), "--max-insns", str(1 << 40)], args.repeat)
        assert check.status in (0, 1), check.stderr  # 1: the vectors' `b .` never run
        slices = memory_over_run(elf)
        instructions = slices[-1][0]

    when = datetime.date.today().isoformat()
    lines.append(f"## {when} — idle guests (bench_idle.py), CPython "
                 f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
                 f"best of {args.repeat}")
    lines.append("")
    lines.append(f"Tick guest: {args.ticks:,} ticks of 4 ms, {args.work:,} loop iterations "
                 f"each, {instructions:,} instructions.")
    lines.append("")
    lines.append("| guest, command | wall | peak RSS | compared with QEMU |")
    lines.append("|---|---:|---:|---:|")
    lines.append(f"| `wfi; b .`, `bootemu run --max-insns 100000000` (IDLE at once) "
                 f"| {idle.seconds:.2f} s | {idle.peak_rss_mib:.0f} MiB | |")
    lines.append(f"| tick guest, QEMU `-icount shift=0,sleep=off` | {qemu.seconds:.2f} s "
                 f"| {qemu.peak_rss_mib:.0f} MiB | 1 |")
    lines.append(f"| tick guest, `bootemu run` | {run.seconds:.2f} s | {run.peak_rss_mib:.0f} MiB "
                 f"| {run.seconds / qemu.seconds:.1f}x |")
    lines.append(f"| tick guest, `bootemu check` | {check.seconds:.2f} s "
                 f"| {check.peak_rss_mib:.0f} MiB | {check.seconds / qemu.seconds:.1f}x |")
    lines.append("")
    lines.append("Memory over one run of the tick guest (Machine, in-process):")
    lines.append("")
    lines.append("| instructions | seconds | RSS |")
    lines.append("|---:|---:|---:|")
    for index, seconds, rss in slices:
        lines.append(f"| {index:,} | {seconds:.1f} | {rss:.0f} MiB |")
    per_tick = (run.seconds - idle.seconds) / args.ticks
    lines.append("")
    lines.append(f"bootemu spends {per_tick * 1e6:.0f} us a tick (its whole run less the "
                 f"start-up of the IDLE run, over {args.ticks:,} ticks).")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record is not None:
        with args.record.open("a") as record:
            record.write("\n" + text)


if __name__ == "__main__":
    main()
