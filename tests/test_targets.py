"""Run targets (``--until``, ``--at``): the forms the reports print.

``SYMBOL+0x14`` / ``SYMBOL+20``, ``#N`` (after N instructions have executed,
in front of the instruction reports number #N), ``PLACE@K`` (the K-th
arrival), plain symbols and addresses; bad forms are one-line errors.  The
expected stops follow from the programs' text and sequential execution: an
instruction at address A is followed by the one at A + 4 unless it branches.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LOAD, PROLOGUE, Tables, build_image

from emu.machine.machine import Machine
from emu.machine.stop import StopKind
from emu.machine.targets import (
    Target,
    TargetError,
    parse_target,
    resolve_target,
    run_targets,
    run_to_target,
)

STRAIGHT = """
_start:
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    nop
done:
    b done
"""

# x5 counts the arrivals at "loop" that have completed their first instruction.
LOOP = """
_start:
    mov x5, #0
loop:
    add x5, x5, #1
    cmp x5, #10
    b.ne loop
done:
    b done
"""


# Prints its message on QEMU virt's PL011 (data register at 0x09000000), a
# byte per store, then spins.
PRINTS = """
_start:
    mov x1, #0x9000000
    adr x2, message
print:
    ldrb w3, [x2], #1
    cbz w3, done
    str w3, [x1]
    b print
done:
    b done
message:
    .asciz "hello world\\nafter\\n"
"""


def _machine(source: str, tables: Tables) -> Machine:
    return Machine(build_image(source, tables))


def test_parse_target_forms() -> None:
    assert parse_target("start_c") == Target("start_c", place="start_c")
    assert parse_target("switch_ttbr_id+0x14") == Target(
        "switch_ttbr_id+0x14", place="switch_ttbr_id", offset=0x14)
    assert parse_target("switch_ttbr_id+20").offset == 20
    assert parse_target("#12570") == Target("#12570", count=12570)
    assert parse_target("#12_570").count == 12570
    assert parse_target("loop@3") == Target("loop@3", place="loop", arrival=3)
    assert parse_target("loop+4@2") == Target("loop+4@2", place="loop", offset=4, arrival=2)
    assert parse_target("0x40001000").place == "0x40001000"
    assert parse_target("xen-4.17-arm64+0x564").place == "xen-4.17-arm64"
    assert not parse_target("loop@1").counted and parse_target("loop@2").counted
    assert parse_target("#0").counted
    assert parse_target("console:VFS: Unable") == Target("console:VFS: Unable",
                                                         console="VFS: Unable")
    assert parse_target("console:x").counted


@pytest.mark.parametrize(("text", "says"), [
    ("#", "#N takes a decimal instruction count"),
    ("#0x10", "#N takes a decimal instruction count"),
    ("#12a", "#N takes a decimal instruction count"),
    ("loop@0", "PLACE@K takes an arrival number from 1"),
    ("loop@x", "PLACE@K takes an arrival number from 1"),
    ("#3@2", "#N cannot take @K"),
    ("loop+", "the offset after '+' must be a number"),
    ("loop+zz", "the offset after '+' must be a number"),
    ("+4", "nothing before '+' or '@'"),
    ("", "an empty target"),
    ("console:", "console: takes the text to wait for"),
    ("console:  ", "console: takes the text to wait for"),
])
def test_bad_forms_name_the_form(text: str, says: str) -> None:
    with pytest.raises(TargetError) as raised:
        parse_target(text)
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


def test_symbol_plus_offset_and_addresses(tables: Tables) -> None:
    machine = _machine(LOOP, tables)
    loop = machine.image.symbols["loop"]
    for spec in ("loop+0x8", "loop+8", f"{loop + 8:#x}", f"{loop:#x}+8"):
        assert resolve_target(machine.image, spec).addresses == [loop + 8], spec
    ran = run_to_target(machine, "loop+8")
    # mov, add, cmp: the b.ne at loop + 8 is the fourth instruction.
    assert (ran.stop.kind, ran.stop.pc, ran.stop.index) == (StopKind.ARRIVED, loop + 8, 3)
    assert ran.reached and ran.pa == loop + 8  # MMU off: VA == PA
    with pytest.raises(TargetError, match="no symbol 'nowhere'"):
        resolve_target(machine.image, "nowhere+4")
    # A PC is 64 bits (DDI 0487 D1.2): past 2^64 nothing can be arrived at.
    for spec in ("0x10000000000000000", "0xffffffffffffff00+0x100"):
        with pytest.raises(TargetError, match="past the 64-bit address space"):
            resolve_target(machine.image, spec)


def test_after_n_instructions(tables: Tables) -> None:
    for n in (0, 1, 5, 8):
        machine = _machine(STRAIGHT, tables)
        ran = run_to_target(machine, f"#{n}")
        assert ran.stop.kind is StopKind.ARRIVED and ran.reached, ran.stop.message
        # In front of the n-th instruction (counting from 0): n have executed.
        assert ran.stop.index == machine.executed == n
        assert ran.stop.pc == machine.image.symbols["_start"] + 4 * n
    # Past the budget: the budget ends the run, which did not arrive.
    machine = _machine(STRAIGHT, tables)
    ran = run_to_target(machine, "#50", max_insns=20)
    assert ran.stop.kind is StopKind.BUDGET and not ran.reached and ran.stop.index == 20


def test_the_kth_arrival(tables: Tables) -> None:
    machine = _machine(LOOP, tables)
    loop = machine.image.symbols["loop"]
    ran = run_to_target(machine, "loop@3")
    assert ran.stop.kind is StopKind.ARRIVED and ran.reached, ran.stop.message
    assert ran.stop.pc == loop
    assert machine.reg("x5") == 2  # two bodies ran before the third arrival
    assert ran.stop.index == 1 + 3 * 2  # mov, then two passes of add, cmp, b.ne

    machine = _machine(LOOP, tables)
    ran = run_to_target(machine, "loop+4@2")
    assert (ran.stop.pc, ran.stop.index, machine.reg("x5")) == (loop + 4, 5, 2)

    machine = _machine(LOOP, tables)
    ran = run_to_target(machine, "loop@1")
    assert (ran.stop.pc, ran.stop.index) == (loop, 1)

    machine = _machine(LOOP, tables)  # ten arrivals only: the eleventh never comes
    ran = run_to_target(machine, "loop@11", max_insns=500)
    assert ran.stop.kind is StopKind.BUDGET and not ran.reached


WINDOWS = f"""
_start:{PROLOGUE}
    ldr x1, =root
    msr ttbr0_el2, x1
    tlbi alle2
    dsb nsh
    mrs x2, sctlr_el2
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
    mov x6, #2
again:
    bic x2, x2, #1
    msr sctlr_el2, x2
    isb
work:
    add x5, x5, #1
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
    subs x6, x6, #1
    b.ne again
done:
    b done
.ltorg
.align 12
root:
"""


def test_earlier_arrivals_do_not_end_transition_windows(tables: Tables) -> None:
    """The first arrival at ``work`` is inside the MMU-off window of the first
    pass; counting it must not end that window (every stop of a run does)."""
    tables.base = LOAD + 0x1000
    root = tables.new_table()
    tables.identity_2m(root, LOAD)
    machine = Machine(build_image(WINDOWS, tables))
    ran = run_to_target(machine, "work@2")
    assert ran.stop.kind is StopKind.ARRIVED, ran.stop.message
    assert machine.reg("x5") == 1
    first_on, first_off, second_off = machine.windows
    assert first_off.closed_by is not None and first_off.closed_by.describe() == "ISB"
    assert second_off.closed_by is None  # the run ended inside it, at its target


def test_console_text(tables: Tables) -> None:
    machine = _machine(PRINTS, tables)
    ran = run_to_target(machine, "console:world", max_insns=10_000)
    assert ran.stop.kind is StopKind.ARRIVED and ran.reached, ran.stop.message
    text = machine.console.text()
    # Stopped promptly: after the store of the "d", before the next line.
    assert text.startswith("hello world") and "after" not in text, text
    assert ran.stop.index == machine.executed
    # Printed already: arrived at once, nothing more run.
    again = run_to_target(machine, "console:hello", max_insns=10_000)
    assert again.reached and again.stop.index == ran.stop.index
    # Never printed: the budget ends the run, which did not arrive.
    machine = _machine(PRINTS, tables)
    ran = run_to_target(machine, "console:goodbye", max_insns=500)
    assert ran.stop.kind is StopKind.BUDGET and not ran.reached
    assert machine.console.text() == "hello world\nafter\n"


def test_run_targets_refuses_what_it_cannot_reach(tables: Tables) -> None:
    image = build_image(LOOP, tables)
    assert run_targets(image, "loop+4")[1] == [image.symbols["loop"] + 4]
    for spec in ("#3", "loop@2", "console:hello"):
        with pytest.raises(TargetError, match="found during the run"):
            run_targets(image, spec)


# -- the command line ----------------------------------------------------------

BOOTEMU = [sys.executable, "-m", "emu.cli.main"]


def bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOOTEMU, *args], capture_output=True, text=True, timeout=120)


def test_run_walk_and_trace_take_every_form(tmp_path: Path) -> None:
    source = tmp_path / "loop.S"
    source.write_text("#define LINK_ADDRESS 0x40000000\n" + LOOP)
    loop = LOAD + 4
    result = bootemu("run", str(source), "--until", "loop@3")
    assert result.returncode == 0, result.stderr
    assert f"stopped at #7, PC {loop:#x} (loop), PA {loop:#x}: it arrived at loop@3" in (
        result.stderr)
    result = bootemu("run", str(source), "--until", "#2")
    assert result.returncode == 0 and f"PC {loop + 4:#x} (loop+0x4)" in result.stderr
    walked = bootemu("walk", "0x40000000", str(source), "--at", "loop+8@2")
    assert walked.returncode == 0, walked.stderr
    assert "at #6 loop+0x8" in walked.stdout
    traced = bootemu("trace", str(source), "--until", "#4")
    lines = traced.stdout.splitlines()
    assert len(lines) == 4 + 1 and lines[-1].startswith("stopped after 4 instructions at #4")


@pytest.mark.parametrize("command", [["run", "--until"], ["walk", "0x0", "--at"],
                                     ["trace", "--until"], ["check", "--until"]])
def test_bad_forms_are_one_line_errors(command: list[str]) -> None:
    result = bootemu(*command, "#twelve")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("bootemu: error:") and "'#twelve'" in line and "#N" in line
