"""QEMU as the reference machine: run an image, capture its serial console.

:func:`run_qemu` starts Debian's ``qemu-system-aarch64`` (package
``qemu-system-arm``) with nothing but what is asked for::

    qemu-system-aarch64 -nodefaults -no-user-config -display none -serial stdio
        -no-reboot -M MACHINE -cpu CPU -m MEMORY [-kernel F] [-bios F] [-dtb F]
        [-append TEXT]

reads the first UART's output as it comes, and stops QEMU as soon as a
milestone (a regular expression) has been printed, when a timeout runs out,
or when QEMU exits by itself (``-no-reboot``: a guest's power-off, reset or
panic-reboot ends it).  The test calling it is skipped, saying why, when
``qemu-system-aarch64`` is not installed (``make tools`` installs it).

:func:`console_lines` splits console text into lines to compare runs of one
image on two emulators.
"""

from __future__ import annotations

import codecs
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

QEMU = "qemu-system-aarch64"
QUIT_GRACE = 5.0  # seconds QEMU gets to exit after SIGTERM before SIGKILL

# Linux's printk time prefix: "[%5lu.%06lu] " at the start of a line.
PRINTK_TIME = re.compile(r"^\[\s*\d+\.\d+\] ")


def qemu_missing() -> str | None:
    """Why QEMU cannot run here, or None."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found (Debian: qemu-system-arm; `make tools` installs it)"
    return None


@dataclass(frozen=True)
class QemuRun:
    """What one QEMU run printed on its serial console, and how it ended."""

    command: list[str]
    output: str               # the console text, as printed (decoded as UTF-8)
    matched: bool             # the milestone was printed (then QEMU was stopped)
    exited: bool              # QEMU exited by itself, before a milestone or the timeout
    returncode: int | None    # QEMU's exit status when it exited by itself
    timed_out: bool
    stderr: str               # QEMU's own messages
    seconds: float

    def describe(self) -> str:
        """How the run ended, with the end of its output, for assertion messages."""
        if self.matched:
            ending = "milestone printed"
        elif self.exited:
            ending = f"QEMU exited with status {self.returncode}"
        else:
            ending = "timed out"
        return (f"{' '.join(self.command)}\n{ending} after {self.seconds:.1f} s\n"
                f"stderr: {self.stderr[-1000:]}\nconsole (end): {self.output[-2000:]}")


def qemu_command(*, machine: str = "virt", cpu: str = "cortex-a72", memory: str = "128",
                 kernel: Path | None = None, bios: Path | None = None,
                 dtb: Path | None = None, append: str | None = None,
                 extra: tuple[str, ...] = ()) -> list[str]:
    """The QEMU command line :func:`run_qemu` runs."""
    command = [QEMU, "-nodefaults", "-no-user-config", "-display", "none",
               "-serial", "stdio", "-no-reboot", "-M", machine, "-cpu", cpu, "-m", memory]
    for option, value in (("-kernel", kernel), ("-bios", bios), ("-dtb", dtb)):
        if value is not None:
            command += [option, str(value)]
    if append is not None:
        command += ["-append", append]
    return [*command, *extra]


def run_qemu(*, until: str | re.Pattern[str] | None = None, timeout: float = 60.0,
             machine: str = "virt", cpu: str = "cortex-a72", memory: str = "128",
             kernel: Path | None = None, bios: Path | None = None, dtb: Path | None = None,
             append: str | None = None, extra: tuple[str, ...] = ()) -> QemuRun:
    """Run QEMU on an image and return its console output.

    ``until``: a regular expression; QEMU is stopped as soon as the console
    text matches it (searched over the whole text so far, so it may span
    lines).  Without it, QEMU runs until it exits or ``timeout`` seconds pass.
    ``machine`` is ``-M``'s value (``virt,virtualization=on,gic-version=2``),
    ``memory`` ``-m``'s; ``kernel``, ``bios``, ``dtb`` and ``append`` give
    those options; ``extra`` is appended to the command line.
    """
    reason = qemu_missing()
    if reason is not None:
        pytest.skip(reason)
    milestone = re.compile(until) if isinstance(until, str) else until
    command = qemu_command(machine=machine, cpu=cpu, memory=memory, kernel=kernel,
                           bios=bios, dtb=dtb, append=append, extra=extra)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = ""
    matched = timed_out = False
    start = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=errors)
        assert process.stdout is not None
        stream = process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            while True:
                left = start + timeout - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not selector.select(left):
                    continue
                chunk = os.read(stream, 65536)
                if not chunk:
                    break  # QEMU closed its stdout: it is exiting
                text += decoder.decode(chunk)
                if milestone is not None and milestone.search(text):
                    matched = True
                    break
        exited = not (matched or timed_out)
        returncode: int | None = None
        if exited:
            try:
                returncode = process.wait(timeout=QUIT_GRACE)
            except subprocess.TimeoutExpired:  # its output closed, but it lingers
                exited = False
        if not exited:
            _stop(process)
        text += decoder.decode(b"", final=True)
        process.stdout.close()
        errors.seek(0)
        stderr = errors.read().decode("utf-8", errors="replace")
    return QemuRun(command, text, matched, exited, returncode, timed_out, stderr,
                   time.monotonic() - start)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End a QEMU we started: SIGTERM, then SIGKILL if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=QUIT_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def console_lines(text: str, *, timestamps: bool = True) -> list[str]:
    """Console text as lines, normalised to compare two emulators' runs.

    By default the only change made to the text is that Linux's printk
    timestamps (``[    0.123456] `` at the start of a line) are removed: they
    measure the emulator's speed, not the guest's behaviour.  Nothing else is
    touched: no other prefix (Xen's ``(XEN)``, a printk caller id), no
    whitespace, no control character.  ``timestamps=False`` keeps them too.

    Lines are the text split at ``\\n``; a ``\\r`` the guest sent before it
    (serial console drivers do) stays part of its line.  A last line with no
    ``\\n``, cut where QEMU was stopped, is kept.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if timestamps:
        lines = [PRINTK_TIME.sub("", line, count=1) for line in lines]
    return lines
