"""SIGINT, SIGTERM and --timeout stop `check`, `run` and `trace` within a fraction
of a second, even while Unicorn runs native code for minutes, and the report
of the run up to there is printed; the exit status says which (130 for SIGINT,
143 for SIGTERM, as a shell reports a program a signal ended; 124 for a
timeout, as timeout(1) does).  SIGINT and SIGTERM stop `walk`'s run to --at
the same way, and end `debug`'s server, waiting or with a guest running."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu.debug import rsp

ROOT = Path(__file__).resolve().parents[1]
BOOTEMU = [sys.executable, "-m", "emu.cli"]
# A loop with nothing to check: native hooks only, no Python for minutes.
SPIN = "_start:\n    add x1, x1, #1\n    b _start\n"
BUDGET = str(10**12)


def _spin(tmp_path: Path) -> Path:
    path = tmp_path / "spin.S"
    path.write_text(SPIN)
    return path


def _started(process: subprocess.Popen[str]) -> None:
    """Wait until the command handles SIGTERM (the kernel's SigCgt mask says so:
    before that, Python's start-up, a signal would end it as signals end any
    program), then let the run get into the loop."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = Path(f"/proc/{process.pid}/status").read_text()
        caught = int(next(line for line in status.splitlines()
                          if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    else:
        raise AssertionError("the command never installed its signal handlers")
    time.sleep(0.5)
    assert process.poll() is None, process.communicate()


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", [["check"], ["check", "--json"], ["run"],
                                     ["trace", "--pc-only"]],
                         ids=["check", "check-json", "run", "trace"])
def test_a_signal_stops_the_run_and_keeps_its_report(tmp_path: Path, command: list[str],
                                                     number: int) -> None:
    process = subprocess.Popen([*BOOTEMU, *command, str(_spin(tmp_path)), "--max-insns", BUDGET],
                               stdout=subprocess.PIPE if command[0] != "trace"
                               else subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _started(process)
    sent = time.monotonic()
    process.send_signal(number)
    out, err = process.communicate(timeout=30)
    took = time.monotonic() - sent
    assert process.returncode == 128 + number, (process.returncode, err)
    assert took < 1.0, took  # the issue asks for 0.2 s; Python's exit adds its own time
    assert "Traceback" not in err
    name = signal.Signals(number).name
    if command[0] == "check":
        if "--json" in command:
            report = json.loads(out)
            assert report["verdict"] == "incomplete"
            assert report["stop"]["kind"] == "interrupted"
            assert report["executed"] > 1_000_000
        else:
            assert "Verdict: incomplete" in out
        assert f"interrupted by {name} at #" in err and "(_start" in err
    elif command[0] == "run":
        assert f"bootemu: interrupted by {name} at #" in err
    else:
        assert "it was interrupted" not in err  # trace's stop record is on stdout
        assert err == ""


def test_timeout_stops_check_with_its_report(tmp_path: Path) -> None:
    start = time.monotonic()
    done = subprocess.run([*BOOTEMU, "check", str(_spin(tmp_path)), "--max-insns", BUDGET,
                           "--timeout", "1"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    took = time.monotonic() - start
    assert done.returncode == 124, done.stderr
    assert "Verdict: incomplete" in done.stdout
    assert "stopped by --timeout 1 s at #" in done.stderr
    assert took < 15  # the budget is days of work: only the timeout ends it this soon


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    done = subprocess.run([*BOOTEMU, "run", str(_spin(tmp_path)), "--timeout", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "--timeout" in done.stderr


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in found.split()]


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_parallel_sweep_and_its_workers(number: int) -> None:
    """`sweep -j 2` over 261,632 load addresses (minutes of work): the signal
    ends it within a second or two, the report holds the boots done, and no
    worker process is left behind."""
    process = subprocess.Popen(
        [*BOOTEMU, "sweep", str(ROOT / "asm" / "head.S"), "--load-addresses",
         "0x40000000:0x8000000000", "-j", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = _children(process.pid)
    assert len(workers) >= 2, "the workers never started"
    time.sleep(2.0)  # some chunks of boots done
    sent = time.monotonic()
    process.send_signal(number)
    out, err = process.communicate(timeout=60)
    took = time.monotonic() - sent
    assert process.returncode == 128 + number, err
    assert took < 3.0, took
    assert "Traceback" not in err
    name = signal.Signals(number).name
    assert f"bootemu: interrupted by {name} after " in err
    assert "of 261632 boot(s); the results hold" in err
    assert out.rstrip().splitlines()[-1].endswith("boots/s)")
    time.sleep(0.2)
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists()] == []


# A loop of system-register writes: slow enough (a hook each) that walk's run
# to --at, under its fixed budget, takes tens of seconds.
SLOW = "_start:\n    msr tpidr_el2, x1\n    add x1, x1, #1\n    b _start\n"


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_walks_run_and_says_so_before_the_walk(tmp_path: Path,
                                                              number: int) -> None:
    source = tmp_path / "slow.S"
    source.write_text(SLOW)
    # stderr into stdout: the order they were written in is kept (stderr is
    # written at once, stdout when the program ends).
    process = subprocess.Popen([*BOOTEMU, "walk", "0x40000000", str(source)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=ROOT)
    _started(process)
    children = _children(process.pid)
    sent = time.monotonic()
    process.send_signal(number)
    out, _ = process.communicate(timeout=30)
    took = time.monotonic() - sent
    assert process.returncode == 128 + number, (process.returncode, out)
    assert took < 1.0, took
    assert "Traceback" not in out
    name = signal.Signals(number).name
    lines = out.splitlines()
    said = [i for i, line in enumerate(lines) if "interrupted by" in line]
    assert len(said) == 1, out
    match = re.fullmatch(rf"bootemu: interrupted by {name} at #(\d+) \((_start[^)]*)\) "
                         r"before --at exit; the walk uses the tables there", lines[said[0]])
    assert match, out
    assert int(match.group(1)) > 1000  # it ran
    walked = [i for i, line in enumerate(lines) if line.startswith("walk of VA 0x40000000 ")]
    assert walked and said[0] < walked[0], out
    assert f"at #{match.group(1)} " in lines[walked[0]]
    assert "(interrupted at " in lines[walked[0]]
    assert "PA 0x40000000" in out  # the walk itself, MMU off: flat
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []


def _debug_server(*args: str) -> tuple[subprocess.Popen[str], int]:
    """A ``bootemu debug --port 0`` process, listening; and its port."""
    process = subprocess.Popen([*BOOTEMU, "debug", "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"waiting for gdb on 127\.0\.0\.1:(\d+)", line)
    assert match, (line, process.communicate())
    _started(process)
    return process, int(match.group(1))


def test_sigterm_ends_a_debug_server_waiting_for_a_connection(tmp_path: Path) -> None:
    process, port = _debug_server(str(_spin(tmp_path)))
    children = _children(process.pid)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    took = time.monotonic() - sent
    assert process.returncode == 143, (process.returncode, err)
    assert took < 1.0, took
    assert out == ""
    assert err.splitlines() == [f"bootemu: interrupted by SIGTERM while waiting for gdb on "
                                f"127.0.0.1:{port}; the server is closed"]
    with pytest.raises(ConnectionRefusedError):  # the listening socket is closed
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []


def test_sigint_ends_a_debug_server_whose_client_runs_the_guest(tmp_path: Path) -> None:
    """A client (raw RSP) continues a guest that loops forever; SIGINT to
    bootemu (not the client's Ctrl-C, the 0x03 byte) stops the guest in
    Unicorn, closes the connection without a stop reply, and ends the server."""
    source = tmp_path / "loop.S"
    source.write_text("_start:\n    b .\n")
    process, port = _debug_server(str(source), "--max-insns", BUDGET)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(rsp.encode_packet(b"vCont;c"))
        assert sock.recv(1) == b"+"
        time.sleep(0.5)  # the guest runs, in Unicorn
        assert process.poll() is None, process.communicate()
        children = _children(process.pid)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        rest = b""
        while data := sock.recv(4096):
            rest += data
        closed = time.monotonic() - sent
    out, err = process.communicate(timeout=30)
    took = time.monotonic() - sent
    assert process.returncode == 130, (process.returncode, err)
    assert closed < 1.0 and took < 1.0, (closed, took)  # the issue asks for 0.2 s
    assert rest == b""  # no stop reply: the connection ends
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, err
    match = re.fullmatch(r"bootemu: interrupted by SIGINT at #(\d+) \(_start\) with a client "
                         r"connected; the connection and the server are closed", lines[0])
    assert match, err
    assert int(match.group(1)) > 1_000_000  # the guest ran
    assert err.splitlines()[-1] == lines[0]
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []
