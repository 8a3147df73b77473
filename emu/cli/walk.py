"""``bootemu walk``: explain one translation, level by level, at a point of the boot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from emu.arch.mmu.walk import Access, Fault, format_walk
from emu.board.spec import BootSpec
from emu.cli.interrupts import RunInterrupter
from emu.cli.options import TARGET_HELP, Address, input_errors, source_options
from emu.machine.inspect import walk_at
from emu.machine.machine import Machine
from emu.machine.targets import DEFAULT_TARGET, run_to_target
from emu.report.ending import RunEnd


@click.command()
@click.argument("va", type=Address())
@source_options
@click.option("--regime", type=click.Choice(["el2", "el1"]), default=None,
              help="Translation regime [default: the one the CPU is in at that point].")
@click.option("--at", "at", default=DEFAULT_TARGET, show_default=True, metavar="TARGET",
              help=f"Run the boot to this point first; the walk uses the tables then: "
                   f"{TARGET_HELP}.")
@click.option("--access", type=click.Choice([a.value for a in Access]), default="read",
              show_default=True, help="Access kind, for the permission check.")
@click.option("--json", "as_json", is_flag=True, help="Print the walk as JSON.")
@input_errors
def walk(va: int, source: Path, load_address: int | None, defines: tuple[str, ...],
         include_dirs: tuple[Path, ...], boot: BootSpec, regime: str | None, at: str,
         access: str, as_json: bool) -> None:
    """Explain the translation of VA level by level at a point of the boot.

    Each level shows the table address, the index, the descriptor and what it
    is; the last line gives the physical address with permissions and memory
    attributes, or the fault and its level.

    SIGINT (Ctrl-C) or SIGTERM during the run to --at stops it where it is:
    a line on stderr says so ("interrupted by SIGINT at #N (symbol)") before
    the walk, which then uses the tables of that point.

    \b
    Example: bootemu walk 0x8000200000 --at primary_switched
    Exit status: 0 the VA translates, 1 it faults, 2 usage or input error;
                 130 SIGINT (Ctrl-C), 143 SIGTERM during the run to --at.
    """
    # Entered first: a signal that comes while the image loads stops the run
    # at its start rather than being lost.
    with RunInterrupter() as interrupter:
        image, board = boot.load()
        machine = Machine(image, board)
        interrupter.watch(machine)
        ran = run_to_target(machine, at)
    stop = ran.stop
    if interrupter.stopped:
        # Before the walk: it is not at --at but where the run was stopped.
        short = "" if ran.reached else f" before --at {ran.target or at}"
        click.echo(f"bootemu: {interrupter.reason()} at #{stop.index} "
                   f"({image.symbolize(stop.pc)}){short}; the walk uses the tables there",
                   err=True)
    result = walk_at(machine, va, regime, Access(access))
    end = RunEnd.of(stop, image, ran.pa, ran.target)
    where = f"at #{stop.index} {end.symbol} ({stop.message})"
    if as_json:
        click.echo(json.dumps({
            "va": va,
            "at": where,
            "end": end.to_dict(),
            "result": "fault" if isinstance(result, Fault) else "translation",
            "pa": None if isinstance(result, Fault) else result.pa,
            "fault": result.describe() if isinstance(result, Fault) else None,
            "steps": [{"level": step.level, "table": step.table_address, "index": step.index,
                       "descriptor": step.descriptor, "kind": step.kind}
                      for step in result.steps],
            "lines": format_walk(result),
        }, indent=2))
    else:
        click.echo(f"walk of VA {va:#x} {where}")
        for line in format_walk(result):
            click.echo(f"  {line}")
    sys.exit(interrupter.exit_status(1 if isinstance(result, Fault) else 0))

