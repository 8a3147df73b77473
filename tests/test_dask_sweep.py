"""Sweeps on Dask: a distributed.LocalCluster of worker processes gives the
same table as the local executor, through the library and through `bootemu
sweep --executor dask --scheduler ADDRESS`; a signal stops a Dask sweep and
leaves no worker process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

from emu.analysis.dask_sweep import batch_size  # noqa: E402
from emu.analysis.layout import get_preset  # noqa: E402
from emu.analysis.sweep import sweep_program, verdict_runs  # noqa: E402
from emu.asm.assembler import assemble_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEAD_S = ROOT / "asm" / "head.S"
BOOTEMU = [sys.executable, "-m", "emu.cli"]
GIB, TIB = 1 << 30, 1 << 40
# Both sides of slot 1 (the rework-512g image's, so a clash) and the end of
# the 44-bit PA range: clean, findings and beyond-pa-range boots.
ADDRESSES = [*range(0, 2 * TIB, 64 * GIB), 0xFFFFFE00000, 0x100000000000]


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """Two single-threaded worker processes, as `dask worker --nworkers 2
    --nthreads 1` would give."""
    local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=50)
    try:
        yield local
    finally:
        local.close()


def test_a_local_cluster_gives_the_local_executors_table(cluster) -> None:
    program = assemble_file(HEAD_S, defines=get_preset("rework-512g").defines)
    local = sweep_program(program, ADDRESSES, jobs=2)
    with distributed.Client(cluster) as client:
        seen: list[int] = []
        on_dask = sweep_program(program, ADDRESSES, executor="dask", dask_client=client,
                                progress=seen.append)
    assert on_dask == local
    assert sum(seen) == len(ADDRESSES) and len(seen) > 1  # progress came batch by batch
    assert {r.verdict for r in on_dask} == {"clean", "findings", "beyond-pa-range"}
    assert verdict_runs(on_dask) == verdict_runs(local)


def test_sweeps_one_after_another_on_one_client(cluster) -> None:
    # Each sweep scatters the same plan: under a content-hashed key, the key
    # the sweep before was releasing lost the new plan ("lost dependencies").
    program = assemble_file(HEAD_S)
    addresses = ADDRESSES[:8]
    with distributed.Client(cluster) as client:
        runs = [sweep_program(program, addresses, executor="dask", dask_client=client)
                for _ in range(4)]
    assert all(run == runs[0] for run in runs) and len(runs[0]) == len(addresses)


def test_the_cli_on_a_scheduler_prints_the_local_json(cluster) -> None:
    args = ["sweep", str(HEAD_S), "--layout", "rework-512g", "--json",
            "--load-addresses", ",".join(hex(a) for a in ADDRESSES)]
    local = subprocess.run([*BOOTEMU, *args, "-j", "2"], capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
    on_dask = subprocess.run([*BOOTEMU, *args, "--executor", "dask", "--scheduler",
                              cluster.scheduler_address],  # type: ignore[attr-defined]
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert local.returncode == on_dask.returncode == 1, on_dask.stderr
    assert json.loads(on_dask.stdout) == json.loads(local.stdout)


def test_batches_are_large_but_leave_every_worker_work() -> None:
    assert batch_size(1_000_000, 2) == 2000
    assert batch_size(100, 2) == 13
    assert batch_size(1, 8) == 1


def _descendants(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    children = {int(child) for child in found.split()}
    return children.union(*(_descendants(child) for child in children))


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_dask_sweep_and_its_cluster(number: int) -> None:
    """A 261,632-boot sweep on a local Dask cluster it starts itself: the
    signal ends it, the results so far are reported, and neither the
    scheduler's nor the workers' processes are left."""
    process = subprocess.Popen(
        [*BOOTEMU, "sweep", str(HEAD_S), "--load-addresses", "0x40000000:0x8000000000",
         "--executor", "dask", "-j", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = _descendants(process.pid)
    assert len(workers) >= 2, "the cluster's worker processes never started"
    time.sleep(3.0)  # the workers booting
    sent = time.monotonic()
    process.send_signal(number)
    out, err = process.communicate(timeout=60)
    took = time.monotonic() - sent
    assert process.returncode == 128 + number, err
    assert "Traceback" not in err
    assert f"bootemu: interrupted by {signal.Signals(number).name} after " in err
    assert out.rstrip().splitlines()[-1].endswith("boots/s)")
    assert took < 3.0, took  # about 1 s here: the workers are killed, the cluster closed
    assert [pid for pid in workers if _running(pid)] == []


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has; its
    parent, gone, leaves init to reap it)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        if "\nState:\tZ" in status:
            return False
        time.sleep(0.1)
    return True


def test_a_scheduler_without_workers_is_a_one_line_error() -> None:
    # The batches would wait for a worker for ever: refused after 10 s.
    empty = distributed.LocalCluster(n_workers=0, dashboard_address=None, silence_logs=50)
    try:
        done = subprocess.run(
            [*BOOTEMU, "sweep", str(HEAD_S), "--load-addresses", "qemu-virt",
             "--executor", "dask", "--scheduler", empty.scheduler_address],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        empty.close()
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "has no worker" in done.stderr, done.stderr


def test_an_unreachable_scheduler_is_a_one_line_error() -> None:
    done = subprocess.run(
        [*BOOTEMU, "sweep", str(HEAD_S), "--load-addresses", "qemu-virt",
         "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:9" in done.stderr
