"""``bootemu sweep``: boot a source at many load addresses, in parallel, and tabulate."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import click

from emu.analysis.layout import get_preset
from emu.asm.assembler import assemble_file
from emu.cli.interrupts import RunInterrupter
from emu.cli.options import (
    BUNDLED_SOURCE,
    TARGET_HELP,
    define_option,
    include_option,
    input_errors,
    layout_preset_option,
    one_line_error,
    parse_defines,
)
from emu.machine.machine import DEFAULT_MAX_INSNS
from emu.machine.targets import DEFAULT_TARGET

# emu.analysis.sweep and emu.analysis.plot are imported inside the command, so that the
# other commands do not pay for them.


@click.command()
@click.argument("source", required=False, default=str(BUNDLED_SOURCE),
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--load-addresses", "addresses_text", required=True,
              metavar="RANGE|LIST|PRESET",
              help="START:END[:STEP] (END exclusive, STEP default 2M, both 2 MiB aligned; "
                   "K/M/G/T suffixes allowed), a comma list of addresses, ranges and presets, "
                   "or a preset: qemu-virt, juno-bank2, above-1tib, slot1 (1 GiB stride), "
                   "first-2tib (512 MiB stride).")
@layout_preset_option(multiple=True)
@define_option("Preprocessor definition, applied after each preset's (repeatable).")
@include_option("Extra include directory for #include (repeatable).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Worker processes [default: one per CPU].")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local",
              show_default=True,
              help="Where the boots run: local worker processes (-j), or a Dask cluster "
                   "(--scheduler; without it, a local Dask cluster of -j processes). Dask "
                   "needs the dask extra: pip install 'bootemu[dask]'.")
@click.option("--scheduler", metavar="ADDRESS",
              help="With --executor dask: the scheduler of a running cluster, e.g. "
                   "tcp://10.0.0.5:8786 (`dask scheduler` prints it).")
@click.option("--until", default=DEFAULT_TARGET, show_default=True, metavar="TARGET",
              help=f"Where each boot is complete: {TARGET_HELP}.")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget of each boot.")
@click.option("--json", "as_json", is_flag=True, help="One JSON list of per-address results.")
@click.option("--csv", "as_csv", is_flag=True, help="Per-address results as CSV, with a header.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.png", help="Also draw verdict per load address and layout "
                                       "(needs matplotlib).")
@input_errors
def sweep(source: Path, addresses_text: str, layout_names: tuple[str, ...],
          defines: tuple[str, ...], include_dirs: tuple[Path, ...], jobs: int | None,
          executor: str, scheduler: str | None, until: str, max_insns: int, as_json: bool,
          as_csv: bool, plot_path: Path | None) -> None:
    """Boot SOURCE at many load addresses, in parallel, and say which ones work.

    Each boot is a full `bootemu check`, and its verdict is check's word:
    `clean`, `findings` (the rules that fired beside it), `boot-failed` (the
    failure code's name beside it), `incomplete`; or, for a load address not
    booted, `beyond-pa-range` (the image would not be below the CPU's 44-bit
    physical address size) or `error`.  With several --layout presets, SOURCE
    is swept once per preset.  The text report says first which layout-wide
    rules fired at every address (layout-slot0: the image linked inside the
    identity area), then groups consecutive addresses with the same outcome
    of their own (verdict, rules and failure, those rules left aside).
    `bootemu layout --clashes` gives the same answer from the layout alone.

    On a Dask cluster (--executor dask, the dask extra) the addresses go out
    in batches of up to 2,000 a task, and the results come back in order:

    \b
      dask scheduler                                   # prints tcp://HOST:8786
      dask worker tcp://HOST:8786 --nworkers 2 --nthreads 1   # on each machine
      bootemu sweep --executor dask --scheduler tcp://HOST:8786 --load-addresses 0:2T

    Progress is a bar on a terminal, else a line on stderr every 10 s.

    \b
    SIGINT (Ctrl-C) or SIGTERM stops the sweep at once: the workers are
    terminated (a cluster of --scheduler's keeps its workers; batches not
    started are cancelled) and the report holds the load addresses booted
    until then (for Dask, whole batches).

    \b
    Exit status: 0 every boot clean; 1 any other verdict; 2 usage or input error;
                 130 SIGINT, 143 SIGTERM (the results so far are reported).
    """
    from emu.analysis.dask_sweep import DaskUnavailable
    from emu.analysis.plot import PlotError, ensure_plotting, plot_sweep
    from emu.analysis.sweep import (
        CLEAN,
        SweepError,
        default_jobs,
        layout_wide_rules,
        parse_load_addresses,
        sweep_program,
        verdict_counts,
        verdict_runs,
    )
    from emu.checks import ALL_CHECKS

    if as_json and as_csv:
        raise one_line_error("--json and --csv: choose one")
    if scheduler is not None and executor != "dask":
        raise one_line_error("--scheduler goes with --executor dask")
    try:
        addresses = parse_load_addresses(addresses_text)
    except SweepError as err:
        raise one_line_error(f"--load-addresses: {err}") from None
    if plot_path is not None:
        try:
            ensure_plotting()
        except PlotError as err:
            raise one_line_error(str(err)) from None
    user_defines = parse_defines(defines)
    # Assemble every variant before booting anything, so an error comes first.
    programs = {}
    for name in layout_names or (None,):
        preset = get_preset(name) if name else None
        merged = {**(preset.defines if preset else {}), **user_defines}
        programs[name] = assemble_file(source, defines=merged, include_dirs=list(include_dirs))

    workers = jobs or default_jobs()
    total = len(addresses) * len(programs)
    show_bar = sys.stderr.isatty() and total >= 32
    results = {}
    started = time.perf_counter()
    # SIGINT and SIGTERM stop the sweep: no boot starts, the workers are
    # terminated, and the table holds the addresses booted so far.
    with RunInterrupter() as interrupter, click.progressbar(
            length=total, label="booting", file=sys.stderr, hidden=not show_bar) as bar:
        progress = bar.update if show_bar else _ProgressLines(total, started)
        for name, program in programs.items():
            try:
                results[name] = sweep_program(
                    program, addresses, include_dirs=list(include_dirs), jobs=workers,
                    progress=progress, until=until, max_insns=max_insns, layout=name,
                    stop=interrupter.stop_event, executor=executor, scheduler=scheduler)
            except (DaskUnavailable, SweepError) as err:
                raise one_line_error(str(err)) from None
            if interrupter.stopped:
                break
    elapsed = time.perf_counter() - started
    every = [result for rows in results.values() for result in rows]

    if plot_path is not None:
        try:
            plot_sweep({name or source.name: rows for name, rows in results.items()},
                       plot_path)
        except PlotError as err:
            raise one_line_error(str(err)) from None

    if as_json:
        click.echo(json.dumps([result.to_dict() for result in every], indent=1))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["layout", "load_address", "verdict", "failure_code", "failure_name",
                         "rules", "executed", "message", "layout_rules", "address_verdict"])
        for r in every:
            writer.writerow([r.layout or "", f"{r.load_address:#x}", r.verdict,
                             "" if r.failure_code is None else r.failure_code,
                             r.failure_name or "", "+".join(r.rules), r.executed, r.message,
                             "+".join(r.layout_rules), r.address_verdict])
    else:
        width = max(len(f"{a:#x}") for a in addresses)
        for name, rows in results.items():
            title = f"layout {name}" if name else "as assembled"
            click.echo(f"sweep {source} ({title}): {len(rows)} load address(es)")
            # What the layout gets wrong wherever the image loads, once; then
            # what each load address gets apart from that.
            for rule in layout_wide_rules(rows):
                title_of = next(c.title for c in ALL_CHECKS if c.rule_id == rule)
                click.echo(f"  layout-wide, at every load address booted: [{rule}] {title_of}")
            for run in verdict_runs(rows, per_address=True):
                span = (f"{run.first:#x}" if run.first == run.last
                        else f"{run.first:#x} - {run.last:#x}")
                click.echo(f"  {span:<{2 * width + 3}}  {run.count:>6} boot(s)  {run.outcome}")
                if run.verdict != CLEAN:
                    first = next(r for r in rows if r.load_address == run.first)
                    click.echo(f"  {'':<{2 * width + 3}}  {first.message}")
            counts = ", ".join(f"{verdict} {count}" for verdict, count
                               in verdict_counts(rows).items())
            click.echo(f"  verdicts: {counts}\n")
        clean = sum(1 for r in every if r.clean)
        where = (f"{workers} worker(s)" if executor == "local"
                 else f"Dask at {scheduler}" if scheduler
                 else f"a local Dask cluster of {workers} worker(s)")
        click.echo(f"{clean} of {len(every)} boot(s) clean; {where}, "
                   f"{elapsed:.1f} s ({len(every) / max(elapsed, 1e-9):.0f} boots/s)")
        if plot_path is not None:
            click.echo(f"verdicts drawn in {plot_path}")
    if interrupter.stopped:
        click.echo(f"bootemu: {interrupter.reason()} after {len(every)} of {total} boot(s); "
                   "the results hold the load addresses booted before it", err=True)
    sys.exit(interrupter.exit_status(0 if all(r.clean for r in every) else 1))



class _ProgressLines:
    """Progress when stderr is not a terminal: a line every :attr:`EVERY`
    seconds of a long sweep (boots done, rate, time left), none for a short one."""

    EVERY = 10.0

    def __init__(self, total: int, started: float) -> None:
        self._total = total
        self._started = started
        self._done = 0
        self._next = started + self.EVERY

    def __call__(self, count: int) -> None:
        self._done += count
        now = time.perf_counter()
        if now < self._next or self._done >= self._total:
            return
        self._next = now + self.EVERY
        rate = self._done / max(now - self._started, 1e-9)
        left = (self._total - self._done) / max(rate, 1e-9)
        click.echo(f"bootemu: sweep: {self._done} of {self._total} boot(s), "
                   f"{rate:.0f} boots/s, about {left:.0f} s left", err=True)
