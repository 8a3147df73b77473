"""A sweep's boots on a Dask cluster (``dask`` and ``distributed``, the ``dask`` extra).

The boot plan (the assembled :class:`~emu.asm.program.Program` and the boot
options) is scattered once to every worker; the load addresses go out in
batches of up to :data:`BATCH` per task, each worker process booting its
batch one address after another with :func:`emu.analysis.sweep.boot_batch`.
Nothing from Unicorn crosses the network: a machine is made, run and
dropped inside the worker, and only :class:`~emu.analysis.sweep.SweepResult`
records come back.

Results are kept in the addresses' order, batch after batch as the batches
before them come in; ``progress`` counts every boot done, in any order.
Once ``stop`` is set, the worker processes of a cluster this module started
are killed and the cluster closed (on another's cluster, the batches still
pending are cancelled), and the batches in order so far are the result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emu.analysis.sweep import SweepResult

__all__ = ["BATCH", "DaskUnavailable", "sweep_on_dask"]

BATCH = 2000  # load addresses per task, at most: a task is seconds of boots
_POLL_SECONDS = 0.05  # how often the stop event and the futures are looked at
_INSTALL_HINT = "pip install 'bootemu[dask]'"


class DaskUnavailable(RuntimeError):
    """``dask``/``distributed`` are not installed, or the scheduler cannot be reached."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise DaskUnavailable("--executor dask needs dask and distributed, which are not "
                              f"installed ({_INSTALL_HINT})") from None
    return distributed


def batch_size(count: int, workers: int) -> int:
    """Addresses per task: four tasks a worker at least (for balance and
    progress), at most :data:`BATCH`."""
    return max(1, min(BATCH, -(-count // (max(workers, 1) * 4))))


def sweep_on_dask(
    plan: Any,
    addresses: Sequence[int],
    *,
    scheduler: str | None = None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    client: Any = None,
) -> list[SweepResult]:
    """Boot ``plan`` at each address on Dask; results in the addresses' order.

    ``client``: a :class:`distributed.Client` to use as it is (left open);
    else ``scheduler`` (``tcp://host:8786``) is connected to, or, when it is
    None, a :class:`distributed.LocalCluster` of ``workers`` single-threaded
    processes is started, and closed at the end.
    """
    from emu.analysis.sweep import boot_batch

    distributed = _distributed()
    cluster = None
    worker_pids: list[int] = []
    own_client = client is None
    if client is None:
        try:
            if scheduler is None:
                cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=50)
                client = distributed.Client(cluster)
                # The worker processes, to end them at once when the sweep is
                # stopped: a worker in the middle of a batch answers the
                # nanny's request to close only when the batch is done.
                worker_pids = list(client.run(os.getpid).values())
            else:
                client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, RuntimeError) as err:
            if cluster is not None:
                cluster.close()
            where = (f"reach the Dask scheduler {scheduler}" if scheduler
                     else "start a local Dask cluster")
            raise DaskUnavailable(f"cannot {where}: {err}") from None
    try:
        try:
            # A scheduler with no worker would take the batches and never run them.
            client.wait_for_workers(1, timeout=10)
        except TimeoutError:
            raise DaskUnavailable(f"the Dask scheduler {scheduler} has no worker "
                                  "(start some with `dask worker ADDRESS`)") from None
        worker_count = max(1, sum(client.nthreads().values()))
        step = batch_size(len(addresses), worker_count)
        batches = [list(addresses[i:i + step]) for i in range(0, len(addresses), step)]
        # Once to every worker, not once a task; under a key of its own
        # (hash=False): the same plan scattered by the sweep before, its key
        # being released, would be lost under the new one ("lost dependencies").
        [shared_plan] = client.scatter([plan], broadcast=True, hash=False)
        # Keys of this sweep's own: a shared cluster must not take one
        # sweep's batch for another's.
        prefix = f"bootemu-sweep-{uuid.uuid4().hex}"
        futures = [client.submit(boot_batch, shared_plan, batch, key=f"{prefix}-{i}")
                   for i, batch in enumerate(batches)]
        index_of = {future.key: i for i, future in enumerate(futures)}
        done: dict[int, list[SweepResult]] = {}
        out: list[SweepResult] = []
        next_batch = 0  # the first batch not yet in ``out``
        pending = set(futures)
        while pending and not (stop is not None and stop.is_set()):
            finished = [future for future in pending if future.done()]
            if not finished:
                time.sleep(_POLL_SECONDS)
                continue
            for future in finished:
                pending.discard(future)
                try:
                    results = future.result()
                except Exception as err:  # a worker lost, a batch cancelled elsewhere
                    raise DaskUnavailable(f"a batch of boots failed on the Dask cluster: "
                                          f"{type(err).__name__}: {err}") from None
                done[index_of[future.key]] = results
                if progress is not None:
                    progress(len(results))
            # The batches now complete from the front, in order.
            while next_batch in done:
                results = done.pop(next_batch)
                out.extend(results)
                next_batch += 1
        if pending and cluster is not None:
            for pid in worker_pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif pending:
            # Another's cluster: its workers stay; the batches not started
            # are dropped, and a running one ends with its last boot.
            client.cancel(list(pending))
        return out
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()

