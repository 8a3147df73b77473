"""Tarmac traces (emu.report.tarmac), read as Arm's tarmac-trace-utilities read them.

The line grammar below is written from that project's parser and its
documentation (github.com/ARM-software/tarmac-trace-utilities: lib/parser.cpp,
lib/registers.cpp, doc/index.rst, tests/parsertest.txt), not from bootemu's
writer:

* every line may start with a decimal timestamp and one of the units
  ``clk ns cs cyc tic ps``;
* ``IT``/``IS`` ``(index)`` ``ADDR[:PA[_S|_NS]]`` ``ENCODING`` ``ISET`` ``MODE``
  ``:`` disassembly, ISET one of ``A T T16 T32 O`` (``O``: A64), the width of
  the instruction 4 bits an encoding digit;
* ``R NAME [(EXTRA)] VALUE``, the value's digits (``_`` and ``-`` allowed,
  possibly split by a space or ``:``) twice the register's bytes: 8 for
  X0-X30 and the 64-bit SP (any name starting ``SP_``), 4 for CPSR; other
  names (system registers) are read and dropped;
* ``M<R|W><size>`` ``ADDR[:PA]`` ``VALUE``, the value in hex (``_`` allowed),
  an integer of at most 8 bytes.

Encodings are compared with GNU objdump's disassembly of the same program.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import HEAD_S, REPO

from emu.asm.elf_writer import write_elf
from emu.board.board import Board
from emu.checks.run import build_image
from emu.image.boot_image import BootImage
from emu.machine.machine import Machine
from emu.machine.targets import TargetRun
from emu.report.tarmac import TarmacTracer, run_tarmac

INCLUDE = HEAD_S.parent / "include"
OBJDUMP = "aarch64-linux-gnu-objdump"

# -- the grammar, from tarmac-trace-utilities -----------------------------------

_TIME = r"(?:(?P<time>\d+)\s*(?:(?P<unit>clk|ns|cs|cyc|tic|ps)\b)?\s+)?"
_HEX = r"[0-9A-Fa-f]+"
_NAME = r"[A-Za-z0-9_.#-]+"
_INSTRUCTION = re.compile(
    _TIME + rf"(?P<kind>IT|IS)\s+\((?P<index>{_HEX})\)\s+(?P<address>{_HEX})"
    rf"(?::(?P<pa>{_HEX})(?:_S|_NS)?)?\s+(?P<encoding>{_HEX})\s+"
    rf"(?P<iset>A|T|T16|T32|O)\s+(?P<mode>{_NAME})\s*:\s*(?P<disassembly>.*)$")
_REGISTER = re.compile(
    _TIME + rf"R\s+(?P<name>{_NAME})(?:\s*\((?P<extra>{_NAME})\))?\s+"
    r"(?P<value>[0-9A-Fa-f_-]+(?:[ :][0-9A-Fa-f_-]+)?)\s*$")
_MEMORY = re.compile(
    _TIME + rf"M(?P<rw>[RW])(?P<size>\d+)\s+(?P<address>{_HEX})"
    rf"(?::(?P<pa>{_HEX})(?:_S|_NS)?)?\s+(?P<value>[0-9A-Fa-f_]+)\s*$")


@dataclass
class Record:
    """One Tarmac line, parsed."""

    kind: str  # "IT", "IS", "R" or "M"
    time: int | None
    fields: dict[str, str]

    @property
    def value(self) -> int:
        return int(re.sub(r"[_ :]", "", self.fields["value"]), 16)


def register_bytes(name: str, digits: int) -> int | None:
    """The bytes the parser expects for a register name (None: any, dropped)."""
    if re.fullmatch(r"[Xx](\d+)", name) and int(name[1:]) < 31:
        return 8
    if name.upper().startswith("SP_"):
        return 8 if digits == 16 else 4
    if name.upper() == "CPSR":
        return 4
    return None


def parse(line: str) -> Record:
    """One line by the grammar; AssertionError when it does not fit."""
    for kind, pattern in (("I", _INSTRUCTION), ("R", _REGISTER), ("M", _MEMORY)):
        match = pattern.match(line)
        if match is None:
            continue
        fields = {key: value for key, value in match.groupdict().items() if value is not None}
        time = int(fields["time"]) if "time" in fields else None
        if kind == "I":
            assert fields["iset"] == "O", line
            assert len(fields["encoding"]) * 4 == 32, f"an A64 instruction is 32 bits: {line}"
            assert re.fullmatch(r"EL[0-3][ht]_[ns]", fields["mode"]), line
            return Record(fields["kind"], time, fields)
        if kind == "R":
            digits = len(re.sub(r"[_ :]", "", fields["value"]))
            expected = register_bytes(fields["name"], digits)
            assert expected is None or digits == 2 * expected, line
            return Record("R", time, fields)
        size = int(fields["size"])
        assert size in (1, 2, 4, 8), line
        assert len(fields["value"].replace("_", "")) == 2 * size, line
        return Record("M", time, fields)
    raise AssertionError(f"not a Tarmac line: {line!r}")


def groups(records: list[Record]) -> list[tuple[Record, list[Record]]]:
    """Each instruction with the lines that follow it up to the next one."""
    out: list[tuple[Record, list[Record]]] = []
    for record in records:
        if record.kind in ("IT", "IS"):
            out.append((record, []))
        else:
            assert out, f"a {record.kind} line before any instruction"
            out[-1][1].append(record)
    return out


# -- runs -----------------------------------------------------------------------


@dataclass
class Traced:
    image: BootImage
    run: TargetRun
    lines: list[str]
    records: list[Record]


def trace(image: BootImage, until: str, memory: bool) -> Traced:
    machine = Machine(image, Board())
    lines: list[str] = []
    run = run_tarmac(machine, lines.append, until, memory=memory)
    return Traced(image, run, lines, [parse(line) for line in lines])


@pytest.fixture(scope="module")
def head_image() -> BootImage:
    return build_image(HEAD_S, include_dirs=[INCLUDE])


@pytest.fixture(scope="module")
def head(head_image: BootImage) -> Traced:
    return trace(head_image, "start_c", memory=True)


def test_every_line_parses_and_the_run_arrives(head: Traced) -> None:
    assert head.run.stop.pc == head.image.symbols["start_c"]
    assert len(head.records) == len(head.lines) > head.run.stop.index
    kinds = {record.kind for record in head.records}
    assert kinds == {"IT", "IS", "R", "M"}


def test_indices_are_consecutive_and_timestamps_are_the_index(head: Traced) -> None:
    instructions = [record for record, _ in groups(head.records)]
    assert [int(r.fields["index"]) for r in instructions] == list(range(head.run.stop.index))
    for instruction, rest in groups(head.records):
        assert {r.time for r in (instruction, *rest)} == {int(instruction.fields["index"])}
        assert {r.fields.get("unit") for r in (instruction, *rest)} == {"clk"}
    # The run stopped in front of start_c, which never executed.
    assert int(instructions[-1].fields["address"], 16) != head.image.symbols["start_c"]


def test_pa_is_the_fetch_address(head: Traced) -> None:
    image = head.image
    for instruction, _ in groups(head.records):
        va, pa = int(instruction.fields["address"], 16), int(instruction.fields["pa"], 16)
        assert va == pa or (image.in_image(va, physical=False) and image.physical(va) == pa)
        assert instruction.fields["mode"] == "EL2h_n"


def test_x30_follows_every_branch_with_link(head: Traced) -> None:
    calls = 0
    for instruction, rest in groups(head.records):
        if instruction.fields["disassembly"].split()[0] in ("bl", "blr"):
            calls += 1
            x30 = [r for r in rest if r.kind == "R" and r.fields["name"] == "X30"]
            assert len(x30) == 1 and x30[0].value == int(instruction.fields["address"], 16) + 4
    assert calls >= 5  # zero_bss, the two table builders, switch_ttbr_id, remove_identity_mapping


def test_condition_failed_branches_are_is_lines(head: Traced) -> None:
    """IS: a B.cond not taken (the next instruction is the one after it); a taken
    B.cond is an IT line followed by its target."""
    listed = groups(head.records)
    seen = set()
    for (instruction, _), (following, _) in zip(listed, listed[1:], strict=False):
        words = instruction.fields["disassembly"].split()
        if not words[0].startswith("b."):
            assert instruction.kind == "IT"
            continue
        here, there = int(instruction.fields["address"], 16), int(following.fields["address"], 16)
        target = int(words[1].lstrip("#"), 16)
        assert there == (here + 4 if instruction.kind == "IS" else target)
        seen.add(instruction.kind)
    assert seen == {"IT", "IS"}


def _stores(head: Traced, va: int) -> list[Record]:
    return [r for r in head.records if r.kind == "M" and r.fields["rw"] == "W"
            and int(r.fields["address"], 16) == va]


def test_boot_table_descriptor_store_is_an_mw8_line(head: Traced) -> None:
    """create_boot_page_tables' first set_table_entry (MMU off: VA == PA):
    boot_pgtable[slot of the link address] = boot_first | PT_TABLE."""
    image = head.image
    symbols = image.symbols
    slot = (symbols["_start"] >> 39) & 0x1FF
    va = image.physical(symbols["boot_pgtable"]) + 8 * slot
    zeroed, store = _stores(head, va)  # by zero_bss's stp, then the descriptor
    assert zeroed.value == 0
    assert store.fields["size"] == "8" and int(store.fields["pa"], 16) == va
    assert store.value == image.physical(symbols["boot_first"]) | 0b11


def test_store_through_the_link_address_has_its_va_and_pa(head: Traced) -> None:
    """remove_identity_mapping's ``str xzr, [x1, x0, lsl #3]``, MMU on: the VA is
    runtime_pgtable's link address, the PA its load address."""
    image = head.image
    symbols = image.symbols
    slot = (image.physical(symbols["switch_ttbr_id"]) >> 39) & 0x1FF
    va = symbols["runtime_pgtable"] + 8 * slot
    stores = _stores(head, va)
    assert stores and all(int(s.fields["pa"], 16) == image.physical(va) for s in stores)
    assert stores[-1].value == 0
    assert stores[-1].time is not None and stores[-1].time > head.run.stop.index - 20


def test_literal_load_is_an_mr8_line(head: Traced) -> None:
    """``ldr x0, =_start`` in _start reads the link address from the literal pool."""
    loads = [r for r in head.records if r.kind == "M" and r.fields["rw"] == "R"]
    assert loads[0].fields["size"] == "8" and loads[0].value == head.image.symbols["_start"]


@pytest.mark.skipif(shutil.which(OBJDUMP) is None, reason=f"{OBJDUMP} not installed")
def test_encodings_are_gnu_objdumps(head: Traced, tmp_path: Path) -> None:
    image = head.image
    assert image.program is not None
    elf = tmp_path / "head.elf"
    write_elf(image.program, elf)
    listing = subprocess.run([OBJDUMP, "-d", str(elf)], capture_output=True, text=True,
                             check=True).stdout
    words = {int(address, 16): int(word, 16) for address, word in
             re.findall(r"^\s*([0-9a-f]+):\s+([0-9a-f]{8})\s", listing, re.MULTILINE)}
    instructions = [record for record, _ in groups(head.records)]
    for instruction in instructions:
        link = image.link(int(instruction.fields["pa"], 16))
        assert words[link] == int(instruction.fields["encoding"], 16), instruction.fields


def test_without_memory_the_same_lines_but_m_lines(head_image: BootImage, head: Traced) -> None:
    plain = trace(head_image, "#300", memory=False)
    assert plain.run.stop.index == 300
    assert all(record.kind != "M" for record in plain.records)
    expected = [line for line, record in zip(head.lines, head.records, strict=True)
                if record.kind != "M" and record.time is not None and record.time < 300]
    assert plain.lines == expected


# -- a program of one load or store of each form --------------------------------

PROGRAM = """\
#define LINK_ADDRESS 0x40000000
_start:
    ldr     x1, =0x40001000
    ldr     x2, =0x1122334455667788
    mov     sp, x1
    str     x2, [x1]
    ldrb    w3, [x1, #1]
    ldrh    w4, [x1, #2]
    mov     x5, #1
    ldr     w6, [x1, x5, lsl #2]
    mov     x9, x1
    stp     x2, x1, [x9, #16]!
    ldp     x7, x8, [x9], #16
    ldr     q0, [x9, #-16]
    str     q0, [x9, #32]
    ldxr    x10, [sp]
    stxr    w11, x10, [sp]
    ldur    w12, [x9, #-4]
    strh    w2, [sp, #-2]!
    mov     x0, #0x9000000
    strb    w2, [x0]
    cmp     x1, x1
    b.ne    _start
    b.eq    done
    nop
done:
    b       done
    .ltorg
"""

# (instruction index, R/W, size, VA, value); VA == PA (MMU off).
EXPECTED_MEMORY = [
    (0, "R", 8, 0x4000_0060, 0x4000_1000),             # the literal pool, after `b done`
    (1, "R", 8, 0x4000_0068, 0x1122_3344_5566_7788),
    (3, "W", 8, 0x4000_1000, 0x1122_3344_5566_7788),
    (4, "R", 1, 0x4000_1001, 0x77),
    (5, "R", 2, 0x4000_1002, 0x5566),
    (7, "R", 4, 0x4000_1004, 0x1122_3344),
    (9, "W", 8, 0x4000_1010, 0x1122_3344_5566_7788),   # stp: two accesses
    (9, "W", 8, 0x4000_1018, 0x4000_1000),
    (10, "R", 8, 0x4000_1010, 0x1122_3344_5566_7788),  # ldp, post-index: at the base
    (10, "R", 8, 0x4000_1018, 0x4000_1000),
    (11, "R", 8, 0x4000_1010, 0x1122_3344_5566_7788),  # a Q register: two halves
    (11, "R", 8, 0x4000_1018, 0x4000_1000),
    (12, "W", 8, 0x4000_1040, 0x1122_3344_5566_7788),
    (12, "W", 8, 0x4000_1048, 0x4000_1000),
    (13, "R", 8, 0x4000_1000, 0x1122_3344_5566_7788),
    (14, "W", 8, 0x4000_1000, 0x1122_3344_5566_7788),  # stxr: no read
    (15, "R", 4, 0x4000_101C, 0),
    (16, "W", 2, 0x4000_0FFE, 0x7788),                 # pre-index through SP
]                                                       # strb to the UART: no line


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Traced:
    source = tmp_path_factory.mktemp("tarmac") / "forms.S"
    source.write_text(PROGRAM)
    return trace(build_image(source), "done", memory=True)


def test_memory_lines_of_each_form(forms: Traced) -> None:
    got = [(r.time, r.fields["rw"], int(r.fields["size"]), int(r.fields["address"], 16),
            r.value) for r in forms.records if r.kind == "M"]
    assert got == EXPECTED_MEMORY
    assert all(r.fields["address"] == r.fields["pa"] for r in forms.records if r.kind == "M")


def test_stack_pointer_lines(forms: Traced) -> None:
    sp = [(r.time, r.fields["name"], r.value) for r in forms.records
          if r.kind == "R" and r.fields["name"].startswith("SP")]
    assert sp == [(2, "SP_EL2", 0x4000_1000), (16, "SP_EL2", 0x4000_0FFE)]


def test_finish_detaches(head_image: BootImage) -> None:
    machine = Machine(head_image, Board())
    lines: list[str] = []
    tracer = TarmacTracer(machine, lines.append, memory=True)
    machine.run(max_insns=10)
    tracer.finish()
    written = len(lines)
    assert tracer.instructions == 10
    machine.run(max_insns=20)
    assert len(lines) == written


# -- the command line -------------------------------------------------------------


def _bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emu.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_trace_tarmac_on_the_command_line(head: Traced) -> None:
    """`bootemu trace --tarmac --memory`: stdout is the library's Tarmac trace,
    every line of it by the grammar; the stop record is on stderr."""
    done = _bootemu("trace", "--tarmac", "--memory", str(HEAD_S))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    records = [parse(line) for line in lines]
    assert len(records) == len(head.records)
    assert lines == head.lines
    assert done.stderr.startswith(f"bootemu: stopped after {head.run.stop.index} instructions")
    assert "it arrived at start_c" in done.stderr
    plain = _bootemu("trace", "--tarmac", "--until", "#50", str(HEAD_S))
    assert plain.returncode == 0, plain.stderr
    kinds = [parse(line).kind for line in plain.stdout.splitlines()]
    assert "M" not in kinds and kinds.count("IT") + kinds.count("IS") == 50


@pytest.mark.parametrize(("args", "message"), [
    (["--tarmac", "--json"], "--json and --tarmac cannot be combined"),
    (["--memory"], "--memory needs --tarmac"),
    (["--tarmac", "--window", "4"], "--window cannot be combined with --tarmac"),
])
def test_trace_tarmac_usage_errors(args: list[str], message: str) -> None:
    done = _bootemu("trace", *args, str(HEAD_S))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_an_abort_writes_its_syndrome_registers() -> None:
    """A data abort taken to EL2 writes ESR_EL2, FAR_EL2 and ELR_EL2 (DDI 0487
    D1.10 "Exception entry"); the Tarmac trace has their R lines with the values
    test_exceptions' table gives (a translation fault at level 3 on a load)."""
    from conftest import build_image as build_small_image
    from test_exceptions import EC_DABT_SAME, IL, TRANSLATION, _program, _tables

    va = 0x80_0000_0000 + 0x3000
    image = build_small_image(_program("ldr x3, [x2]", va), _tables())
    traced = trace(image, "done", memory=False)
    # They are written by the faulting load: its lines, not a later MSR's.
    [(_, lines)] = [(insn, lines) for insn, lines in groups(traced.records)
                    if int(insn.fields["address"], 16) == image.symbols["access"]]
    written = {r.fields["name"]: r.value for r in lines if r.kind == "R"}
    assert written["ESR_EL2"] == (EC_DABT_SAME << 26) | IL | (TRANSLATION + 3)
    assert written["FAR_EL2"] == va
    assert written["ELR_EL2"] == image.symbols["access"]
