"""The machine's debugging API (issue 12): stepping, run targets, breakpoints by
VA and by PA, watchpoints that stop before the access, memory by VA and PA, and
registers by name.

Expected values come from the program text and the architecture: each
instruction below runs once in order; CurrentEL holds the EL in bits [3:2]
(DDI 0487 C5.2.1), so 0x8 at EL2; an Arm watchpoint stops before the access
completes (DDI 0487 D2.10.5), so after a write watchpoint the memory still
holds its old value and the store's base register has not been written back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emu.board.board import Board
from emu.checks.run import build_image
from emu.machine.debugging import WatchKind
from emu.machine.machine import Machine, MemoryAccessError
from emu.machine.stop import StopKind

PROGRAM = """\
// debugging: loads, a post-indexed store and a loop; the MMU stays off.
#define LINK_ADDRESS 0x40000000       // linked and loaded here: VA == PA
    .text
    .global _start
_start:
    adr     x2, value
    mov     x5, #0
load:
    ldr     x2, [x2]                  // its own address register: runs once or breaks
    add     x5, x5, #1
    adr     x3, slot
    mov     x4, #7
store:
    str     x4, [x3], #8
    add     x5, x5, #1
spin:
    add     x5, x5, #1
    b       spin
    .balign 8
value:  .quad 0x1234
slot:   .quad 0
"""


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    source = tmp_path / "debugging.S"
    source.write_text(PROGRAM)
    return Machine(build_image(source, load_address=0x4000_0000), Board())


def test_step_runs_exactly_the_instructions_asked(machine: Machine) -> None:
    assert machine.reg("CurrentEL") == 0x8
    stop = machine.step()
    assert (stop.kind, stop.index, stop.pc) == (StopKind.STEPPED, 1, 0x4000_0004)
    stop = machine.step(2)  # mov, ldr
    assert (stop.kind, stop.index) == (StopKind.STEPPED, 3)
    assert (machine.reg("x2"), machine.reg("x5")) == (0x1234, 0)


def test_run_takes_symbols_offsets_counts_and_continues_past_a_hit(machine: Machine) -> None:
    symbols = machine.image.symbols
    stop = machine.run(until=["store"])
    assert (stop.kind, stop.pc, stop.index) == (StopKind.ARRIVED, symbols["store"], 6)
    stop = machine.run(until="store+4")
    assert (stop.pc, stop.index) == (symbols["store"] + 4, 7)
    # spin is a two-instruction loop: each continue comes back two later.
    assert machine.run("spin").index == 8
    assert machine.run("spin").index == 10
    stop = machine.run("#15")
    assert (stop.kind, stop.index, stop.message.startswith("arrived at #15")) == (
        StopKind.ARRIVED, 15, True)


def test_breakpoints_stop_without_a_target_and_by_physical_address(machine: Machine) -> None:
    spin = machine.image.symbols["spin"]
    breakpoint = machine.add_breakpoint(spin, physical=True)  # MMU off: VA == PA
    stop = machine.run()
    assert (stop.pc, stop.index) == (spin, 8)
    assert machine.run().index == 10
    machine.remove_breakpoint(breakpoint)
    assert machine.run(max_insns=30).kind is StopKind.BUDGET


def test_a_write_watchpoint_stops_before_the_store(machine: Machine) -> None:
    slot = machine.image.symbols["slot"]
    machine.add_watchpoint(slot, 8, WatchKind.WRITE)
    stop = machine.run()
    store = machine.image.symbols["store"]
    assert (stop.kind, stop.pc, stop.index) == (StopKind.WATCHPOINT, store, 6)
    assert machine.read_memory(slot, 8) == bytes(8)
    assert machine.reg("x3") == slot
    # Continuing performs the store once.
    assert machine.run("spin").index == 8
    assert machine.read_memory(slot, 8) == (7).to_bytes(8, "little")
    assert machine.reg("x3") == slot + 8


def test_a_read_watchpoint_stops_before_a_load_into_its_own_address(machine: Machine) -> None:
    value = machine.image.symbols["value"]
    machine.add_watchpoint(value, 8, WatchKind.READ)
    stop = machine.run()
    assert (stop.kind, stop.pc) == (StopKind.WATCHPOINT, machine.image.symbols["load"])
    assert machine.reg("x2") == value  # the load undone: x2 still its address
    assert machine.step().kind is StopKind.STEPPED
    assert machine.reg("x2") == 0x1234


def test_memory_by_virtual_and_physical_address(machine: Machine) -> None:
    value = machine.image.symbols["value"]
    assert machine.read_memory(value, 8) == (0x1234).to_bytes(8, "little")
    assert machine.read_memory(value, 8, physical=True) == (0x1234).to_bytes(8, "little")
    machine.write_memory(value, (0x5678).to_bytes(8, "little"))
    machine.run("load+4")
    assert machine.reg("x2") == 0x5678
    with pytest.raises(MemoryAccessError, match="0x10"):
        machine.read_memory(0x10, 4, physical=True)
    with pytest.raises(ValueError, match="no register named 'X99'"):
        machine.reg("X99")


def test_a_physical_watchpoint_catches_stores_with_the_mmu_off_and_on() -> None:
    """head.S's runtime_pgtable (loaded at PA 0x40007000) is cleared by zero_bss
    with the MMU off, then written by create_runtime_page_tables, which
    primary_switched calls at the link address with the MMU on (head.S: "the
    first code run at the link address"); its entry 0 is a table descriptor
    (bits [1:0] = 0b11, DDI 0487 D8.3.1)."""
    head = Path(__file__).resolve().parent.parent / "asm" / "head.S"
    machine = Machine(build_image(head), Board())
    machine.add_watchpoint(0x4000_7000, 8, WatchKind.WRITE, physical=True)
    first = machine.run()
    assert first.kind is StopKind.WATCHPOINT and first.pc < 0x80_0000_0000
    assert machine.reg("SCTLR_EL2") & 1 == 0
    second = machine.run()
    while second.kind is StopKind.WATCHPOINT and second.pc < 0x80_0000_0000:
        second = machine.run()  # zero_bss's later stores to the same 16 bytes, if any
    assert second.kind is StopKind.WATCHPOINT, second.message
    assert machine.reg("SCTLR_EL2") & 1 == 1
    assert machine.image.symbolize(second.pc).startswith("create_runtime_page_tables")
    value = int(second.message.split("write of ")[1].split()[0], 16)
    assert value & 0b11 == 0b11


def test_a_virtual_watchpoint_fires_on_its_va_not_on_an_alias_of_its_pa() -> None:
    """runtime_pgtable is at link VA 0x8000207000 (PA 0x40007000).  zero_bss
    clears it through its identity alias (VA == PA: adr with the MMU off); the
    first store through the link address is create_runtime_page_tables's, run
    at the link address after the MMU is on (head.S), writing entry 0 as a
    table descriptor (bits [1:0] = 0b11).  Arm's watchpoints compare VAs."""
    head = Path(__file__).resolve().parent.parent / "asm" / "head.S"
    machine = Machine(build_image(head), Board())
    machine.add_watchpoint(0x80_0020_7000, 8, WatchKind.WRITE)
    stop = machine.run()
    assert stop.kind is StopKind.WATCHPOINT, stop.message
    assert machine.reg("SCTLR_EL2") & 1 == 1
    assert machine.image.symbolize(stop.pc).startswith("create_runtime_page_tables")
    assert " at 0x8000207000 " in stop.message
    value = int(stop.message.split("write of ")[1].split()[0], 16)
    assert value & 0b11 == 0b11


def test_memory_observers_get_the_virtual_address_of_an_access() -> None:
    """Unicorn's memory hooks report PAs; observers are promised VAs.  The store
    create_runtime_page_tables makes to runtime_pgtable through its link
    address (VA 0x8000207000, PA 0x40007000) must reach them as the VA."""
    head = Path(__file__).resolve().parent.parent / "asm" / "head.S"
    machine = Machine(build_image(head), Board())
    machine.add_watchpoint(0x80_0020_7000, 8, WatchKind.WRITE)
    assert machine.run().kind is StopKind.WATCHPOINT

    class Seen:
        accesses: list[tuple[str, int]] = []

        def on_memory(self, access, address: int) -> None:  # type: ignore[no-untyped-def]
            self.accesses.append((access.value, address))

    seen = Seen()
    machine.watch_memory(seen)
    machine.step()
    assert ("write", 0x80_0020_7000) in seen.accesses
    assert all(address != 0x4000_7000 for _, address in seen.accesses)


def test_reverse_continue_finds_a_hit_made_before_a_client_edit(tmp_path: Path) -> None:
    """``store`` runs once, as instruction #6 (the program text).  An edit made
    after it (at #7) must not hide it from reverse-continue, which replays the
    edit and looks for hits on the way."""
    from emu.debug.session import DebugSession

    source = tmp_path / "debugging.S"
    source.write_text(PROGRAM)
    image = build_image(source, load_address=0x4000_0000)
    session = DebugSession(image, Board())
    session.add_breakpoint(image.symbols["store"])
    assert session.resume().stop.index == 6
    session.resume(step=True)
    session.write_register("x9", 0x55)  # at #7
    session.resume(step=True)
    report = session.reverse_continue()
    assert (report.stop.index, report.history_begin) == (6, False)
    assert session.machine.pc == image.symbols["store"]
    # Going back before an edit forgets it: the run forward from here is the guest's own.
    session.resume(step=True)
    assert session.read_register("x9") == 0
