"""``bootemu trace``: boot an image and print every instruction it executes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from emu.board.spec import BootSpec
from emu.cli.options import TARGET_HELP, events_option, input_errors, source_options
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.targets import DEFAULT_TARGET, run_to_target
from emu.report.ending import RunEnd, counted
from emu.report.timeline import ALL_EVENTS
from emu.report.trace import TraceLine, Tracer


@click.command()
@source_options
@click.option("--until", default=DEFAULT_TARGET, show_default=True, metavar="TARGET",
              help=f"Stop there: {TARGET_HELP}.")
@click.option("--window", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only N instructions before and after each MMU event.")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget for the run.")
@events_option(default=ALL_EVENTS,
               what="events annotate instructions (and, with --window, which events the "
                    "windows surround)")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one object per instruction.")
@input_errors
def trace(source: Path, load_address: int | None, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], boot: BootSpec, until: str, window: int | None,
          max_insns: int, events: frozenset[str], as_json: bool) -> None:
    """Print each executed instruction: count, VA, PA, symbol+offset, encoding, disassembly.

    Tracing pays a Python call per instruction; `bootemu check` does not.
    """
    image, board = boot.load()
    machine = Machine(image, board)

    def emit(line: TraceLine) -> None:
        click.echo(json.dumps(line.to_dict()) if as_json else line.format())

    tracer = Tracer(machine, emit, window=window, events=events)
    ran = run_to_target(machine, until, max_insns)
    stop = ran.stop
    tracer.flush()
    end = RunEnd.of(stop, image, ran.pa, ran.target)
    if as_json:
        click.echo(json.dumps({"stop": stop.kind.value, "index": stop.index, "pc": stop.pc,
                               "message": stop.message, "end": end.to_dict()}))
    else:
        detail = f" ({end.detail})" if end.detail else ""
        click.echo(f"stopped after {counted(stop.index, 'instruction')} at {end.where()}: "
                   f"{end.reason}{detail}")

