"""Stopping a run on SIGINT or SIGTERM, or after ``--timeout`` seconds, promptly
and with what it gathered kept.

Unicorn runs in C.  A Python signal handler runs only once the main thread is
back in Python, which in a run of native hooks may be minutes later.  But
CPython's own C-level handler writes the signal's number to the wakeup file
descriptor at once (:func:`signal.set_wakeup_fd`): a watchdog thread reading
that descriptor asks the machine to stop (:meth:`Machine.interrupt`, which
the native block counter obeys at the next translation block, and which is
safe from any thread).  The run then ends with an ``INTERRUPTED`` stop, the
command reports what it gathered up to there, and exits 128 + the signal's
number (130 for SIGINT, 143 for SIGTERM), as a shell reports a program the
signal ended.  A second signal ends the program at once.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import click

from emu.machine.machine import Machine

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TIMED_OUT = 124  # the exit status of timeout(1) when the time ran out


class RunInterrupter:
    """A context in which SIGINT, SIGTERM and a timeout stop ``machine`` (given
    now or later with :meth:`watch`) instead of the program.

    ``signal`` is the signal that stopped the run (None: none came);
    ``timed_out`` whether ``timeout`` seconds ran out first.
    """

    def __init__(self, machine: Machine | None = None, timeout: float | None = None) -> None:
        self.machine = machine
        self.timeout = timeout
        self.signal: int | None = None
        self.timed_out = False
        self._lock = threading.Lock()
        self._previous: dict[int, object] = {}
        self._previous_wakeup = -1
        self._read_fd = self._write_fd = -1
        self._timer: threading.Timer | None = None
        self._counts: dict[int, int] = {}  # signal -> times its Python handler ran
        # Set when the run is to stop: for work that is not one machine (a sweep).
        self.stop_event = threading.Event()
        # Called (once, from the watchdog's or the timer's thread) when the run
        # is to stop: for work that waits on more than a machine (a GDB server).
        self._callbacks: list[Callable[[], None]] = []
        self._fired = False

    @property
    def stopped(self) -> bool:
        return self.signal is not None or self.timed_out

    def exit_status(self, otherwise: int) -> int:
        """128 + the signal for a run a signal stopped, :data:`TIMED_OUT` for one
        the timeout stopped, else ``otherwise``."""
        if self.signal is not None:
            return 128 + self.signal
        return TIMED_OUT if self.timed_out else otherwise

    def reason(self) -> str:
        """What stopped the run, for its report."""
        if self.signal is not None:
            return f"interrupted by {signal.Signals(self.signal).name}"
        if self.timed_out:
            return f"stopped by --timeout {self.timeout:g} s"
        return ""

    def watch(self, machine: Machine) -> None:
        """The machine to stop (one built after the context was entered)."""
        with self._lock:
            self.machine = machine
            if self.stopped:
                machine.interrupt()

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Also call ``callback`` when the run is to stop (from another thread:
        it must be safe there, and quick), or at once if it already is.  Each
        callback is called once."""
        with self._lock:
            if not self._fired:
                self._callbacks.append(callback)
                return
        callback()

    def _stop(self) -> None:
        self.stop_event.set()
        with self._lock:
            if self.machine is not None:
                self.machine.interrupt()
            self._fired = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    # -- the context ---------------------------------------------------------------

    def __enter__(self) -> RunInterrupter:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._on_signal)
        threading.Thread(target=self._watchdog, name="bootemu-signals", daemon=True).start()
        if self.timeout is not None:
            self._timer = threading.Timer(self.timeout, self._on_timeout)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        signal.set_wakeup_fd(self._previous_wakeup)
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        os.close(self._write_fd)  # the watchdog reads the end of the pipe and returns

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        # The Python-level handler: it runs when the main thread is back in
        # Python, after the watchdog has already stopped the machine.  A second
        # signal ends the program as that signal would have.
        if (self.signal is not None and self.signal != number) or self._seen_twice(number):
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)

    def _seen_twice(self, number: int) -> bool:
        count = self._counts.get(number, 0) + 1
        self._counts[number] = count
        return count > 1

    def _watchdog(self) -> None:
        read_fd = self._read_fd
        try:
            while data := os.read(read_fd, 64):
                for number in data:
                    if number in SIGNALS and self.signal is None:
                        self.signal = number
                        self._stop()
        finally:
            os.close(read_fd)

    def _on_timeout(self) -> None:
        if self.signal is None:
            self.timed_out = True
            self._stop()


# The longest --timeout: a year.  inf or 1e308 would overflow threading's wait
# (a traceback from the timer thread), so they are refused as usage errors.
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600


class _Timeout(click.FloatRange):
    """Seconds, more than 0 and at most :data:`MAX_TIMEOUT_SECONDS`; nan is refused
    too (a range lets it through, as every comparison with it is false)."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


def timeout_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--timeout SECONDS``: the wall-clock bound beside ``--max-insns``."""
    return click.option(
        "--timeout", type=_Timeout(min=0, min_open=True, max=MAX_TIMEOUT_SECONDS),
        default=None,
        metavar="SECONDS",
        help="Stop the run after SECONDS of wall-clock time, as Ctrl-C would, and "
             "report what it did up to there (exit status 124).  SIGINT and SIGTERM "
             "stop it the same way (exit status 130, 143).")(func)
