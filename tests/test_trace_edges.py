"""``bootemu trace`` at its edges: a reader that closes the pipe, the gaps
``--window`` leaves, the exit status, and Ctrl-C.

Each test runs the real command line in a subprocess.  Expected values come
from the programs' text: where each instruction is, how many times a loop
runs, what the Arm architecture makes of an access to nothing.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOTEMU = [sys.executable, "-m", "emu.cli", "trace"]
LOAD = 0x4000_0000  # where a source is loaded (and entered) by default

# index, VA, PA, symbol, encoding, disassembly [; event]
INSN = re.compile(r"^ *(\d+)  0x([0-9a-f]{16})  0x[0-9a-f]{12}  (\S+) +([0-9a-f]{8})  (.*)$")
GAP = re.compile(r"^\.\.\. (\d+) instructions? left out \.\.\.$")
STOPPED = re.compile(r"^stopped after (\d+) instructions? at #(\d+), PC 0x([0-9a-f]+) ")

# A TLBI (an MMU event) at #0 and again after a loop of 100 passes of three
# instructions: #0 tlbi, #1 mov, #2..#301 the loop, #302 tlbi, #303 on `b .`.
TWO_EVENTS = """\
_start:
    tlbi alle2
    mov x5, #0
loop:
    add x5, x5, #1
    cmp x5, #100
    b.ne loop
    tlbi alle2
    b .
"""

SPIN = """\
_start:
loop:
    b loop
"""

# With the MMU off a data access's VA is its PA, and the board (QEMU virt's
# map, less its PCIe windows) has nothing at 0x20000000, below RAM at
# 0x40000000: the load at _start+4 aborts, and only the mov (#0) completes.
LOAD_FROM_NOTHING = """\
_start:
    mov x1, #0x20000000
    ldr x0, [x1]
    b .
"""


def trace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOOTEMU, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def source(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def records(stdout: str, as_json: bool) -> list[tuple[str, int]]:
    """The trace as ("insn", index), ("gap", count) and, last, ("stop", index)."""
    parsed: list[tuple[str, int]] = []
    lines = stdout.splitlines()
    for line in lines[:-1]:
        if as_json:
            record = json.loads(line)
            parsed.append(("gap", record["gap"]) if "gap" in record
                          else ("insn", record["index"]))
            continue
        insn, gap = INSN.match(line), GAP.match(line)
        assert insn or gap, line
        parsed.append(("insn", int(insn.group(1))) if insn else ("gap", int(gap.group(1))))
    if as_json:
        parsed.append(("stop", json.loads(lines[-1])["index"]))
    else:
        stopped = STOPPED.match(lines[-1])
        assert stopped, lines[-1]
        parsed.append(("stop", int(stopped.group(2))))
    return parsed


def check_gaps(parsed: list[tuple[str, int]]) -> list[int]:
    """Assert each gap counts exactly the instructions between its neighbours
    (from #0 before the first line, to the stop after the last), and that no
    instruction is left out without one; return the gaps' counts."""
    previous = -1  # the index before the first instruction
    gaps: list[int] = []
    pending: int | None = None
    for kind, value in parsed:
        if kind == "gap":
            assert pending is None, "two gap markers in a row"
            pending = value
            continue
        # An instruction's index; the stop's counts the instructions executed,
        # the index the next one would have had.
        missing = value - previous - 1
        assert missing == (pending or 0), (previous, pending, kind, value)
        if pending is not None:
            gaps.append(pending)
        pending = None
        previous = value
    return gaps


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_closed_pipe_ends_the_trace_quietly(as_json: bool) -> None:
    process = subprocess.Popen([*BOOTEMU, *(["--json"] if as_json else [])], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()  # type: ignore[union-attr]
    process.stdout.close()  # type: ignore[union-attr]
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0  # documented: a closed pipe is no failure
    assert stderr == ""  # no error line, no traceback, no "Exception ignored"
    # The first line is the entry: #0, at the load address, in _start.
    if as_json:
        record = json.loads(first)
        assert (record["index"], record["va"], record["symbol"]) == (0, LOAD, "_start")
    else:
        insn = INSN.match(first.rstrip("\n"))
        assert insn and int(insn.group(1)) == 0 and int(insn.group(2), 16) == LOAD
        assert insn.group(3) == "_start"


def test_window_gaps_count_what_they_leave_out(tmp_path: Path) -> None:
    path = source(tmp_path, "two_events.S", TWO_EVENTS)
    window = 2
    expected_lines = [0, 1, 2, 300, 301, 302, 303, 304]  # 2 either side of #0 and #302
    for as_json in (False, True):
        result = trace(path, "--window", str(window), "--max-insns", "320",
                       *(["--json"] if as_json else []))
        parsed = records(result.stdout, as_json)
        assert [value for kind, value in parsed if kind == "insn"] == expected_lines
        # Left out: #3..#299 between the windows, #305..#319 after the second.
        assert check_gaps(parsed) == [299 - 3 + 1, 319 - 305 + 1]
        assert parsed[-1] == ("stop", 320)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_window_gaps_on_head_s_and_the_default_target_is_status_0(as_json: bool) -> None:
    result = trace("--window", "3", *(["--json"] if as_json else []))
    assert result.returncode == 0, result.stderr  # head.S reaches start_c, as check says
    assert result.stderr == ""
    parsed = records(result.stdout, as_json)
    gaps = check_gaps(parsed)
    # Boot code runs thousands of instructions (zeroing, table building)
    # before its first MMU event: the trace starts with a gap.
    assert parsed[0][0] == "gap" and len(gaps) >= 3
    if as_json:
        assert json.loads(result.stdout.splitlines()[-1])["reached"] is True


def test_an_abort_is_status_1(tmp_path: Path) -> None:
    path = source(tmp_path, "nothing.S", LOAD_FROM_NOTHING)
    result = trace(path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # Only the mov (#0) completed; the run stops in front of the load, at _start+4.
    assert len(lines) == 2 and INSN.match(lines[0]) and int(INSN.match(lines[0]).group(1)) == 0
    stopped = STOPPED.match(lines[-1])
    assert stopped and int(stopped.group(2)) == 1 and int(stopped.group(3), 16) == LOAD + 4
    record = json.loads(trace(path, "--json").stdout.splitlines()[-1])
    assert record["reached"] is False and record["index"] == 1 and record["pc"] == LOAD + 4


def test_a_spent_budget_before_the_target_is_status_1() -> None:
    result = trace("--max-insns", "10")  # head.S arrives at start_c thousands later
    assert result.returncode == 1, result.stderr
    parsed = records(result.stdout, as_json=False)
    assert [value for kind, value in parsed if kind == "insn"] == list(range(10))
    assert parsed[-1] == ("stop", 10)
    assert "the instruction budget was spent" in result.stdout.splitlines()[-1]


def test_usage_errors_are_status_2() -> None:
    assert trace("--window", "0").returncode == 2
    assert trace("--until", "no_such_symbol").returncode == 2


def test_help_documents_the_statuses() -> None:
    text = trace("--help").stdout
    assert "Exit status" in text and "130" in text and "closed the pipe" in text


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_ctrl_c_ends_with_complete_lines_and_the_stop(tmp_path: Path, as_json: bool) -> None:
    path = source(tmp_path, "spin.S", SPIN)
    process = subprocess.Popen([*BOOTEMU, path, "--max-insns", str(10**12),
                                *(["--json"] if as_json else [])], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()  # type: ignore[union-attr]  # the run is going
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    rest, stderr = process.communicate(timeout=10)
    assert time.monotonic() - sent < 3
    assert process.returncode == 130, stderr  # documented: 128 + SIGINT
    assert stderr == ""
    output = first + rest
    assert output.endswith("\n")  # no line is left half written
    lines = output.splitlines()
    body, last = lines[:-1], lines[-1]
    # Every instruction is the one `b loop` at the load address: #0, #1, #2, ...
    if as_json:
        insns = [json.loads(line) for line in body]
        assert [insn["index"] for insn in insns] == list(range(len(insns)))
        assert all(insn["va"] == LOAD and insn["disassembly"] == f"b #{LOAD:#x}"
                   for insn in insns)
        stop = json.loads(last)
        assert stop["stop"] == "interrupted" and stop["reached"] is False
        assert stop["index"] == len(insns) and stop["pc"] == LOAD
    else:
        matches = [INSN.match(line) for line in body]
        assert all(matches), [line for line, m in zip(body, matches, strict=True) if not m][:3]
        assert [int(m.group(1)) for m in matches] == list(range(len(body)))
        assert all(int(m.group(2), 16) == LOAD and m.group(5) == f"b #{LOAD:#x}"
                   for m in matches)
        stopped = STOPPED.match(last)
        assert stopped and int(stopped.group(2)) == len(body)
        assert int(stopped.group(3), 16) == LOAD
        assert last.endswith("it was interrupted")
    assert len(body) > 1
