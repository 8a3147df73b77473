"""``bootemu check``: boot an image with every rule watching, print the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from emu.board.spec import BootSpec
from emu.checks.run import check_image
from emu.cli.interrupts import RunInterrupter, timeout_option
from emu.cli.options import TARGET_HELP, events_option, input_errors, source_options
from emu.machine.machine import DEFAULT_MAX_INSNS
from emu.machine.targets import DEFAULT_TARGET
from emu.report.check_report import format_text, to_json
from emu.report.mmu_plot import FORMATS, PlotError, plot_run


@click.command()
@source_options
@click.option("--until", default=DEFAULT_TARGET, show_default=True, metavar="TARGET",
              help=f"Where the boot is complete; the run stops there: {TARGET_HELP}.  "
                   "'exit': when the program exits through semihosting, with status 0 "
                   "(also the default when there is no start_c).")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget for the run.")
@events_option(what="the MMU timeline shows (outside MMU-transition windows, each "
                   "cache-maintenance loop is one row and repeated stretches are shown once)")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE",
              help="Also draw the boot's MMU story along the instruction count (EL, "
                   "SCTLR.M, the tables each TTBR points at, windows, TLBIs, findings) "
                   "to FILE.png, .svg or .pdf (needs the plot extra: matplotlib).")
@timeout_option
@input_errors
def check(source: Path, load_address: int | None, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], boot: BootSpec, until: str, max_insns: int,
          events: frozenset[str], as_json: bool, plot: Path | None,
          timeout: float | None) -> None:
    """Boot SOURCE (a source, ELF, arm64 Image or raw binary) and check every MMU
    transition against the rules.

    Prints the MMU timeline (instruction count, PC as VA and PA, symbol, event,
    regime state; --events picks what it shows, cache-maintenance loops are
    one row each), each MMU-transition window instruction by instruction, the
    findings, and a last line with the verdict, where the run ended (VA, PA,
    symbol), why, and what was judged up to there.

    The verdict is one word, the same in --json ("verdict") and in `bootemu
    sweep`: clean, findings (a rule fired), boot-failed (the failure routine,
    or a non-zero exit), incomplete (stopped before --until).

    With --plot FILE the same story is drawn as a picture, for a review or a
    bug report.

    \b
    Exit status: 0 clean (reached --until, no rule fired);
                 1 findings, boot-failed or incomplete;
                 2 usage or input error;
                 124 --timeout ran out, 130 SIGINT (Ctrl-C), 143 SIGTERM:
                 the report covers the run up to there.
    """
    if plot is not None and plot.suffix.lower().lstrip(".") not in FORMATS:
        raise click.BadParameter(f"{plot}: the picture is written as .png, .svg or .pdf",
                                 param_hint="--plot")
    # Entered first: a signal that comes while the image loads stops the run
    # at its start rather than being lost.
    with RunInterrupter(timeout=timeout) as interrupter:
        image, board = boot.load()
        run = check_image(image, until=until, max_insns=max_insns, board=board,
                          started=interrupter.watch)
    if plot is not None:
        try:
            plot_run(run, plot)
        except (PlotError, OSError) as err:
            raise click.ClickException(f"{plot}: {err}") from None
    if as_json:
        click.echo(json.dumps(to_json(run, events, source=str(source)), indent=2))
    else:
        click.echo(format_text(run, source=str(source), events=events), nl=False)
    if interrupter.stopped:
        click.echo(f"bootemu: {interrupter.reason()} at #{run.stop.index} "
                   f"({image.symbolize(run.stop.pc)}); the report covers the run up to there",
                   err=True)
    sys.exit(interrupter.exit_status(run.exit_code))

