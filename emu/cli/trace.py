"""``bootemu trace``: boot an image and print every instruction it executes.

The lines come from :class:`~emu.report.trace.Tracer`, a batch at a time (a
native hook logs the instructions; no Python call per instruction), and are
written a batch at a time.  At the edges: a reader that closes the pipe (``| head``) ends the trace
quietly, with status 0; Ctrl-C stops the run between translation blocks
(:meth:`~emu.machine.machine.Machine.interrupt`), so the trace ends with
complete lines and its stop record, and status 130.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from emu.board.spec import BootSpec
from emu.cli.options import TARGET_HELP, events_option, input_errors, source_options
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import StopKind
from emu.machine.targets import DEFAULT_TARGET, run_to_target
from emu.report.ending import RunEnd, counted
from emu.report.timeline import ALL_EVENTS
from emu.report.trace import Tracer

REACHED = 0
NOT_REACHED = 1
INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports a program Ctrl-C ended
BUFFER_SIZE = 1 << 16  # characters gathered before they are written
FLUSH_EVERY = 0.2  # seconds


class _Output:
    """Writes the trace to stdout as the tracer hands it over (whole lines),
    until the reader goes away.

    The text is written with os.write, in a loop over partial writes: a large
    write to a full pipe that a signal (Ctrl-C) interrupts is partial, and
    CPython 3.11's buffered stdout then drops the rest.  Small pieces are
    gathered up to BUFFER_SIZE; the first lines go out at once, and nothing
    waits longer than FLUSH_EVERY seconds for the next piece.

    When the reader closes the pipe (``bootemu trace | head``), stdout is
    pointed at /dev/null, so that neither a later write nor Python's flush at
    exit fails, and the machine is asked to stop: the trace ends quietly.
    """

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.closed = False
        self._pieces: list[str] = []
        self._size = 0
        self._flushed: float | None = None  # when the output was last written out
        sys.stdout.flush()  # nothing of Python's own buffer may come after the trace
        self._encoding = sys.stdout.encoding or "utf-8"
        self._errors = sys.stdout.errors or "strict"

    def write(self, text: str) -> None:
        """Write ``text``: complete lines, each ending in a newline."""
        if self.closed:
            return
        if len(text) >= BUFFER_SIZE:
            self.flush()  # what came before it first; a large piece is not copied again
            self._write(text)
            return
        self._pieces.append(text)
        self._size += len(text)
        if (self._size >= BUFFER_SIZE or self._flushed is None
                or time.monotonic() - self._flushed >= FLUSH_EVERY):
            self.flush()

    def flush(self) -> None:
        """Write out what is gathered."""
        text = "".join(self._pieces)
        self._pieces.clear()
        self._size = 0
        self._write(text)

    def _write(self, text: str) -> None:
        self._flushed = time.monotonic()
        if self.closed or not text:
            return
        data = memoryview(text.encode(self._encoding, self._errors))
        try:
            while data:
                data = data[os.write(sys.stdout.fileno(), data):]
        except BrokenPipeError:
            self.closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            self.machine.interrupt()


@click.command()
@source_options
@click.option("--until", default=DEFAULT_TARGET, show_default=True, metavar="TARGET",
              help=f"Stop there: {TARGET_HELP}.  'exit': when the program exits through "
                   "semihosting, with status 0 (also the default when there is no start_c).")
@click.option("--window", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only N instructions before and after each MMU event; each stretch "
                   "left out (before, between or after the windows) is one line, "
                   "'... 174 instructions left out ...' ({\"gap\": 174} in --json).")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget for the run.")
@events_option(default=ALL_EVENTS,
               what="events annotate instructions (and, with --window, which events the "
                    "windows surround)")
@click.option("--json", "as_json", is_flag=True,
              help="JSON Lines: one object per instruction (or gap), the stop last.")
@click.option("--pc-only", is_flag=True,
              help="Only the count and the VA of each instruction (the fastest trace).")
@input_errors
def trace(source: Path, load_address: int | None, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], boot: BootSpec, until: str, window: int | None,
          max_insns: int, events: frozenset[str], as_json: bool, pc_only: bool) -> None:
    """Print each executed instruction: count, VA, PA, symbol+offset, encoding, disassembly.

    The last line says where and why the run stopped.  A native hook logs the
    instructions and they are printed in batches (over a million a second;
    --pc-only, several times that).

    Ctrl-C stops the run where it is: the trace ends with complete lines and
    the stop record ("it was interrupted").  A second Ctrl-C ends the program
    at once.  When the reader closes the pipe (`bootemu trace | head`), the
    trace ends there, quietly.

    \b
    Exit status: 0 the run reached --until (as for `bootemu check`), or the
                 reader closed the pipe;
                 1 it did not (an abort, a spent budget, a failure routine, ...);
                 2 usage or input error;
                 130 interrupted (Ctrl-C).
    """
    if as_json and pc_only:
        raise click.UsageError("--pc-only and --json cannot be combined")
    image, board = boot.load()
    machine = Machine(image, board)
    out = _Output(machine)

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        # The run stops between translation blocks: no KeyboardInterrupt
        # unwinds through Unicorn, and no line is left half written.  A second
        # Ctrl-C is the default one: it ends the program at once.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        machine.interrupt()

    layout = "json" if as_json else "pc" if pc_only else "text"
    tracer = Tracer(machine, out.write, window=window, events=events, layout=layout)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        ran = run_to_target(machine, until, max_insns)
        stop = ran.stop
        tracer.flush()
        end = RunEnd.of(stop, image, ran.pa, ran.target)
        if as_json:
            out.write(json.dumps({"stop": stop.kind.value, "index": stop.index, "pc": stop.pc,
                                  "message": stop.message, "reached": ran.reached,
                                  "end": end.to_dict()}) + "\n")
        else:
            detail = end.detail if stop.kind is not StopKind.INTERRUPTED else None
            detail = f" ({detail})" if detail else ""
            out.write(f"stopped after {counted(stop.index, 'instruction')} at {end.where()}: "
                      f"{end.reason}{detail}\n")
    finally:
        signal.signal(signal.SIGINT, previous)
        out.flush()
    if out.closed:
        sys.exit(REACHED)
    if stop.kind is StopKind.INTERRUPTED:
        sys.exit(INTERRUPTED)
    sys.exit(REACHED if ran.reached else NOT_REACHED)
