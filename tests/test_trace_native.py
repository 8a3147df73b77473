"""The native trace (issue 13): ``bootemu trace`` without a Python call per instruction.

:class:`~emu.report.trace.Tracer` formats the batches the machine's native
trace log hands over (``Machine.record_instructions``); the reference is
:class:`~emu.report.trace.PerInstructionTracer`, the per-instruction Python
path the trace was made by before.  The two must print the same lines.  The
one place they differ on purpose: an event the machine reports only after
the next instruction's hook ran (a store into live tables, reported at the
stop right behind it) annotates its store in the native trace, where the
per-instruction path had already moved on.

Expectations that do not come from either tracer come from the programs:
consecutive indices from #0 to the stop, and each line's encoding equal to
the assembled program's bytes at its address.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HEAD_S, REPO, build_image
from test_exceptions import CASES, _program, _tables

from emu.analysis.corpus import BUNDLED_DEFECTS, load_defects, materialize
from emu.asm.assembler import assemble_text
from emu.checks.run import build_image as build_source_image
from emu.image.boot_image import BootImage
from emu.image.program import image_from_program
from emu.machine import tracelog
from emu.machine.machine import Machine
from emu.machine.stop import Stop
from emu.machine.targets import run_to_target
from emu.machine.tracelog import InstructionBatch
from emu.report.trace import Layout, PerInstructionTracer, TraceGap, TraceLine, Tracer

LOAD = 0x4000_0000


@pytest.fixture(scope="module")
def head_image() -> BootImage:
    return build_source_image(str(HEAD_S))


def native(image: BootImage, until: str, layout: Layout = "text", window: int | None = None,
           events: frozenset[str] | None = None,
           max_insns: int = 1_000_000) -> tuple[list[str], Stop, Machine]:
    machine = Machine(image)
    chunks: list[str] = []
    tracer = Tracer(machine, chunks.append, window=window, events=events, layout=layout)
    stop = run_to_target(machine, until, max_insns).stop
    tracer.flush()
    text = "".join(chunks)
    assert not text or text.endswith("\n")
    return text.splitlines(), stop, machine


def reference(image: BootImage, until: str, layout: Layout = "text", window: int | None = None,
              events: frozenset[str] | None = None,
              max_insns: int = 1_000_000) -> tuple[list[str], Stop]:
    machine = Machine(image)
    lines: list[str] = []

    def sink(line: TraceLine | TraceGap) -> None:
        if layout == "json":
            lines.append(json.dumps(line.to_dict()))
        elif layout == "pc" and isinstance(line, TraceLine):
            lines.append(line.format_pc())
        else:
            lines.append(line.format())

    tracer = PerInstructionTracer(machine, sink, window=window, events=events)
    stop = run_to_target(machine, until, max_insns).stop
    tracer.flush()
    return lines, stop


@pytest.mark.parametrize(("layout", "window", "events"), [
    ("text", None, None),
    ("json", None, None),
    ("pc", None, None),
    ("text", 3, None),
    ("json", 2, frozenset({"mmu"})),
    ("text", 6, frozenset({"barrier", "cache"})),
    ("pc", 1, None),
])
def test_head_s_traces_as_the_per_instruction_path_does(
        head_image: BootImage, layout: Layout, window: int | None,
        events: frozenset[str] | None) -> None:
    lines, stop, _ = native(head_image, "start_c", layout, window, events)
    expected, expected_stop = reference(head_image, "start_c", layout, window, events)
    assert stop == expected_stop
    assert len(lines) == len(expected)
    for got, want in zip(lines, expected, strict=True):
        assert got == want


def test_small_batches_make_the_same_trace(head_image: BootImage,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Batches of 7: the log fills mid-block, and events drain it partway.
    monkeypatch.setattr(tracelog, "CAPACITY", 7)
    for window in (None, 3):
        lines, _, machine = native(head_image, "start_c", window=window)
        assert machine._trace_log._capacity == 7
        assert lines == reference(head_image, "start_c", window=window)[0]


def test_head_s_trace_follows_the_program(head_image: BootImage) -> None:
    """Every instruction from #0 to the stop, once, in order, each with the
    program's own bytes at its address; the PC-only trace is its first two
    columns."""
    lines, stop, _ = native(head_image, "start_c")
    assert len(lines) == stop.index
    payload, load = head_image.payload, head_image.load_address
    for number, line in enumerate(lines):
        fields = line.split()
        index, va, pa, encoding = int(fields[0]), int(fields[1], 16), int(fields[2], 16), fields[4]
        assert index == number
        # The VA is the PA (MMU off, or identity-mapped) or the PA's link address.
        assert va == pa or head_image.link(pa) == va
        word = int.from_bytes(payload[pa - load:pa - load + 4], "little")
        assert encoding == f"{word:08x}", line
    assert lines[0].split()[1:4:2] == [f"{head_image.entry:#018x}", "_start"]
    pc_only, _, _ = native(head_image, "start_c", layout="pc")
    assert pc_only == [line[:29] for line in lines]


@pytest.mark.parametrize("name", [
    "switch-without-isb-after-mmu-on",  # a store into live tables
    "boot-idmap-missing",  # an abort right after the MMU goes on
    "switch-at-virtual-address",  # a fetch from missing memory
    "switch-without-tlbi",
    "runtime-image-execute-never",
])
def test_defects_trace_as_the_per_instruction_path_does(name: str, tmp_path: Path) -> None:
    [defect] = [d for d in load_defects(BUNDLED_DEFECTS) if d.name == name]
    image = build_source_image(str(materialize(defect, HEAD_S, tmp_path)))
    lines, stop, _ = native(image, "start_c")
    expected, expected_stop = reference(image, "start_c")
    assert stop == expected_stop
    assert lines == expected


@pytest.mark.parametrize(("name", "access", "va"), [case[:3] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_an_abort_taken_to_the_vector(name: str, access: str, va: int) -> None:
    """A data abort: the aborted instruction carries the abort, and the
    vector's first instruction follows at the same index (the aborted one did
    not execute).  An instruction abort: the branch, then the vector (the
    instruction that could not be fetched has no line)."""
    image = build_image(_program(access, va), _tables())
    lines, _, _ = native(image, "done")
    assert lines == reference(image, "done")[0]
    [access_line] = [i for i, line in enumerate(lines) if f" {access}" in line]
    index = int(lines[access_line].split()[0])
    vector = image.symbols["vectors"] + 0x200
    if access.startswith("br"):
        assert int(lines[access_line + 1].split()[0]) == index + 1
    else:
        assert "data abort: EL2 -> EL2" in lines[access_line]
        assert int(lines[access_line + 1].split()[0]) == index
    assert int(lines[access_line + 1].split()[1], 16) == vector


# IC IVAU after rewriting an instruction: the trace shows the new one.  (A
# line is made when the machine hands the log over - at an event, a TLB fill,
# a stop: the TLBI hands over the first pass before the store rewrites it.)
SELF_MODIFYING = """\
_start:
    mov x3, #2
    adr x1, patch
again:
patch:
    mov x0, #1
    tlbi alle2
    ldr w2, =0xd2800040
    str w2, [x1]
    dc cvau, x1
    dsb ish
    ic ivau, x1
    dsb ish
    isb
    subs x3, x3, #1
    b.ne again
done:
    b done
"""


def _source_image(text: str) -> BootImage:
    return image_from_program(assemble_text(text, filename="t.S", base=LOAD), LOAD)


def test_rewritten_code_is_shown_as_it_runs() -> None:
    image = _source_image(SELF_MODIFYING)
    lines, _, _ = native(image, "done")
    assert lines == reference(image, "done")[0]
    patched = [line.split(None, 5)[4:] for line in lines if " patch " in f" {line} "]
    assert patched == [["d2800020", "mov x0, #1"], ["d2800040", "mov x0, #2"]]


# EL2 -> EL1 by ERET, then an SVC-free spin at EL1: each batch is of one EL.
DROP_TO_EL1 = """\
_start:
    mov x0, #(1 << 31)
    msr hcr_el2, x0
    mov x0, #0x3c5
    msr spsr_el2, x0
    adr x0, el1
    msr elr_el2, x0
    eret
el1:
    mov x1, #1
    mov x2, #2
done:
    b done
"""


def test_batches_are_of_one_exception_level() -> None:
    image = _source_image(DROP_TO_EL1)
    machine = Machine(image)
    batches: list[InstructionBatch] = []
    machine.record_instructions(batches.append)
    stop = machine.run(["done"])
    records = [(index, va, batch.el) for batch in batches
               for index, va in zip(batch.indices, batch.addresses, strict=True)]
    # The run stops in front of `done`, before the hook logs it.
    assert [index for index, _, _ in records] == list(range(stop.index))
    el1 = image.symbols["el1"]
    assert all(el == (1 if va >= el1 else 2) for _, va, el in records), records


def test_recording_starts_and_stops_between_stretches(head_image: BootImage) -> None:
    machine = Machine(head_image)
    seen: list[int] = []

    def record(batch: InstructionBatch) -> None:
        seen.extend(batch.indices)

    machine.record_instructions(record)
    machine.run(max_insns=1000)
    machine.stop_recording(record)
    assert seen == list(range(1000))
    machine.run(max_insns=2000)
    assert len(seen) == 1000  # nothing more
    machine.record_instructions(record)
    stop = machine.run(["start_c"])
    assert seen[1000:] == list(range(2000, stop.index))


def test_pc_only_on_the_command_line(tmp_path: Path) -> None:
    def bootemu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "emu.cli", "trace", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    text, pc = bootemu(), bootemu("--pc-only")
    assert pc.returncode == text.returncode == 0, pc.stderr
    assert pc.stdout.splitlines()[:-1] == [line[:29] for line in text.stdout.splitlines()[:-1]]
    assert pc.stdout.splitlines()[-1] == text.stdout.splitlines()[-1]
    windowed = bootemu("--pc-only", "--window", "2").stdout.splitlines()
    assert any(line.startswith("... ") for line in windowed)
    assert bootemu("--pc-only", "--json").returncode == 2


# A code page unmapped (break: invalid entry, DSB, ISB) and called again with no
# TLB invalidation.  The entry the first call cached may still be used for the
# fetch (DDI 0487 D8.17 "TLB maintenance", R_GPPYH: an entry survives a table
# change until a TLBI covers it), and bootemu's machine does use it, as a stale
# use: the line must show where the fetch went and what ran, not a fault.
STALE_FETCH = """\
#define DVA 0x40200000
_start:
    ldr x0, =0x30c50830
    msr sctlr_el2, x0
    isb
    ldr x0, =0xff4400
    msr mair_el2, x0
    ldr x0, =0x80823519
    msr tcr_el2, x0
    adr x1, l1
    adr x2, l2
    adr x3, l3
    orr x9, x2, #3
    str x9, [x1, #8]
    ldr x9, =0x40000749
    str x9, [x2]
    orr x9, x3, #3
    str x9, [x2, #8]
    adr x9, code_a
    ldr x10, =0x74b
    orr x9, x9, x10
    str x9, [x3]
    dsb ish
    msr ttbr0_el2, x1
    tlbi alle2
    dsb ish
    isb
    ldr x0, =0x30c50831
    msr sctlr_el2, x0
    isb
    ldr x4, =DVA
    blr x4
    str xzr, [x3]
    dsb ish
    isb
    blr x4
done:
    b done
    .ltorg
    .balign 4096
code_a:
    mov x5, #0xa1
    ret
    .balign 4096
l1: .space 4096
l2: .space 4096
l3: .space 4096
"""


def test_a_fetch_through_a_stale_entry_shows_where_it_went() -> None:
    image = _source_image(STALE_FETCH)
    lines, _, machine = native(image, "done")
    assert lines == reference(image, "done")[0]
    code_a = image.symbols["code_a"]
    dva = 0x40200000
    calls = [line for line in lines if int(line.split()[1], 16) == dva]
    assert len(calls) == 2, calls
    word = int.from_bytes(image.payload[code_a - LOAD:code_a - LOAD + 4], "little")
    for line in calls:
        fields = line.split(None, 5)
        assert int(fields[2], 16) == code_a, line
        assert [fields[4], fields[5].partition("    ; ")[0]] == [f"{word:08x}", "mov x5, #0xa1"]
    assert "through a TLB entry" in calls[1], calls[1]  # the note: a stale entry's use


def _barrier_word(text: str) -> str | None:
    """What a barrier's note says, from capstone's disassembly: DSB/DMB with
    their option (DDI 0487 C6.2 "DSB", "DMB"), ISB, and ERET."""
    mnemonic, _, option = text.partition(" ")
    if mnemonic in ("dsb", "dmb"):
        return f"{mnemonic.upper()} {option.upper()}"
    return mnemonic.upper() if mnemonic in ("isb", "eret") else None


def test_every_barrier_is_named(head_image: BootImage) -> None:
    """Barriers are named wherever they are, not only where the machine watched."""
    lines, _, machine = native(head_image, "start_c", layout="json")
    records = [json.loads(line) for line in lines if '"gap"' not in line]
    barriers = 0
    for record in records:
        expected = _barrier_word(record["disassembly"])
        note = record["event"] or ""
        if expected is None:
            assert not note.startswith(("DSB", "DMB", "ISB", "ERET")), record
        else:
            barriers += 1
            assert note.split("; ")[0] == expected, record
    # head.S's barriers: more than the machine's hooks watch (those in windows).
    watched = sum(1 for e in machine.events if e.category == "barrier")
    assert barriers > watched


@pytest.mark.parametrize("name", [d.name for d in load_defects(BUNDLED_DEFECTS)] + ["head.S"])
def test_every_event_check_reports_is_in_the_trace(name: str, tmp_path: Path) -> None:
    """The trace annotates each instruction with every event ``check`` reports
    at it; an abort the run stops on, at an instruction that never ran, is in
    the stop record instead."""
    from emu.checks.run import check_image

    if name == "head.S":
        source = HEAD_S
    else:
        [defect] = [d for d in load_defects(BUNDLED_DEFECTS) if d.name == name]
        source = materialize(defect, HEAD_S, tmp_path)
    image = build_source_image(str(source))
    run = check_image(image, until="start_c")
    lines, stop, _ = native(image, "start_c", layout="json")
    notes: dict[int, str] = {}
    for line in lines:
        record = json.loads(line)
        if record.get("event"):
            notes[record["index"]] = notes.get(record["index"], "") + record["event"]
    assert run.events or name == "pre-rework-layout"  # that one's finding is of the layout
    for event in run.events:
        if event.category == "barrier":
            continue  # named from the instruction (test_every_barrier_is_named)
        if event.index in notes:
            assert event.describe() in notes[event.index], (event, notes[event.index])
        else:
            assert event.index == stop.index and event.kind == "exception", event
            assert stop.message and event.describe().split(":")[0] in stop.message
