"""Keystone, kept in a child process, as an encoder of single instructions.

Keystone aborts or segfaults the whole process on some inputs (DESIGN.md §3),
and it can hang, so it never runs in the caller's process.  One child serves
a whole Python process (started on first use, ~40 ms); when keystone kills
it, the statement it was working on is recorded as a crash and a new child
carries on with the rest.  The front-end only ever sends address-independent
instruction text, so every answer is memoized by text: assembling a source
twice, or two sources sharing instructions, asks keystone once.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.metadata
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["STATS", "KeystoneResult", "KeystoneUnavailable", "encode", "keystone_version",
           "reset"]

_CHILD_SCRIPT = Path(__file__).with_name("keystone_child.py")
_BASE_TIMEOUT = 30.0  # seconds for a request, plus a little per statement


@dataclass(frozen=True)
class KeystoneResult:
    """What keystone made of one statement."""

    code: bytes | None  # the encoding; None for an error or a crash
    errno: int = 0  # KsError number, for an error
    message: str = ""  # KsError text, or how the child died
    crashed: bool = False  # keystone aborted, crashed or hung on it
    transient: bool = False  # a time-out: may not happen again, do not cache


class KeystoneUnavailable(RuntimeError):
    """The child could not run keystone at all (not installed, broken interpreter)."""


@dataclass
class KeystoneStats:
    """Counters for tests and benchmarks."""

    children_started: int = 0
    requests: int = 0
    statements: int = 0


STATS = KeystoneStats()
_memo: dict[tuple[str, int], KeystoneResult] = {}
_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def keystone_version() -> str:
    """The installed keystone-engine version (part of every cache key)."""
    try:
        return importlib.metadata.version("keystone-engine")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _Child:
    """One keystone child process and the pipes to it."""

    def __init__(self) -> None:
        # A file, not a pipe: nobody reads it until the child is dead.
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, str(_CHILD_SCRIPT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
        )
        self.pid = os.getpid()
        self.buffer = b""
        STATS.children_started += 1

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, request: dict[str, Any]) -> bool:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def lines(self, deadline: float) -> Iterable[dict[str, Any] | str]:
        """Answers as they come; a final ``"eof"`` or ``"timeout"`` says why they stopped."""
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(descriptor, selectors.EVENT_READ)
            while True:
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    yield json.loads(line)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    yield "timeout"
                    return
                chunk = os.read(descriptor, 1 << 16)
                if not chunk:
                    yield "eof"
                    return
                self.buffer += chunk

    def death(self, timed_out: bool) -> str:
        """Why the child stopped answering; kills it if it is still there."""
        if timed_out and self.alive():
            self.process.kill()
        try:
            status = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", "replace")
        self.close()
        if timed_out:
            return "keystone did not answer in time (it hangs on this statement)"
        llvm = [line.strip() for line in text.splitlines() if "LLVM ERROR" in line]
        if llvm:
            return f"keystone crashed ({llvm[-1]})"
        if status < 0:
            try:
                name = signal.Signals(-status).name
            except ValueError:
                name = f"signal {-status}"
            return f"keystone crashed ({name})"
        detail = [line for line in text.splitlines() if line.strip()]
        raise KeystoneUnavailable(
            "the keystone child process could not run: "
            + (detail[-1].strip() if detail else f"exit status {status}"))

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        if self.alive():
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


_child: _Child | None = None


def _live_child() -> _Child:
    global _child
    # A child inherited through fork() belongs to the parent process: start our own.
    if _child is None or _child.pid != os.getpid() or not _child.alive():
        if _child is not None and _child.pid == os.getpid():
            _child.close()
        _child = _Child()
    return _child


def _run(texts: list[str], base: int) -> dict[str, KeystoneResult]:
    results: dict[str, KeystoneResult] = {}
    remaining = list(texts)
    batch = True
    while remaining:
        child = _live_child()
        STATS.requests += 1
        timeout = _BASE_TIMEOUT + 0.01 * len(remaining)
        got: list[KeystoneResult] = []
        finished = False
        timed_out = False
        if child.send({"texts": remaining, "batch": batch, "base": base}):
            for answer in child.lines(time.monotonic() + timeout):
                if isinstance(answer, str):
                    timed_out = answer == "timeout"
                    break
                if "batch" in answer:
                    code = bytes.fromhex(answer["batch"])
                    got = [KeystoneResult(code[4 * i:4 * i + 4]) for i in range(len(remaining))]
                    finished = True
                    break
                if answer.get("done"):
                    finished = True
                    break
                if "hex" in answer:
                    got.append(KeystoneResult(bytes.fromhex(answer["hex"])))
                else:
                    message = re.sub(r"\s*\(KS_ERR_\w+\)", "", answer["message"]).strip()
                    got.append(KeystoneResult(None, int(answer["errno"]), message))
        results.update(zip(remaining, got, strict=False))
        if finished:
            break
        cause = child.death(timed_out)
        if batch and not got:
            batch = False  # the batch attempt itself died: find the statement one by one
            continue
        culprit = remaining[len(got)]
        results[culprit] = KeystoneResult(None, 0, cause, crashed=True, transient=timed_out)
        remaining = remaining[len(got) + 1:]
    return results


def encode(texts: Iterable[str], base: int = 0) -> dict[str, KeystoneResult]:
    """Encode each text with keystone at address ``base`` (memoized).

    Never raises for a statement keystone rejects or dies on: that is in its
    result.  Raises KeystoneUnavailable only when keystone cannot run at all.
    """
    with _lock:
        wanted = list(dict.fromkeys(texts))
        missing = [text for text in wanted if (text, base) not in _memo]
        fresh: dict[str, KeystoneResult] = {}
        if missing:
            STATS.statements += len(missing)
            fresh = _run(missing, base)
            _memo.update(((text, base), result) for text, result in fresh.items()
                         if not result.transient)
        return {text: fresh[text] if text in fresh else _memo[(text, base)] for text in wanted}


def reset() -> None:
    """Forget every memoized encoding (tests use it to force keystone to run again)."""
    with _lock:
        _memo.clear()


@atexit.register
def _shutdown() -> None:
    if _child is not None and _child.pid == os.getpid():
        _child.close()
