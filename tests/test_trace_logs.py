"""QEMU-style logs: ``bootemu trace --log exec,cpu,int,mmu``, ``--log-file`` and
``--filter``.

The expectations come from the programs and the Arm ARM: the ESR, FAR and
ELR an abort must write (test_exceptions' table, DDI 0487 D19.2 "ESR_EL2"), the
TLBI instructions capstone finds in the trace, the registers an instruction
writes by its definition, and head.S's own layout (linked at 0x80_0020_0000,
loaded at 0x4000_0000).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HEAD_S, REPO, build_image
from test_exceptions import CASES, EC_IABT_SAME, IL, WNR, _program, _tables

from emu.checks.run import build_image as build_source_image
from emu.image.boot_image import BootImage
from emu.machine.machine import Machine
from emu.machine.targets import run_to_target
from emu.report.qemu_log import QemuStyleLog, parse_filter, parse_log_items
from emu.report.trace import Tracer

BOOTEMU = [sys.executable, "-m", "emu.cli", "trace"]
LINK = 0x80_0020_0000  # head.S's link address (asm/include/layout.h)
LOAD = 0x4000_0000
DETAIL = re.compile(r"^ *(\d+)  (cpu|int|mmu): (.*)$")
INSN = re.compile(r"^ *(\d+)  0x([0-9a-f]{16})  ")


def logged(image: BootImage, until: str, items: str, *, exec_lines: bool = True,
           address_filter: list[tuple[int, int]] | None = None) -> list[str]:
    machine = Machine(image)
    chunks: list[str] = []
    tracer = (Tracer(machine, chunks.append, address_filter=address_filter)
              if exec_lines else None)

    def emit(index: int, item: str, text: str) -> None:
        line = f"{index:>9}  {item}: {text}\n"
        if tracer is not None:
            tracer.add_detail(index, line)
        else:
            chunks.append(line)

    log = QemuStyleLog(machine, parse_log_items(items), emit, address_filter)
    run_to_target(machine, until, 2_000_000)
    if tracer is not None:
        tracer.flush()
    log.detach()
    return "".join(chunks).splitlines()


@pytest.mark.parametrize(("name", "access", "va", "ec", "fsc", "write"), CASES,
                         ids=[case[0] for case in CASES])
def test_int_lines_say_what_the_abort_wrote(name: str, access: str, va: int, ec: int,
                                            fsc: int, write: bool) -> None:
    image = build_image(_program(access, va), _tables())
    lines = logged(image, "done", "int", exec_lines=False)
    assert len(lines) == 1, lines
    index, item, text = DETAIL.match(lines[0]).groups()
    assert item == "int"
    fields = dict(re.findall(r"(ESR|FAR|ELR) (0x[0-9a-f]+)", text))
    esr = (ec << 26) | IL | fsc | (WNR if write else 0)
    assert int(fields["ESR"], 16) == esr
    assert int(fields["FAR"], 16) == va + (0x5A8 if "#0x5a8" in access else 0)
    assert int(fields["ELR"], 16) == (va if ec == EC_IABT_SAME else image.symbols["access"])
    assert "EL2 -> EL2" in text


@pytest.fixture(scope="module")
def head_image() -> BootImage:
    return build_source_image(str(HEAD_S))


def test_mmu_lines_follow_their_instructions(head_image: BootImage) -> None:
    lines = logged(head_image, "start_c", "exec,mmu")
    last_index = -1
    tlbis = [int(INSN.match(line)[1]) for line in lines
             if INSN.match(line) and "  tlbi " in line]
    logged_tlbis = []
    fills = []
    for line in lines:
        if (insn := INSN.match(line)) is not None:
            last_index = int(insn[1])
        elif (detail := DETAIL.match(line)) is not None:
            index = int(detail[1])
            assert index == last_index, line  # right after its instruction's line
            if detail[3].startswith("TLBI"):
                logged_tlbis.append(index)
            elif detail[3].startswith("TLB fill"):
                fills.append(detail[3])
    assert logged_tlbis == tlbis and tlbis  # every TLBI instruction, and only those
    # head.S runs at its link address once the MMU is on: the code's page there
    # is filled with the page it was loaded at.
    assert any(f"VA page {LINK:#x} -> PA page {LOAD:#x}" in fill for fill in fills), fills


def test_cpu_lines_hold_the_registers_before_each_instruction(head_image: BootImage) -> None:
    lines = logged(head_image, "#8", "exec,cpu")
    states = {}
    pcs = {}
    for line in lines:
        if (insn := INSN.match(line)) is not None:
            pcs[int(insn[1])] = int(insn[2], 16)
        elif (detail := DETAIL.match(line)) is not None:
            registers = dict(re.findall(r"(\w+)=([0-9a-f]+)", detail[3]))
            states[int(detail[1])] = {name: int(value, 16) for name, value in registers.items()}
    assert sorted(states) == sorted(pcs) == list(range(8))
    for index, state in states.items():
        assert state["PC"] == pcs[index]
    # head.S's first instruction, `mov x21, x0` (the device tree address): X21
    # holds X0's value before the second.
    assert lines[0].endswith("mov x21, x0")
    assert states[1]["X21"] == states[0]["X0"] != 0


def test_filter_keeps_the_instructions_of_its_ranges(head_image: BootImage) -> None:
    ranges = parse_filter("switch_ttbr_id", head_image)
    start = head_image.symbols["switch_ttbr_id"]
    assert (start - LINK + LOAD, ) == tuple(r[0] for r in ranges if r[0] != start)
    lines = logged(head_image, "start_c", "exec", address_filter=ranges)
    vas = [int(m[2], 16) for line in lines if (m := INSN.match(line))]
    assert vas and all(any(a <= va < b for a, b in ranges) for va in vas)
    # The MMU is off while switch_ttbr_id runs: its instructions run at the alias.
    assert all(va < LINK for va in vas)
    gaps = sum(int(g[1]) for line in lines if (g := re.match(r"^\.\.\. (\d+) instr", line)))
    assert gaps + len(vas) == 12596  # every instruction to start_c (test_head's count)


def _bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOOTEMU, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO)


def test_log_file_holds_what_stdout_would(tmp_path: Path) -> None:
    log = tmp_path / "trace.log"
    to_file = _bootemu(str(HEAD_S), "--until", "#200", "--log", "exec,mmu", "--log-file",
                       str(log))
    to_stdout = _bootemu(str(HEAD_S), "--until", "#200", "--log", "exec,mmu")
    assert to_file.returncode == to_stdout.returncode == 0
    assert to_file.stdout == ""
    assert log.read_text() == to_stdout.stdout
    assert to_file.stderr.startswith(f"bootemu: log in {log}; stopped after 200 instructions")


@pytest.mark.parametrize(("args", "message"), [
    (["--log", "exec,net"], "no log item 'net'"),
    (["--filter", "no_such_symbol"], "not START..END, START+SIZE or a symbol"),
    (["--filter", "0x2000..0x1000"], "the range is empty"),
    (["--filter", "start_c", "--window", "3"], "--filter and --window cannot be combined"),
    (["--tarmac", "--log", "exec,int"], "--log cannot be combined with --tarmac"),
    (["--log-file", "/nonexistent/dir/trace.log"], "/nonexistent/dir/trace.log"),
])
def test_bad_log_options(args: list[str], message: str) -> None:
    done = _bootemu(str(HEAD_S), *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
