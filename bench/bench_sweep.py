"""Benchmark: load-address sweep throughput with 1 and 2 worker processes, and on Dask.

head.S is assembled once; then ``emu.analysis.sweep.sweep_program`` boots it at N load
addresses (every 512 MiB from 0, all in level-0 slot 0, so every boot is a
full clean boot to start_c) with 1 and with 2 local processes, and on a
``distributed.LocalCluster`` of 2 single-threaded worker processes (the
cluster's start excluded, the program's scatter included).  The wall time
includes starting the worker pool and shipping the program to it, not the
assembly.  Each figure is the best of several runs.

Then where one boot's time goes, in this process (medians of 100 boots):
making the machine (Unicorn, RAM, devices, device tree, image), and the
checked run; and the machine with 8 MiB, 128 MiB (the default) and 1 GiB of
RAM, to show how the cost grows with RAM size.  A 1 M-address sweep's wall
time is projected from the 2-process rate.

Usage: python bench/bench_sweep.py [--addresses N] [--repeat K] [--record FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

from emu.analysis.sweep import sweep_program
from emu.asm.assembler import assemble_file
from emu.board.board import Board
from emu.checks.run import check_image
from emu.image.program import image_from_program
from emu.machine.machine import Machine

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


def measure_dask(program, addresses: list[int], repeat: int) -> float | None:
    """Best wall time on a 2-worker LocalCluster (None without the dask extra)."""
    try:
        import distributed
    except ImportError:
        return None
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    best = float("inf")
    try:
        with distributed.Client(cluster) as client:
            for _ in range(repeat):
                start = time.perf_counter()
                results = sweep_program(program, addresses, executor="dask", dask_client=client)
                best = min(best, time.perf_counter() - start)
                if not all(result.clean for result in results):
                    raise RuntimeError("a boot of the benchmark sweep was not clean")
    finally:
        cluster.close()
    return best


def median_ms(work, count: int = 100) -> float:
    times = []
    for index in range(count):
        start = time.perf_counter()
        work(index)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def boot_costs(program) -> list[str]:
    """Rows: where one boot's time goes, and the machine's cost by RAM size."""
    images = [image_from_program(program, 0x4000_0000 + index * (2 << 20)) for index in range(8)]
    image = lambda index: images[index % len(images)]  # noqa: E731
    check_image(image(0), until="start_c")  # imports and caches warm
    build = median_ms(lambda index: Machine(image(index)))
    boot = median_ms(lambda index: check_image(image(index), until="start_c"))
    rows = [f"| machine made (Unicorn, 128 MiB RAM, devices, device tree, image) "
            f"| {build:.2f} ms |",
            f"| checked boot to start_c, machine included | {boot:.2f} ms |",
            f"| of which the run | {boot - build:.2f} ms |"]
    for size in (8 << 20, 128 << 20, 1 << 30):
        board = Board(ram=(0x4000_0000, size))
        # The first two images only: 8 MiB has room for no more beside the device tree.
        cost = median_ms(lambda index, board=board: Machine(images[index % 2], board))
        rows.append(f"| machine made with {size >> 20} MiB of RAM | {cost:.2f} ms |")
    return rows


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
    timings: dict[str, float] = {
        f"{jobs} local process(es)": measure(program, addresses, jobs, args.repeat)
        for jobs in (1, 2)}
    on_dask = measure_dask(program, addresses, args.repeat)
    if on_dask is not None:
        timings["LocalCluster, 2 worker processes"] = on_dask
    one = timings["1 local process(es)"]
    rows = [
        f"| {label} | {len(addresses)} | {seconds:.2f} s | {len(addresses) / seconds:.0f} "
        f"| {seconds / len(addresses) * 1e3:.2f} ms | {one / seconds:.2f}x |"
        for label, seconds in timings.items()
    ]
    two = timings["2 local process(es)"]
    million = two / len(addresses) * 1_000_000
    costs = boot_costs(program)
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
        "| executor | boots | wall time | boots/s | per boot | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"A 1 M-address sweep (every 2 MiB over 2 TiB) at the 2-process rate: "
        f"{million / 60:.0f} min (projected, not run).",
        "",
        "Where one boot's time goes (one process, medians of 100):",
        "",
        "| part | time |",
        "|---|---:|",
        *costs,
    ]) + "\n"
    print(text)
    if args.record:
        with args.record.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
