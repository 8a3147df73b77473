"""Many checked boots of one program: the same image at many load addresses, in parallel.

The source is assembled once, in the calling process; the :class:`Program`
is handed to worker processes (once per worker, through the pool's
initializer), and each worker places it at its load addresses and boots it
with :func:`emu.checks.run.check_image`.  One boot of ``asm/head.S`` takes a few
milliseconds, so work goes out in chunks of addresses to keep the pool's own
overhead small.

Load addresses are given as a preset name (:data:`LOAD_ADDRESS_PRESETS`), a
range ``START:END[:STEP]`` or a comma-separated list of those and single
addresses (:func:`parse_load_addresses`).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emu.asm.assembler import assemble_file
from emu.asm.program import Program
from emu.board.board import Board
from emu.board.cpu import cpu_pa_bits as board_cpu_pa_bits
from emu.checks import ALL_CHECKS
from emu.checks.run import DEFAULT_LOAD_ADDRESS, DEFAULT_TARGET, CheckRun, check_image
from emu.checks.verdict import BEYOND_PA_RANGE, BOOT_FAILED, CLEAN, ERROR, FINDINGS, INCOMPLETE
from emu.image.boot_image import ImageError
from emu.image.program import image_from_program
from emu.machine.machine import DEFAULT_MAX_INSNS
from emu.machine.targets import TargetError, resolve_target

# The verdict words are :mod:`emu.checks.verdict`'s (a boot's verdict is
# ``bootemu check``'s); they are named here too, for the sweep's users.
__all__ = [
    "BEYOND_PA_RANGE",
    "BOOT_FAILED",
    "CLEAN",
    "ERROR",
    "FINDINGS",
    "INCOMPLETE",
    "LAYOUT_WIDE_RULES",
    "LOAD_ADDRESS_PRESETS",
    "AddressPreset",
    "SweepError",
    "SweepResult",
    "VerdictRun",
    "cpu_pa_bits",
    "layout_wide_rules",
    "parse_load_addresses",
    "parse_size",
    "sweep",
    "sweep_program",
    "verdict_counts",
    "verdict_runs",
]

MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40
TWO_MIB = 2 * MIB
DEFAULT_STEP = TWO_MIB
# A sweep of more boots than this is almost certainly a typo in a RANGE
# (a million boots is about an hour and a half on two cores).
MAX_ADDRESSES = 1 << 20


class SweepError(ValueError):
    """Load addresses or sweep options that cannot be used (a user mistake)."""


# --------------------------------------------------------------------------
# Load addresses


@dataclass(frozen=True)
class AddressPreset:
    """A named set of load addresses."""

    name: str
    description: str
    addresses: tuple[int, ...]


SLOT1_STRIDE = GIB

LOAD_ADDRESS_PRESETS: dict[str, AddressPreset] = {
    preset.name: preset
    for preset in (
        AddressPreset("qemu-virt", "QEMU's virt machine: RAM at 1 GiB", (0x4000_0000,)),
        AddressPreset("juno-bank2", "Arm Juno's second DRAM bank, at 34 GiB",
                      (0x8_8000_0000,)),
        AddressPreset("above-1tib", "RAM at 1 TiB (level-0 slot 2)", (0x100_0000_0000,)),
        AddressPreset(
            "slot1",
            "all of level-0 slot 1, [512 GiB, 1 TiB), one boot per GiB (512 boots; "
            "every 2 MiB would be 262144)",
            tuple(range(0x80_0000_0000, 0x100_0000_0000, SLOT1_STRIDE)),
        ),
        AddressPreset(
            "first-2tib",
            "[0, 2 TiB), one boot per 512 MiB (4096 boots, 1024 per level-0 slot)",
            tuple(range(0, 2 * TIB, 512 * MIB)),
        ),
    )
}

_SIZE = re.compile(r"(?P<number>0[xX][0-9a-fA-F_]+|[0-9][0-9_]*)\s*(?P<unit>[KMGT]?)(?:i?B)?\Z",
                   re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": MIB, "G": GIB, "T": TIB}


def parse_size(text: str) -> int:
    """An address or size: decimal or 0x hex, underscores allowed, optional K/M/G/T suffix.

    ``0x4000_0000``, ``1G``, ``512MiB`` and ``2T`` are all accepted; units are
    binary (``1G`` is 2**30).
    """
    match = _SIZE.match(text.strip())
    if match is None:
        raise SweepError(f"'{text}' is not an address (e.g. 0x40000000, 1G, 512M)")
    return int(match.group("number"), 0) * _UNITS[match.group("unit").upper()]


def _parse_range(text: str) -> list[int]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SweepError(f"'{text}' is not a range: expected START:END or START:END:STEP")
    start, end = parse_size(parts[0]), parse_size(parts[1])
    step = parse_size(parts[2]) if len(parts) == 3 else DEFAULT_STEP
    if step <= 0:
        raise SweepError(f"range '{text}': the step must be positive")
    for what, value in (("start", start), ("step", step)):
        if value % TWO_MIB:
            raise SweepError(f"range '{text}': {what} {value:#x} is not 2 MiB aligned "
                             "(the arm64 boot protocol loads images at 2 MiB boundaries)")
    if end <= start:
        raise SweepError(f"range '{text}': END ({end:#x}) must be above START ({start:#x}); "
                         "END is exclusive")
    count = (end - start + step - 1) // step
    if count > MAX_ADDRESSES:
        raise SweepError(f"range '{text}' has {count} addresses, more than {MAX_ADDRESSES}; "
                         "use a larger STEP")
    return list(range(start, end, step))


def parse_load_addresses(text: str) -> list[int]:
    """Load addresses from a preset name, a ``START:END[:STEP]`` range, or a comma list.

    A range's END is exclusive and STEP defaults to 2 MiB; START and STEP must
    be 2 MiB aligned.  A list mixes presets, ranges and single addresses.
    The result is sorted, without duplicates.
    """
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise SweepError(f"'{text}': empty load address in the list")
    addresses: set[int] = set()
    for item in items:
        if item in LOAD_ADDRESS_PRESETS:
            addresses.update(LOAD_ADDRESS_PRESETS[item].addresses)
        elif ":" in item:
            addresses.update(_parse_range(item))
        else:
            try:
                address = parse_size(item)
            except SweepError:
                raise SweepError(
                    f"'{item}' is not an address, a START:END[:STEP] range or a preset "
                    f"({', '.join(LOAD_ADDRESS_PRESETS)})") from None
            if address % 4:
                raise SweepError(f"load address {address:#x} is not 4-byte aligned")
            addresses.add(address)
        if len(addresses) > MAX_ADDRESSES:
            raise SweepError(f"'{text}' gives more than {MAX_ADDRESSES} addresses")
    for address in addresses:
        if address >= 1 << 64:
            raise SweepError(f"load address {address:#x} is outside the 64-bit address space")
    return sorted(addresses)


# --------------------------------------------------------------------------
# Results

# The rules that judge the layout and the link address alone (the image
# linked inside the identity area): whatever the load address, they fire or
# they do not, so a sweep reports them once, apart from each address's own
# outcome.
LAYOUT_WIDE_RULES: frozenset[str] = frozenset(
    check.rule_id for check in ALL_CHECKS if check.layout_wide)


@dataclass(frozen=True)
class SweepResult:
    """The outcome of one boot of a sweep.

    ``verdict`` is one of :data:`emu.checks.verdict.VERDICTS` (``bootemu
    check``'s for a boot that ran); which rules fired is ``rules``, which
    failure code ``failure_code``/``failure_name``, and :attr:`outcome` says
    both beside the verdict.
    """

    load_address: int
    verdict: str  # clean, findings, boot-failed, incomplete, beyond-pa-range, error
    executed: int = 0
    message: str = ""
    failure_code: int | None = None
    failure_name: str | None = None
    rules: tuple[str, ...] = ()
    layout: str | None = None
    arrived: bool = False  # the boot reached its target

    @property
    def clean(self) -> bool:
        return self.verdict == CLEAN

    @property
    def layout_rules(self) -> tuple[str, ...]:
        """The rules that fired which judge the layout, not this load address."""
        return tuple(rule for rule in self.rules if rule in LAYOUT_WIDE_RULES)

    @property
    def address_rules(self) -> tuple[str, ...]:
        """The rules that fired because of this load address."""
        return tuple(rule for rule in self.rules if rule not in LAYOUT_WIDE_RULES)

    @property
    def address_verdict(self) -> str:
        """The verdict this load address would get if the layout-wide rules
        had not fired: check's precedence (findings, boot-failed, incomplete,
        clean) over :attr:`address_rules` alone."""
        if self.verdict != FINDINGS or self.address_rules:
            return self.verdict
        if self.failure_code is not None:
            return BOOT_FAILED
        return CLEAN if self.arrived else INCOMPLETE

    @property
    def address_outcome(self) -> str:
        """:attr:`outcome` for :attr:`address_verdict` and :attr:`address_rules`."""
        return self._outcome(self.address_verdict, self.address_rules)

    @property
    def outcome(self) -> str:
        """The verdict with what sets boots of that verdict apart:
        ``findings (identity-clash, layout-slot0)``, ``boot-failed
        (BOOT_ERR_MISALIGNED)``, else the verdict alone."""
        return self._outcome(self.verdict, self.rules)

    def _outcome(self, verdict: str, rules: tuple[str, ...]) -> str:
        if verdict == FINDINGS:
            return f"{FINDINGS} ({', '.join(rules)})"
        if verdict == BOOT_FAILED:
            return f"{BOOT_FAILED} ({self.failure_name or f'code {self.failure_code}'})"
        return verdict

    def to_dict(self) -> dict[str, object]:
        return {
            "load_address": self.load_address,
            "layout": self.layout,
            "verdict": self.verdict,
            "failure_code": self.failure_code,
            "failure_name": self.failure_name,
            "rules": list(self.rules),
            "layout_rules": list(self.layout_rules),
            "address_verdict": self.address_verdict,
            "executed": self.executed,
            "message": self.message,
        }


def result_of(run: CheckRun, load_address: int, layout: str | None = None) -> SweepResult:
    """One sweep result from a checked boot."""
    rules = tuple(sorted({finding.rule for finding in run.findings}))
    code = name = None
    if run.failure is not None:
        # Kept whatever the verdict: a rule (identity-clash) may explain the failure.
        code = run.failure.code
        name = run.failure.meaning.name if run.failure.meaning else None
    # The message says what is particular to this address when anything is.
    own = [finding for finding in run.findings if finding.rule not in LAYOUT_WIDE_RULES]
    if own:
        message = own[0].message
    elif run.failure is not None:
        message = run.failure.describe()
    elif run.findings:
        message = run.findings[0].message
    elif run.failure is not None:
        message = run.failure.describe()
    else:
        message = run.stop.message
    return SweepResult(load_address=load_address, verdict=run.verdict, executed=run.executed,
                       message=message, failure_code=code, failure_name=name, rules=rules,
                       layout=layout, arrived=run.arrived)


@dataclass(frozen=True)
class VerdictRun:
    """Consecutive results (in sweep order) with the same verdict, the same
    rules fired and the same failure: the same :attr:`SweepResult.outcome`."""

    first: int  # first load address
    last: int  # last load address
    count: int
    verdict: str
    outcome: str = ""


def verdict_runs(results: Iterable[SweepResult], *, per_address: bool = False
                 ) -> list[VerdictRun]:
    """Group consecutive results that share an outcome (sort the results by address first).

    ``per_address`` groups by :attr:`SweepResult.address_outcome`: what the
    load address itself gets, the layout-wide rules left aside.
    """
    runs: list[VerdictRun] = []
    for result in results:
        verdict, outcome = ((result.address_verdict, result.address_outcome) if per_address
                            else (result.verdict, result.outcome))
        if runs and runs[-1].outcome == outcome:
            last = runs[-1]
            runs[-1] = VerdictRun(last.first, result.load_address, last.count + 1, last.verdict,
                                  last.outcome)
        else:
            runs.append(VerdictRun(result.load_address, result.load_address, 1, verdict,
                                   outcome))
    return runs


def layout_wide_rules(results: Sequence[SweepResult]) -> tuple[str, ...]:
    """The layout-wide rules that fired at every boot that ran (none when no boot ran)."""
    booted = [result for result in results if result.verdict not in (BEYOND_PA_RANGE, ERROR)]
    if not booted:
        return ()
    common = set(booted[0].layout_rules)
    for result in booted[1:]:
        common &= set(result.layout_rules)
    return tuple(sorted(common))


def verdict_counts(results: Iterable[SweepResult]) -> dict[str, int]:
    """How many results have each verdict, most frequent first."""
    return dict(Counter(result.verdict for result in results).most_common())


# --------------------------------------------------------------------------
# Booting


@dataclass(frozen=True)
class _BootPlan:
    """What every worker needs to boot the program at any load address."""

    program: Program
    include_dirs: tuple[Path, ...]
    until: str | None
    max_insns: int
    pa_bits: int
    layout: str | None


def cpu_pa_bits(program: Program, include_dirs: Sequence[Path] = ()) -> int:
    """The emulated CPU's physical address size (ID_AA64MMFR0_EL1.PARange) in
    bits: the default board's CPU, as every boot of a sweep has it."""
    return board_cpu_pa_bits(Board().cpu)


def _check_target(program: Program, include_dirs: Sequence[Path], until: str | None) -> None:
    """Refuse a target the program does not have before booting anything: each
    boot would otherwise end as an ``error`` for the same mistake."""
    image = image_from_program(program, DEFAULT_LOAD_ADDRESS, include_dirs=list(include_dirs))
    try:
        resolve_target(image, until)
    except TargetError as err:
        raise SweepError(f"--until: {err}") from None


# A boot's machine lives on after it, until a full garbage collection (its
# engine's hooks hold it): a sweep's boots reserve 64 MiB of translation
# buffer each, not Unicorn's default 1 GiB, so that those waiting to be
# collected stay small, and the collector runs every 8 boots.  In a worker
# process what exists before the first boot (modules, the program) is frozen
# out of the collector's sight (gc.freeze), so a collection costs only the
# boots' garbage; not in the caller's process (-j 1), which freezing would
# keep from ever freeing what it holds now.
_SWEEP_BOARD = Board(translation_buffer=64 << 20)
_boots = 0  # boots made in this process
_frozen = False  # this is a worker process, its long-lived objects frozen


def _freeze_worker() -> None:
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True


def _boot(plan: _BootPlan, load_address: int) -> SweepResult:
    global _boots
    _boots += 1
    if _boots % 8 == 0:
        gc.collect()
    limit = 1 << plan.pa_bits
    size = len(plan.program.code)
    if load_address + size > limit:
        # Unicorn would fault on the very first fetch (or fail to map RAM at
        # all): the image cannot be in RAM the CPU can address.
        return SweepResult(
            load_address=load_address, verdict=BEYOND_PA_RANGE, layout=plan.layout,
            message=f"image [{load_address:#x}, {load_address + size:#x}) lies beyond the "
                    f"CPU's {plan.pa_bits}-bit physical address space (ends at {limit:#x})")
    try:
        image = image_from_program(plan.program, load_address,
                                   include_dirs=list(plan.include_dirs))
        run = check_image(image, until=plan.until, max_insns=plan.max_insns, board=_SWEEP_BOARD)
    except ImageError as err:
        return SweepResult(load_address=load_address, verdict=ERROR, message=str(err),
                           layout=plan.layout)
    return result_of(run, load_address, plan.layout)


# The plan of a worker process, set once by the pool's initializer.
_worker_plan: _BootPlan | None = None


def _init_worker(plan: _BootPlan) -> None:
    global _worker_plan
    _worker_plan = plan
    # Ctrl-C reaches the whole process group: the parent decides, and
    # terminates the workers (no KeyboardInterrupt tracebacks from each).  A
    # forked worker inherits the parent's handlers: SIGTERM, which terminate()
    # sends, must end it, and the parent's wakeup descriptor is not its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    _freeze_worker()


def boot_batch(plan: _BootPlan, addresses: Sequence[int]) -> list[SweepResult]:
    """Boot ``plan`` at each of ``addresses``, one after another, in a worker
    process (a Dask worker's)."""
    _freeze_worker()
    return [_boot(plan, address) for address in addresses]


def _boot_chunk(task: tuple[int, list[int]]) -> tuple[int, list[SweepResult]]:
    assert _worker_plan is not None, "worker used before its initializer ran"
    index, addresses = task
    return index, [_boot(_worker_plan, address) for address in addresses]


_POLL_SECONDS = 0.05  # how often the parent looks at ``stop`` while it waits


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts a worker in about a millisecond and shares the parent's
    # imports; elsewhere (macOS, Windows) spawn is the safe default.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def default_jobs() -> int:
    """Worker processes by default: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sweep_program(
    program: Program,
    load_addresses: Sequence[int],
    *,
    include_dirs: Sequence[Path] = (),
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    until: str | None = DEFAULT_TARGET,
    max_insns: int = DEFAULT_MAX_INSNS,
    layout: str | None = None,
    stop: threading.Event | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    dask_client: object = None,
) -> list[SweepResult]:
    """Boot an assembled program at each load address; results in the addresses' order.

    ``executor`` ``local``: ``jobs`` worker processes (default: one per CPU;
    1 boots in this process).  ``dask``: on the Dask cluster whose scheduler
    is at ``scheduler`` (or the ``dask_client`` given), or, with neither, on
    a local cluster of ``jobs`` worker processes (:mod:`emu.analysis.dask_sweep`).
    ``progress`` is called with the number of boots finished since its last
    call.  ``layout`` only labels the results.  Once ``stop`` is set (from a
    signal's watchdog, say) no boot starts, the workers are terminated, and
    the results of the addresses booted up to the first one not booted are
    returned, in order.
    """
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise SweepError(f"jobs must be at least 1, not {jobs}")
    _check_target(program, include_dirs, until)
    plan = _BootPlan(program=program, include_dirs=tuple(Path(d) for d in include_dirs),
                     until=until, max_insns=max_insns,
                     pa_bits=cpu_pa_bits(program, include_dirs), layout=layout)
    addresses = list(load_addresses)
    if executor == "dask":
        from emu.analysis.dask_sweep import sweep_on_dask

        return sweep_on_dask(plan, addresses, scheduler=scheduler, workers=jobs,
                             progress=progress, stop=stop, client=dask_client)
    if executor != "local":
        raise SweepError(f"unknown executor {executor!r} (local or dask)")
    if jobs == 1 or len(addresses) <= 1:
        results = []
        for address in addresses:
            if stop is not None and stop.is_set():
                break
            results.append(_boot(plan, address))
            if progress is not None:
                progress(1)
        return results

    jobs = min(jobs, len(addresses))
    # Chunks small enough for a smooth progress bar and even load balancing,
    # large enough that the pool's per-task cost (~0.1 ms) stays negligible.
    chunk = max(1, min(64, len(addresses) // (jobs * 8)))
    chunks = [addresses[i:i + chunk] for i in range(0, len(addresses), chunk)]
    by_chunk: dict[int, list[SweepResult]] = {}
    pool = _pool_context().Pool(processes=jobs, initializer=_init_worker, initargs=(plan,))
    try:
        finished = pool.imap_unordered(_boot_chunk, enumerate(chunks))
        while len(by_chunk) < len(chunks) and not (stop is not None and stop.is_set()):
            try:
                index, results = finished.next(timeout=_POLL_SECONDS)
            except multiprocessing.TimeoutError:
                continue
            by_chunk[index] = results
            if progress is not None:
                progress(len(results))
    finally:
        # Done, failed or stopped: no worker outlives the sweep.
        pool.terminate()
        pool.join()
    # In the addresses' order.  A stopped sweep returns the chunks done up to
    # the first one not done: a table with a hole would read as continuous.
    out: list[SweepResult] = []
    for index in range(len(chunks)):
        if index not in by_chunk:
            break
        out.extend(by_chunk[index])
    return out


def sweep(
    source: str | Path,
    load_addresses: Sequence[int],
    *,
    defines: Mapping[str, str] | None = None,
    include_dirs: Sequence[Path] = (),
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    until: str | None = DEFAULT_TARGET,
    max_insns: int = DEFAULT_MAX_INSNS,
    layout: str | None = None,
    stop: threading.Event | None = None,
) -> list[SweepResult]:
    """Assemble ``source`` once, then boot it at each load address (see :func:`sweep_program`)."""
    program = assemble_file(source, defines=defines, include_dirs=include_dirs)
    return sweep_program(program, load_addresses, include_dirs=include_dirs, jobs=jobs,
                         progress=progress, until=until, max_insns=max_insns, layout=layout,
                         stop=stop)
