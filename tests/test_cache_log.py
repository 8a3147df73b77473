"""IC and DC instructions are logged natively (emu/machine/_cachelog.c) and
become events later, in order: the log must lose nothing when it fills up, and
its events must keep their place among the events Python emits at once (TLBI).

The expected indices come from the program text: with the MMU off (DDI 0487
D8.2.11: a VA is its own PA) a loop ``dc civac; subs; b.ne`` runs three
instructions per iteration; the second loop, ``dc civac; tlbi alle2; dsb sy;
subs; b.ne``, five, its TLBI one instruction after its DC.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emu.board.board import Board
from emu.checks.run import CheckRun, build_image, check_image
from emu.machine.events import CacheMaintenance, TlbInvalidate
from emu.machine.stop import StopKind

LOAD = 0x4000_0000
# More than the native log holds (4096), so it is drained while the guest runs.
N_MANY = 10_000
N_MIXED = 100

PROGRAM = f"""\
// cache-log: one DC CIVAC loop longer than the native log, then DC and TLBI interleaved.
// Rule: none is meant to fire (the MMU stays off).
#define LINK_ADDRESS 0x40000000       // linked and loaded here: VA == PA
    .text
    .global _start
_start:
    adr     x2, line
    mov     x3, #{N_MANY}
many:
    dc      civac, x2
    subs    x3, x3, #1
    b.ne    many
    mov     x3, #{N_MIXED}
mixed:
    dc      civac, x2
    tlbi    alle2
    dsb     sy
    subs    x3, x3, #1
    b.ne    mixed
done:
    b       done

    .balign 64
line: .space 64
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> CheckRun:
    source: Path = tmp_path_factory.mktemp("cachelog") / "cache-log.S"
    source.write_text(PROGRAM)
    image = build_image(source, load_address=LOAD)
    checked = check_image(image, until="done", board=Board(), max_insns=200_000)
    assert checked.stop.kind is StopKind.ARRIVED, checked.stop.message
    return checked


def test_a_loop_longer_than_the_log_loses_nothing(run: CheckRun) -> None:
    many = run.image.symbols["many"]
    line = run.image.symbols["line"]
    first = run.image.symbols["_start"]
    events = [e for e in run.events if isinstance(e, CacheMaintenance) and e.pc == many]
    # Two instructions before the loop; three per iteration.
    start = (many - first) // 4
    assert [e.index for e in events] == [start + 3 * i for i in range(N_MANY)]
    assert {(e.operation, e.operand, e.data_pa, e.pa, e.el) for e in events} == {
        ("DC CIVAC", line, line, many, 2)}


def test_logged_events_keep_their_place_among_the_others(run: CheckRun) -> None:
    mixed = run.image.symbols["mixed"]
    events = [e for e in run.events if isinstance(e, CacheMaintenance | TlbInvalidate)
              and mixed <= e.pc < mixed + 8]
    kinds = [(type(e).__name__, e.index - events[0].index) for e in events]
    assert kinds == [(kind, 5 * i + offset) for i in range(N_MIXED)
                     for kind, offset in (("CacheMaintenance", 0), ("TlbInvalidate", 1))]
    indices = [e.index for e in run.events]
    assert indices == sorted(indices)
