"""The timeline as reports show it (issue 11, "reports a maintainer can read"):
cache-maintenance loops outside MMU-transition windows are one row each, inside
a window every instruction keeps its row, repeated stretches are shown once,
``--events`` chooses the categories, and the last line says where and why the
run ended.

The program below is litmus-style: its own tables, one DC CIVAC loop before the
MMU is ever on (outside any window), one inside the window of an MMU-off ->
MMU-on switch, and one DC ZVA loop with the MMU on over a buffer a load has
just used.  The expected counts, addresses and index distances come from the
program text and the architecture: a loop of ``dc; add; subs; b.ne`` runs four
instructions per iteration, its operands are ``buffer`` + 64 * i, and with the
MMU off a VA is its own PA (DDI 0487 D8.2.11 "The effects of disabling an
address translation stage"); the tables map the image's 2 MiB at VA == PA.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu.board.board import Board
from emu.checks.run import CheckRun, build_image, check_image
from emu.machine.events import (
    EVENT_CATEGORIES,
    CacheMaintenance,
    DescriptorWrite,
    MmuEnable,
    TlbInvalidate,
    TransitionWindow,
)
from emu.machine.stop import StopKind
from emu.report.check_report import format_text, to_json
from emu.report.timeline import (
    ALL_EVENTS,
    DEFAULT_EVENTS,
    CacheLoop,
    EventsError,
    MaintenanceStretch,
    Repeat,
    parse_events,
    timeline_rows,
)

LOAD = 0x4000_0000
N_OFF = 16        # iterations of the loop before the MMU is on
N_IN = 8          # iterations inside the MMU-off window
N_ON = 16         # iterations with the MMU on
LINE = 64         # the loops' step
BODY = 4          # dc, add, subs, b.ne

PROGRAM = f"""\
// timeline-loops: cache maintenance outside and inside an MMU-transition window.
//
// Rule: none is meant to fire; the program is compliant (TLBI ALLE2 + DSB
// before the MMU goes on, DDI 0487 D8.16.1; every SCTLR write followed by ISB).

#define LINK_ADDRESS 0x40000000       // linked and loaded here: VA == PA with the MMU off
#define SCTLR_OFF 0x30c50830
#define SCTLR_ON  0x30c50831
#define MAIR_VAL  0xff4400
#define TCR_VAL   0x80823519
#define TABLE     0x3
#define BLOCK     0x749

    .text
    .global _start
_start:
    ldr     x0, =SCTLR_OFF
    msr     sctlr_el2, x0
    isb
    ldr     x0, =MAIR_VAL
    msr     mair_el2, x0
    ldr     x0, =TCR_VAL
    msr     tcr_el2, x0
    adr     x1, l1
    adr     x2, l2
    orr     x3, x2, #TABLE
    str     x3, [x1, #8]                // L1[1]: VA 1..2 GiB -> l2
    ldr     x3, =0x40000000 | BLOCK
    str     x3, [x2]                    // L2[0]: the image's 2 MiB, VA == PA
    dsb     sy
    msr     ttbr0_el2, x1
    tlbi    alle2
    dsb     nsh
    isb
    adr     x2, buffer
    mov     x3, #{N_OFF}
clean_off:                              // MMU never on yet: outside any window
    dc      civac, x2
    add     x2, x2, #{LINE}
    subs    x3, x3, #1
    b.ne    clean_off
    dsb     sy
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0               // window 1: the first MMU on ...
    isb                                 // ... closed here
    ldr     x0, =SCTLR_OFF
    msr     sctlr_el2, x0               // window 2 opens: MMU off
    isb
    adr     x2, buffer
    mov     x3, #{N_IN}
clean_in:                               // inside window 2
    dc      civac, x2
    add     x2, x2, #{LINE}
    subs    x3, x3, #1
    b.ne    clean_in
    dsb     sy
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0
    isb                                 // window 2 closes
    adr     x2, buffer
    ldr     x4, [x2]                    // the TLB now holds buffer's page
    mov     x3, #{N_ON}
zero_on:                                // MMU on, outside any window
    dc      zva, x2
    add     x2, x2, #{LINE}
    subs    x3, x3, #1
    b.ne    zero_on
    dsb     sy
done:
    b       done

    .ltorg
    .balign 4096
buffer: .space 4096
l1:     .space 4096
l2:     .space 4096
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> CheckRun:
    source = tmp_path_factory.mktemp("loops") / "timeline-loops.S"
    source.write_text(PROGRAM)
    image = build_image(source, load_address=LOAD)
    checked = check_image(image, until="done", board=Board(), max_insns=100_000)
    assert checked.stop.kind is StopKind.ARRIVED, checked.stop.message
    assert checked.verdict == "clean", [f.message for f in checked.findings]
    return checked


def _loops(rows: list) -> list[CacheLoop]:
    return [row for row in rows if isinstance(row, CacheLoop)]


def test_a_loop_outside_a_window_is_one_row(run: CheckRun) -> None:
    buffer = run.image.symbols["buffer"]
    rows = timeline_rows(run.events, run.windows)
    off, on = _loops(rows)
    assert (off.operation, off.count) == ("DC CIVAC", N_OFF)
    assert (off.va_first, off.va_last, off.step, off.runs) == (
        buffer, buffer + (N_OFF - 1) * LINE, LINE, 1)
    # MMU off: the PA of each address is the address.
    assert (off.pa_of(off.va_first), off.pa_of(off.va_last)) == (off.va_first, off.va_last)
    assert off.last_index - off.first_index == (N_OFF - 1) * BODY
    assert off.first.pc == run.image.symbols["clean_off"]
    assert (on.operation, on.count) == ("DC ZVA", N_ON)
    assert (on.va_first, on.va_last) == (buffer, buffer + (N_ON - 1) * LINE)
    # MMU on, identity-mapped: the TLB entry the load made gives PA == VA.
    assert (on.pa_of(on.va_first), on.pa_of(on.va_last)) == (on.va_first, on.va_last)
    assert on.last_index - on.first_index == (N_ON - 1) * BODY


def test_a_loop_inside_a_window_keeps_a_row_per_instruction(run: CheckRun) -> None:
    buffer = run.image.symbols["buffer"]
    rows = timeline_rows(run.events, run.windows)
    inside = [row for row in rows if isinstance(row, CacheMaintenance)]
    assert [row.address for row in inside] == [buffer + i * LINE for i in range(N_IN)]
    assert {row.pc for row in inside} == {run.image.symbols["clean_in"]}
    assert [b.index - a.index for a, b in zip(inside, inside[1:], strict=False)] == (
        [BODY] * (N_IN - 1))
    window = run.windows[1]
    assert window.closed_by is not None
    assert all(window.opened_by.index < row.index < window.closed_by.index for row in inside)
    assert not any(isinstance(row, Repeat) for row in rows)


def test_the_text_and_json_reports_fold_the_same_way(run: CheckRun) -> None:
    buffer = run.image.symbols["buffer"]
    text = format_text(run)
    timeline = text.split("MMU timeline")[1].split("Transition window")[0]
    assert f"DC CIVAC x{N_OFF}, VA {buffer:#x}-{buffer + (N_OFF - 1) * LINE:#x}" in timeline
    assert f"DC ZVA x{N_ON}, VA {buffer:#x}-" in timeline
    assert sum(1 for line in timeline.splitlines() if "DC CIVAC VA " in line) == N_IN
    report = to_json(run)
    loops = [row for row in report["timeline"] if row["kind"] == "cache-loop"]
    assert [(row["operation"], row["count"]) for row in loops] == [
        ("DC CIVAC", N_OFF), ("DC ZVA", N_ON)]
    assert loops[0]["va_first"] == loops[0]["pa_first"] == buffer
    assert loops[0]["last_index"] - loops[0]["first_index"] == (N_OFF - 1) * BODY
    singles = [row for row in report["timeline"] if row["kind"] == "cache"]
    assert len(singles) == N_IN


def test_events_chooses_the_categories(run: CheckRun) -> None:
    only_cache = timeline_rows(run.events, run.windows, frozenset({"cache"}))
    assert all(isinstance(row, CacheLoop | CacheMaintenance) for row in only_cache)
    mmu = timeline_rows(run.events, run.windows, frozenset({"mmu"}))
    # On, off, on: three SCTLR_EL2.M changes.
    assert [row.kind for row in mmu] == ["mmu-on", "mmu-off", "mmu-on"]
    # Barriers are watched around the window: shown with 'all', not by default.
    assert any(row.category == "barrier" for row in
               timeline_rows(run.events, run.windows, ALL_EVENTS)
               if not isinstance(row, CacheLoop | Repeat))
    assert not any(getattr(row, "category", None) == "barrier"
                   for row in timeline_rows(run.events, run.windows))
    report = to_json(run, frozenset({"ttbr"}))
    assert report["events"] == ["ttbr"]
    assert [row["kind"] for row in report["timeline"]] == ["ttbr-write"]


def test_the_last_line_says_where_why_and_what_was_judged(run: CheckRun) -> None:
    last = format_text(run).splitlines()[-1]
    done = run.image.symbols["done"]
    assert last.startswith("Verdict: clean")
    assert f"stopped at #{run.executed}, PC {done:#x} (done)" in last
    assert "it arrived at done" in last
    assert f"judged up to there: {run.executed} instructions, 2 MMU-transition windows" in last
    report = to_json(run)
    assert report["end"]["kind"] == "arrived" and report["end"]["pc"] == done
    assert report["proved"]["instructions"] == run.executed
    assert report["proved"]["windows"] == 2


def test_parse_events() -> None:
    assert parse_events("mmu,ttbr") == {"mmu", "ttbr"}
    assert parse_events("all") == ALL_EVENTS == frozenset(EVENT_CATEGORIES)
    assert parse_events("default") == DEFAULT_EVENTS == ALL_EVENTS - {"barrier"}
    assert parse_events("default,barrier") == ALL_EVENTS
    with pytest.raises(EventsError, match="'caches' is not an event category"):
        parse_events("mmu,caches")
    with pytest.raises(EventsError, match="empty"):
        parse_events("mmu,,tlbi")


# -- folding, on events made by hand ------------------------------------------

def _cache(index: int, pc: int, address: int, operation: str = "DC CIVAC") -> CacheMaintenance:
    return CacheMaintenance(index, pc, pc, 2, operation, address)


def _store(index: int, pc: int) -> DescriptorWrite:
    return DescriptorWrite(index, pc, pc, 2, 0, 0x4001_0000 + 8 * index, index, 0, ())


def _tlbi(index: int, pc: int) -> TlbInvalidate:
    return TlbInvalidate(index, pc, pc, 2, "TLBI VAE2", 0)


def _map_clear_unmap(rounds: int) -> list:
    """map; zero the page (a loop); unmap; TLBI: ``rounds`` times over, as Xen
    4.17's map_domain_page + clear_page does."""
    events = []
    for round_ in range(rounds):
        base = 1000 * round_
        events.append(_store(base, 0x100))
        events += [_cache(base + 10 + 4 * i, 0x200, 0x8000 + 64 * i, "DC ZVA")
                   for i in range(64)]
        events.append(_store(base + 500, 0x300))
        events.append(_tlbi(base + 510, 0x304))
    return events


def test_a_repeated_stretch_is_shown_once_with_its_count() -> None:
    events = _map_clear_unmap(4)
    # Asked for descriptor writes: each stays a row, and the rounds repeat.
    rows = timeline_rows(events, [], ALL_EVENTS)
    assert len(rows) == 5
    first, loop, unmap, tlbi, repeat = rows
    assert first is events[0] and unmap.category == "descriptor" and tlbi.category == "tlbi"
    assert isinstance(loop, CacheLoop) and loop.count == 64
    assert isinstance(repeat, Repeat)
    assert (repeat.times, repeat.last_index, repeat.events) == (4, 3510, 4 * 67)
    assert "came 3 more time(s)" in repeat.describe()


def test_maintenance_only_rows_are_one_stretch_in_the_default_timeline() -> None:
    events = _map_clear_unmap(4)
    [stretch] = timeline_rows(events, [])
    assert isinstance(stretch, MaintenanceStretch)
    assert len(stretch.rows) == 4 * 4  # store, loop, store, TLBI per round
    assert stretch.counts() == {"descriptor-write": 8, "DC ZVA": 4 * 64, "TLBI VAE2": 4}
    assert (stretch.first_index, stretch.last_index) == (0, 3510)
    assert stretch.describe() == ("maintenance in 16 rows: descriptor-write x8 (0 live), "
                                  "DC ZVA x256, TLBI VAE2 x4, #0-#3510")
    # Fewer than MIN_STRETCH rows stay as they are; an MMU event splits a stretch.
    short = [_store(0, 0x100), _tlbi(10, 0x104), _cache(20, 0x108, 0x8000)]
    assert timeline_rows(short, []) == short
    opened = MmuEnable(2000, 0x600, 0x600, 2, "SCTLR_EL2", 0, 1, None, None)  # type: ignore[arg-type]
    window = TransitionWindow(opened_by=opened, old=None)
    window.closed_by = _tlbi(2001, 0x604)
    split = timeline_rows([*_map_clear_unmap(2), opened, window.closed_by], [window])
    assert [type(row).__name__ for row in split] == [
        "MaintenanceStretch", "MmuEnable", "TlbInvalidate"]


def test_what_a_finding_points_at_and_transition_steps_never_fold() -> None:
    events = [_tlbi(10 * i, 0x400) for i in range(6)]
    rows = timeline_rows(events, [], keep=frozenset({30}))
    # 0, 10, 20 fold; 30 is kept; 40, 50 fold again.
    assert [type(row).__name__ for row in rows] == [
        "TlbInvalidate", "Repeat", "TlbInvalidate", "TlbInvalidate", "Repeat"]
    assert [row.index for row in rows if isinstance(row, TlbInvalidate)] == [0, 30, 40]


def test_a_loop_split_by_a_window_is_not_folded_across_it() -> None:
    before = [_cache(i * 4, 0x500, 0x9000 + 64 * i) for i in range(3)]
    inside = [_cache(100 + i * 4, 0x500, 0x9000 + 64 * i) for i in range(3)]
    opened = MmuEnable(90, 0x600, 0x600, 2, "SCTLR_EL2", 0, 1, None, None)  # type: ignore[arg-type]
    window = TransitionWindow(opened_by=opened, old=None)
    window.closed_by = _tlbi(120, 0x604)
    rows = timeline_rows([*before, opened, *inside], [window])
    assert isinstance(rows[0], CacheLoop) and rows[0].count == 3
    assert rows[1] is opened
    assert rows[2:] == inside


def test_a_loop_over_separate_ranges_counts_its_runs() -> None:
    events = [_cache(4 * i, 0x700, address) for i, address in
              enumerate([0x1000, 0x1040, 0x1080, 0x5000, 0x5040])]
    [loop] = timeline_rows(events, [])
    assert isinstance(loop, CacheLoop)
    assert (loop.va_first, loop.va_last, loop.step, loop.runs) == (0x1000, 0x5040, 0x40, 2)
    assert loop.pa_of(0x1000) is None  # no event knew a PA
    assert "in 2 runs" in loop.describe()


BOOTEMU = [sys.executable, "-m", "emu.cli.main"]


def test_check_events_option(tmp_path: Path) -> None:
    source = tmp_path / "timeline-loops.S"
    source.write_text(PROGRAM)
    base = [*BOOTEMU, "check", str(source), "--until", "done", "--json"]
    result = subprocess.run([*base, "--events", "mmu,cache"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {row["category"] for row in report["timeline"]} == {"mmu", "cache"}
    bad = subprocess.run([*base, "--events", "mmu,tlb"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    [line] = bad.stderr.strip().splitlines()
    assert "--events" in line and "'tlb' is not an event category" in line
    helped = subprocess.run([*BOOTEMU, "check", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert "--events" in helped.stdout and "barrier" in helped.stdout


GNU = ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-objcopy")


@pytest.mark.skipif(any(shutil.which(tool) is None for tool in GNU),
                    reason="GNU aarch64 toolchain (binutils/gcc-aarch64-linux-gnu) missing")
def test_the_program_is_what_gnu_as_makes_of_it(tmp_path: Path) -> None:
    """The addresses the expectations use (buffer, the loops' labels) are those
    of the program GNU as builds."""
    source, obj, elf, binary = (tmp_path / name for name in ("p.S", "p.o", "p.elf", "p.bin"))
    source.write_text(PROGRAM)
    subprocess.run(["aarch64-linux-gnu-gcc", "-c", "-x", "assembler-with-cpp", "-undef",
                    "-nostdinc", str(source), "-o", str(obj)], check=True)
    subprocess.run(["aarch64-linux-gnu-ld", f"-Ttext={LOAD:#x}", "-e", "_start", str(obj),
                    "-o", str(elf)], check=True, capture_output=True)
    subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", "-j", ".text", str(elf),
                    str(binary)], check=True)
    image = build_image(source, load_address=LOAD)
    assert image.payload == binary.read_bytes()
    symbols = subprocess.run(["aarch64-linux-gnu-nm", str(elf)], capture_output=True,
                             text=True, check=True).stdout
    gnu = {name: int(value, 16) for value, _kind, name in
           (line.split() for line in symbols.splitlines() if len(line.split()) == 3)}
    for label in ("buffer", "clean_off", "clean_in", "zero_on", "done"):
        assert image.symbols[label] == gnu[label], label
