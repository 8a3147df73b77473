"""Benchmark: `bootemu trace` against QEMU's per-instruction log of the same code.

The guest is asm/head.S followed by bench_check.py's countdown loop (a load,
a store, a subtract and a branch an iteration) and a PSCI SYSTEM_OFF
(``smc #0`` with w0 = 0x84000008), assembled once by bootemu and run by both
machines from physical 0x40200000 (2 MiB aligned, as head.S requires; QEMU
puts its device tree at the start of RAM), entered at EL2, to the power-off.

* QEMU 7.2, one "Trace" line per executed instruction (``-singlestep``: one
  instruction a translation block; ``nochain``: every block goes through the
  logger)::

      qemu-system-aarch64 -M virt,virtualization=on,gic-version=2 -cpu cortex-a72
          -m 128 -nographic -nodefaults -no-user-config -display none -no-reboot
          -device loader,file=GUEST.bin,addr=0x40200000,force-raw=on
          -device loader,addr=0x40200000,cpu-num=0
          -singlestep -d exec,nochain -D FILE

* ``bootemu trace GUEST.S --load-address 0x40200000 --until exit [--json |
  --pc-only] > FILE``: the whole command in a subprocess (Python start-up,
  assembling the source, the machine and its device tree, the run).

Both write their trace to a file in a temporary directory.  Times are wall
clock, the best of ``--repeat`` runs.  "M/s" is instructions per second of
that time; "net" subtracts each command's start-up (the same command on a
guest that powers off after three instructions, for QEMU; for bootemu, the
same command stopped by ``--max-insns 1``).  The bench checks that every run
traced the same number of instructions, and that bootemu's PC-only trace
lists, line for line, the PCs of QEMU's log (QEMU also logs the ``smc``
that powers off; bootemu's trace ends with it too).

Usage: python bench/bench_trace.py [--spin N[,N...]] [--repeat K] [--record FILE]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from bench_check import HEAD_S, spin_variant  # noqa: E402

QEMU = "qemu-system-aarch64"
LOAD = 0x4020_0000
# PSCI SYSTEM_OFF through the SMC conduit (QEMU virt with virtualization=on).
POWER_OFF = "    movz w0, #0x0008\n    movk w0, #0x8400, lsl #16\n    smc #0\n    b .\n"
BOOTEMU = [sys.executable, "-m", "emu.cli", "trace"]
LAYOUTS = {"text": [], "JSON": ["--json"], "PC-only": ["--pc-only"],
           "Tarmac": ["--tarmac"], "Tarmac with memory": ["--tarmac", "--memory"]}
# The Tarmac writer reads the registers around every instruction (a Python call
# each): it runs on the first --spin only, where it takes seconds, not minutes.
SLOW = ("Tarmac", "Tarmac with memory")
QEMU_PC = re.compile(rb"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]{16})/")


def guest_source(iterations: int) -> str:
    """head.S, the countdown loop at start_c, and a power-off at bench_done."""
    text = spin_variant(iterations)
    marker = "\nbench_done:\n"
    assert text.count(marker) == 1
    return text.replace(marker, marker + POWER_OFF)


def qemu_command(binary: Path, log: Path) -> list[str]:
    return [QEMU, "-M", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a72",
            "-m", "128", "-nographic", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot",
            "-device", f"loader,file={binary},addr={LOAD:#x},force-raw=on",
            "-device", f"loader,addr={LOAD:#x},cpu-num=0",
            "-singlestep", "-d", "exec,nochain", "-D", str(log)]


def timed(command: list[str], stdout: Path | None = None) -> float:
    """Seconds the command takes; its stdout goes to ``stdout`` (or nowhere)."""
    with open(stdout or "/dev/null", "wb") as out:
        start = time.perf_counter()
        subprocess.run(command, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       cwd=REPO, timeout=3600, check=False)
        return time.perf_counter() - start


def count_lines(path: Path) -> int:
    with path.open("rb") as text:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: text.read(1 << 20), b""))


def same_pcs(qemu_log: Path, pc_trace: Path) -> bool:
    """Whether bootemu's PC-only trace (less its stop line) lists the PCs of QEMU's log."""
    with qemu_log.open("rb") as qemu, pc_trace.open("rb") as ours:
        lines = ours.readlines()[:-1]
        for number, line in enumerate(qemu):
            match = QEMU_PC.match(line)
            if match is None or number >= len(lines):
                return False
            if int(lines[number].split()[1], 16) != int(match.group(1), 16):
                return False
        return number + 1 == len(lines)


@dataclass
class Row:
    label: str
    instructions: int
    seconds: float
    startup: float
    size: int

    def cells(self, qemu: Row | None) -> str:
        net = self.seconds - self.startup
        rate = f"{self.seconds:.2f} s ({self.instructions / self.seconds / 1e6:.2f} M/s)"
        net_rate = f"{net:.2f} s ({self.instructions / net / 1e6:.2f} M/s)" if net > 0 else "—"
        versus = (f"{qemu.seconds / self.seconds:.1f}x / {(qemu.seconds - qemu.startup) / net:.1f}x"
                  if qemu is not None and self is not qemu and net > 0 else "—")
        return (f"| {self.label} | {self.instructions:,} | {rate} | {self.startup:.2f} s | "
                f"{net_rate} | {versus} | {self.size / 1e6:.0f} MB |")


def count_instructions(path: Path) -> int:
    """The IT/IS lines of a Tarmac trace."""
    with path.open("rb") as text:
        return sum(1 for line in text if b" IT (" in line or b" IS (" in line)


def measure(iterations: int, repeat: int, scratch: Path,
            slow: bool) -> tuple[list[Row], list[str]]:
    source = scratch / f"guest-{iterations}.S"
    source.write_text(guest_source(iterations))
    include = ["-I", str(HEAD_S.parent / "include")]
    binary = scratch / f"guest-{iterations}.bin"
    subprocess.run([sys.executable, "-m", "emu.cli", "asm", str(source), *include,
                    "-o", str(binary)], cwd=REPO, check=True, capture_output=True)
    notes: list[str] = []
    rows: list[Row] = []

    off = scratch / "power-off.bin"  # QEMU's start-up: three instructions, then off
    off.write_bytes(bytes.fromhex("00018052" "0080b072" "030000d4"))
    qemu_start = min(timed(qemu_command(off, scratch / "off.log")) for _ in range(repeat))
    log = scratch / "qemu.log"
    qemu_s = min(timed(qemu_command(binary, log)) for _ in range(repeat))
    qemu = Row("QEMU `-singlestep -d exec,nochain`", count_lines(log), qemu_s, qemu_start,
               log.stat().st_size)
    rows.append(qemu)

    base = [*BOOTEMU, str(source), *include, "--load-address", f"{LOAD:#x}"]
    for label, options in LAYOUTS.items():
        if label in SLOW and not slow:
            continue
        out = scratch / f"bootemu-{label}.txt"
        start = min(timed([*base, "--max-insns", "1", *options]) for _ in range(repeat))
        seconds = min(timed([*base, "--until", "exit", *options], out) for _ in range(repeat))
        # The stop line ends the other layouts; Tarmac's goes to stderr.
        traced = count_instructions(out) if label in SLOW else count_lines(out) - 1
        rows.append(Row(f"bootemu trace, {label}", traced, seconds, start, out.stat().st_size))
        if label == "PC-only":
            same = same_pcs(log, out)
            notes.append(f"spin {iterations:,}: bootemu's PC-only trace "
                         f"{'lists exactly' if same else 'DIFFERS from'} the PCs of QEMU's log.")
        out.unlink()
    counts = {row.instructions for row in rows}
    notes.append(f"spin {iterations:,}: instructions traced by each: "
                 f"{'the same' if len(counts) == 1 else sorted(counts)}.")
    log.unlink()
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spin", default="500000,2500000",
                        help="countdown iterations (4 instructions each), comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--record", type=Path, default=None,
                        help="append the results as a Markdown section to this file")
    args = parser.parse_args()
    if shutil.which(QEMU) is None:
        sys.exit(f"{QEMU} not found (Debian: qemu-system-arm; `make tools` installs it)")
    qemu_version = subprocess.run([QEMU, "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0]
    lines = [
        f"## {datetime.date.today()} — bootemu trace vs QEMU's exec log (bench_trace.py), "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, best of {args.repeat}",
        "",
        f"{qemu_version}.  Guest: head.S + countdown loop + PSCI SYSTEM_OFF, from "
        f"{LOAD:#x} at EL2.",
        "",
        "| trace | instructions | wall | start-up | net of start-up | QEMU time / this "
        "(wall / net) | file |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for number, iterations in enumerate(int(n) for n in args.spin.split(",")):
            rows, found = measure(iterations, args.repeat, Path(scratch), slow=number == 0)
            qemu = rows[0]
            lines += [row.cells(qemu) for row in rows]
            notes += found
    text = "\n".join(lines + [""] + [f"* {note}" for note in notes]) + "\n"
    print(text)
    if args.record:
        with args.record.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
