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
import sys
import time
from pathlib import Path

import click

from emu.board.spec import BootSpec
from emu.cli.interrupts import RunInterrupter, timeout_option
from emu.cli.options import TARGET_HELP, events_option, input_errors, source_options
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import StopKind
from emu.machine.targets import DEFAULT_TARGET, run_to_target
from emu.report.ending import RunEnd, counted
from emu.report.qemu_log import LOG_ITEMS, QemuStyleLog, log_line, parse_filter, parse_log_items
from emu.report.tarmac import TarmacTracer
from emu.report.timeline import ALL_EVENTS
from emu.report.trace import Tracer

REACHED = 0
NOT_REACHED = 1
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

    def __init__(self, machine: Machine, fd: int | None = None) -> None:
        self.machine = machine
        self.fd = sys.stdout.fileno() if fd is None else fd
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
                data = data[os.write(self.fd, data):]
        except BrokenPipeError:
            self.closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.fd)
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
@click.option("--tarmac", is_flag=True,
              help="A Tarmac trace, the format of Arm's Fast Models that Arm's Tarmac Trace "
                   "Utilities (tarmac-browser, tarmac-calltree, ...) read: an IT line per "
                   "instruction (VA:PA, encoding, EL, disassembly), R lines for the registers "
                   "it changed (X30 after every BL, the SP, CPSR, translation system "
                   "registers).  The stop record goes to stderr.  docs/tarmac.md lists the "
                   "lines.  (--format names what SOURCE is.)")
@click.option("--memory", is_flag=True,
              help="With --tarmac: MR/MW lines for each load and store to RAM (size, "
                   "VA:PA, value).")
@click.option("--log", "log_items", default="exec", show_default=True, metavar="ITEMS",
              help="What the log holds, as QEMU's -d items: a comma list of "
                   + "; ".join(f"{name}: {what}" for name, what in LOG_ITEMS.items())
                   + ".  Each cpu/int/mmu line names its instruction's #index and "
                     "follows that instruction's line.")
@click.option("--log-file", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              default=None, metavar="FILE",
              help="Write the log to FILE instead of stdout (as QEMU's -D); a one-line "
                   "summary goes to stderr.")
@click.option("--filter", "filter_spec", default=None, metavar="RANGES",
              help="Only the exec and cpu lines of instructions at these VAs (as QEMU's "
                   "-dfilter): a comma list of START..END, START+SIZE or SYMBOL (from it to "
                   "the next symbol, at its link address and its physical alias); the "
                   "instructions left out are gap lines.")
@timeout_option
@input_errors
def trace(source: Path, load_address: int | None, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], boot: BootSpec, until: str, window: int | None,
          max_insns: int, events: frozenset[str], as_json: bool, pc_only: bool,
          tarmac: bool, memory: bool, log_items: str, log_file: Path | None,
          filter_spec: str | None, timeout: float | None) -> None:
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
                 124 --timeout ran out, 130 SIGINT (Ctrl-C), 143 SIGTERM.
    """
    chosen = [name for name, on in (("--json", as_json), ("--pc-only", pc_only),
                                    ("--tarmac", tarmac)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} cannot be combined: each is a layout")
    if memory and not tarmac:
        raise click.UsageError("--memory needs --tarmac (the other layouts have no memory lines)")
    if tarmac and window is not None:
        raise click.UsageError("--window cannot be combined with --tarmac: a Tarmac trace "
                               "has every instruction (its tools follow calls and registers)")
    try:
        items = parse_log_items(log_items)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--log") from None
    if tarmac and items != {"exec"}:
        raise click.UsageError("--log cannot be combined with --tarmac: Tarmac has its own lines")
    if filter_spec is not None and window is not None:
        raise click.UsageError("--filter and --window cannot be combined: each picks the "
                               "instructions shown")
    # First: a signal that comes while the image loads stops the run at its
    # start rather than being lost.  SIGINT, SIGTERM and --timeout stop the
    # run between translation blocks: no KeyboardInterrupt unwinds through
    # Unicorn, and no line is left half written.  A second signal ends the
    # program at once.
    interrupter = RunInterrupter(timeout=timeout).__enter__()
    try:
        image, board = boot.load()
        ranges = None
        if filter_spec is not None:
            try:
                ranges = parse_filter(filter_spec, image)
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint="--filter") from None
        machine = Machine(image, board)
        fd = None
        if log_file is not None:
            # An OSError names the file: one line and status 2 (input_errors).
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        out = _Output(machine, fd)

        layout = "json" if as_json else "pc" if pc_only else "text"
        tracer: Tracer | TarmacTracer | None = None
        if tarmac:
            tracer = TarmacTracer(machine, lambda line: out.write(line + "\n"), memory=memory)
        elif "exec" in items:
            tracer = Tracer(machine, out.write, window=window, events=events, layout=layout,
                            address_filter=ranges)
        log = None
        if items - {"exec"}:
            exec_tracer = tracer if isinstance(tracer, Tracer) else None

            def emit(index: int, item: str, text: str) -> None:
                line = log_line(index, item, text, as_json)
                if exec_tracer is not None:
                    exec_tracer.add_detail(index, line)
                else:
                    out.write(line)

            log = QemuStyleLog(machine, items, emit, ranges)
        interrupter.watch(machine)
    except BaseException:
        interrupter.__exit__(None, None, None)
        raise
    try:
        try:
            ran = run_to_target(machine, until, max_insns)
        finally:
            interrupter.__exit__(None, None, None)
        stop = ran.stop
        if isinstance(tracer, TarmacTracer):
            tracer.finish()
        elif tracer is not None:
            tracer.flush()
        if log is not None:
            log.detach()
        end = RunEnd.of(stop, image, ran.pa, ran.target)
        if as_json:
            out.write(json.dumps({"stop": stop.kind.value, "index": stop.index, "pc": stop.pc,
                                  "message": stop.message, "reached": ran.reached,
                                  "end": end.to_dict()}) + "\n")
        else:
            detail = end.detail if stop.kind is not StopKind.INTERRUPTED else None
            detail = f" ({detail})" if detail else ""
            record = (f"stopped after {counted(stop.index, 'instruction')} at {end.where()}: "
                      f"{end.reason}{detail}\n")
            if tarmac:  # a Tarmac file holds Tarmac lines only
                out.flush()
                sys.stderr.write(f"bootemu: {record}")
            else:
                out.write(record)
                if log_file is not None:
                    sys.stderr.write(f"bootemu: log in {log_file}; {record}")
    finally:
        out.flush()
        if fd is not None:
            os.close(fd)
    if out.closed:
        sys.exit(REACHED)
    sys.exit(interrupter.exit_status(REACHED if ran.reached else NOT_REACHED))
