"""Benchmark: load-address sweep throughput with 1 and 2 worker processes.

head.S is assembled once; then ``emu.analysis.sweep.sweep_program`` boots it at N load
addresses (every 512 MiB from 0, all in level-0 slot 0, so every boot is a
full clean boot to start_c) with 1 and with 2 processes.  The wall time
includes starting the worker pool and shipping the program to it, not the
assembly.  Each figure is the best of several runs.

Usage: python bench/bench_sweep.py [--addresses N] [--repeat K] [--record FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

from emu.analysis.sweep import sweep_program
from emu.asm.assembler import assemble_file

REPO = Path(__file__).resolve().parent.parent
HEAD_S = REPO / "asm" / "head.S"
STRIDE = 512 << 20


def measure(program, addresses: list[int], jobs: int, repeat: int) -> float:
    """Best wall time, in seconds, of sweeping ``addresses`` with ``jobs`` processes."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        results = sweep_program(program, addresses, jobs=jobs)
        best = min(best, time.perf_counter() - start)
        if not all(result.clean for result in results):
            raise RuntimeError("a boot of the benchmark sweep was not clean")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--record", type=Path, default=None,
                        help="append the results as a Markdown section to this file")
    args = parser.parse_args()
    # Other processes on a 2-core machine halve the 2-process figure: say how busy it was.
    load_before = os.getloadavg()[0]
    program = assemble_file(HEAD_S)
    addresses = [index * STRIDE for index in range(args.addresses)]
    timings = {jobs: measure(program, addresses, jobs, args.repeat) for jobs in (1, 2)}
    rows = [
        f"| {jobs} | {len(addresses)} | {seconds:.2f} s | {len(addresses) / seconds:.0f} "
        f"| {seconds / len(addresses) * 1e3:.2f} ms | {timings[1] / seconds:.2f}x |"
        for jobs, seconds in timings.items()
    ]
    text = "\n".join([
        f"## {datetime.date.today()} — sweep, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"best of {args.repeat}",
        "",
        "`python bench/bench_sweep.py`: `sweep_program` booting head.S (assembled once) "
        f"at {len(addresses)} load addresses, every 512 MiB from 0, each a full clean "
        "boot to start_c; wall time including the worker pool's start-up. "
        f"Load average before the run: {load_before:.2f}.",
        "",
        "| processes | boots | wall time | boots/s | per boot | speed-up |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]) + "\n"
    print(text)
    if args.record:
        with args.record.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
