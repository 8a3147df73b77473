"""``bootemu run``: boot an image without checking, the guest's output on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from emu.board.spec import BootSpec
from emu.cli.interrupts import RunInterrupter, timeout_option
from emu.cli.options import TARGET_HELP, input_errors, source_options
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import StopKind
from emu.machine.targets import EXIT_TARGET, run_to_target
from emu.report.ending import RunEnd, counted


@click.command("run")
@source_options
@click.option("--until", default=EXIT_TARGET, show_default=True, metavar="TARGET",
              help=f"Stop there: {TARGET_HELP}; 'exit': when the program exits through "
                   "semihosting.")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget for the run.")
@click.option("--json", "as_json", is_flag=True,
              help="At the end, one JSON object: stop, where and why, exit status, output.")
@timeout_option
@input_errors
def run_command(source: Path, load_address: int | None, defines: tuple[str, ...],
                include_dirs: tuple[Path, ...], boot: BootSpec, until: str, max_insns: int,
                as_json: bool, timeout: float | None) -> None:
    """Boot SOURCE and run it, without checking; the guest's output goes to stdout.

    What the program prints through the UART and semihosting appears as it
    comes; how the run ended is one line on stderr: where the PC was (VA, PA,
    symbol), why the run stopped, and how many instructions ran (unchecked:
    `bootemu check` judges them).

    \b
    Exit status: 0 the run reached --until (for 'exit': the program exited
                 with status 0); 1 it did not; 2 usage or input error;
                 124 --timeout ran out, 130 SIGINT (Ctrl-C), 143 SIGTERM.
    """
    # Entered first: a signal that comes while the image loads stops the run
    # at its start rather than being lost.
    with RunInterrupter(timeout=timeout) as interrupter:
        image, board = boot.load()
        machine = Machine(image, board)
        interrupter.watch(machine)

        def echo(_device: str, data: bytes) -> None:
            # Bytes as the guest wrote them, flushed at once: output as it comes.
            stream = getattr(sys.stdout, "buffer", None)
            if stream is None:
                sys.stdout.write(data.decode(errors="replace"))
            else:
                stream.write(data)
            sys.stdout.flush()

        if not as_json:
            machine.console.listeners.append(echo)
        ran = run_to_target(machine, until, max_insns)
    stop = ran.stop
    # A stop in the failure routine is an arrival there, not at the target.
    failed = stop.kind is StopKind.ARRIVED and stop.pc in ran.failure_exits
    end = RunEnd.of(stop, image, ran.pa, image.failure_symbol if failed else ran.target)
    if as_json:
        click.echo(json.dumps({
            "image": image.name, "stop": stop.kind.value, "pc": stop.pc, "index": stop.index,
            "message": stop.message, "exit_status": stop.status, "reached": ran.reached,
            "end": end.to_dict(),
            # ``bootemu run`` proves nothing: no rule watches it.
            "proved": {"instructions": 0, "executed": stop.index, "rules": []},
            "output": machine.console.text(),
        }, indent=2))
    else:
        click.echo(f"bootemu: {end.describe()}; {counted(stop.index, 'instruction')} run, none "
                   "checked (bootemu check judges them)", err=True)
    if interrupter.stopped:
        click.echo(f"bootemu: {interrupter.reason()} at #{stop.index} "
                   f"({image.symbolize(stop.pc)})", err=True)
    sys.exit(interrupter.exit_status(0 if ran.reached else 1))

