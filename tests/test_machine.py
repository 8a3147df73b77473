"""The machine: EL2 reset, exact instruction counts, stops with reasons, events."""

from __future__ import annotations

from conftest import LOAD, PAGE, PROLOGUE, Tables, build_image, run_checked

from emu.arch.mmu.walk import Translation
from emu.machine.events import (
    Barrier,
    DescriptorWrite,
    MmuEnable,
    StaleTranslationUse,
    TlbInvalidate,
    TtbrWrite,
)
from emu.machine.machine import Machine
from emu.machine.stop import StopKind

HIGH = 0x80_0000_0000  # level-0 slot 1, aliased to LOAD by the tables below


def test_resets_at_el2_with_the_boot_protocol_registers(tables: Tables) -> None:
    image = build_image(
        """
_start:
    mrs x5, CurrentEL
    mov x6, x0
done:
    b done
""",
        tables,
    )
    machine = Machine(image)
    stop = machine.run([image.symbols["done"]])
    assert stop.kind is StopKind.ARRIVED
    assert machine.reg("x5") == 2 << 2
    assert machine.reg("x6") == machine.dtb_address
    assert machine.reg("x1") == machine.reg("x2") == machine.reg("x3") == 0
    assert stop.index == 2


def test_instruction_counts_and_budgets_are_exact(tables: Tables) -> None:
    source = """
_start:
    movz x5, #1000
loop:
    subs x5, x5, #1
    add x7, x7, #1
    b.ne loop
done:
    b done
"""
    image = build_image(source, tables)
    machine = Machine(image)
    stop = machine.run([image.symbols["done"]])
    assert stop.index == 1 + 3 * 1000
    for budget in (1, 2, 37, 1000, 2999):
        machine = Machine(image)
        stop = machine.run([image.symbols["done"]], max_insns=budget)
        assert stop.kind is StopKind.BUDGET
        assert stop.index == budget
        # x7 counts completed loop bodies: the budget stopped exactly where it said.
        assert machine.reg("x7") == budget // 3


def _enable_program(*, tlbi: bool = True, branch_high: bool = True) -> str:
    invalidate = "tlbi alle2\n    dsb nsh" if tlbi else "dsb nsh"
    branch = (f"ldr x3, ={HIGH:#x} + (virt - _start)\n    br x3" if branch_high
              else "b virt")
    return f"""
_start:{PROLOGUE}
    ldr x1, =root
    msr ttbr0_el2, x1
    {invalidate}
    mrs x2, sctlr_el2
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
    {branch}
virt:
    add x4, x4, #1
done:
    b done
.ltorg
.align 12
root:
"""


def _enable_tables(tables: Tables) -> Tables:
    tables.base = LOAD + 0x1000  # 'root' is the first table, right after the code page
    root = tables.new_table()
    tables.identity_2m(root, LOAD)
    tables.map(root, HIGH, LOAD | 0b01 | (2 << 2) | (3 << 8) | (1 << 10), 2)
    return tables


def test_enabling_the_mmu_is_an_event_with_regime_state_and_a_window(tables: Tables) -> None:
    image = build_image(_enable_program(), _enable_tables(tables))
    run = run_checked(image, hex(HIGH + image.symbols["done"] - LOAD))
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    events = run.machine.events
    enable = next(e for e in events if isinstance(e, MmuEnable))
    assert enable.pc == enable.pa == image.symbols["_start"] + 4 * 10
    assert enable.after.mmu_enabled and not enable.before.mmu_enabled
    assert any(isinstance(e, TtbrWrite) and e.new == image.symbols["root"] for e in events)
    assert any(isinstance(e, TlbInvalidate) and e.operation == "TLBI ALLE2" for e in events)
    [window] = run.machine.windows
    assert [f.va for f in window.fetches] == [enable.pc, enable.pc + 4]  # msr, isb
    assert window.closed_by is not None and window.closed_by.describe() == "ISB"
    # The tail reaches the jump to the high alias, where VA != PA for the first time.
    assert window.tail[-1].va == HIGH + image.symbols["virt"] - LOAD
    assert window.tail[-1].pa == image.symbols["virt"]
    assert run.machine.reg("x4") == 1
    assert run.findings == []


def test_a_translation_fault_stops_the_run_with_the_walk(tables: Tables) -> None:
    tables.base = LOAD + 0x1000
    root = tables.new_table()
    tables.identity_2m(root, LOAD)  # the high alias is not mapped at all
    image = build_image(_enable_program(), tables)
    machine = Machine(image)
    stop = machine.run([HIGH + image.symbols["done"] - LOAD])
    assert stop.kind is StopKind.EXCEPTION
    assert "instruction abort" in stop.message
    assert "translation fault, level 0" in stop.message
    assert stop.pc == HIGH + image.symbols["virt"] - LOAD
    assert stop.detail, "the stop report shows the walk"


def test_fetching_where_there_is_no_memory_is_reported(tables: Tables) -> None:
    image = build_image(
        """
_start:
    ldr x1, =0x7000000000
    br x1
""",
        tables,
    )
    stop = Machine(image).run()
    assert stop.kind is StopKind.UNMAPPED
    assert "0x7000000000" in stop.message


def test_hvc_without_firmware_stops_with_the_exception(tables: Tables) -> None:
    image = build_image("_start:\n    hvc #0\n    b _start\n", tables)
    stop = Machine(image).run(max_insns=100)
    assert stop.kind is StopKind.EXCEPTION
    assert "HVC" in stop.message


def test_checking_pays_python_per_instruction_only_inside_windows(tables: Tables) -> None:
    """The per-instruction hook exists only from the MMU-on to the jump to the alias."""
    source = _enable_program().replace("virt:\n    add x4, x4, #1",
                                       "virt:\n    movz x5, #5000\nspin:\n    subs x5, x5, #1\n"
                                       "    b.ne spin")
    image = build_image(source, _enable_tables(tables))
    calls = []
    machine = Machine(image)
    original = machine._on_window_insn
    machine._on_window_insn = lambda *args: (calls.append(args[1]), original(*args))  # type: ignore[method-assign]
    stop = machine.run([HIGH + image.symbols["done"] - LOAD])
    assert stop.kind is StopKind.ARRIVED
    assert stop.index > 10_000
    # The hook runs from the first translation-register write to the jump to
    # the alias (a few dozen instructions), never for the 15 000 of the loop.
    [window] = machine.windows
    assert window.tail and len(calls) < 40


def test_a_mapping_translates_every_byte_of_its_page_not_only_the_first_kibibyte(
    tables: Tables,
) -> None:
    """Unicorn's softmmu pages are 1 KiB: each must get its own part of the 4 KiB page."""
    data = LOAD + 0x8000
    source = _enable_program(branch_high=False).replace(
        "virt:\n    add x4, x4, #1",
        f"virt:\n    ldr x6, ={HIGH:#x}\n    ldr x7, [x6, #0x10]\n    ldr x8, [x6, #0x410]\n"
        f"    ldr x9, [x6, #0xc18]\n    str x7, [x6, #0x808]",
    )
    _enable_tables(tables)
    tables.entries.clear()
    tables._next = 0
    root = tables.new_table()
    tables.identity_2m(root, LOAD)
    tables.map(root, HIGH, data | (0b11 | (2 << 2) | (3 << 8) | (1 << 10)), 3)
    image = build_image(source, tables)
    payload = bytearray(image.payload)
    for offset, value in ((0x10, 0x1111), (0x410, 0x2222), (0xC18, 0x3333)):
        payload[data - LOAD + offset:data - LOAD + offset + 8] = value.to_bytes(8, "little")
    image.payload = bytes(payload)
    machine = Machine(image)
    stop = machine.run([image.symbols["done"]])
    assert stop.kind is StopKind.ARRIVED, stop.message
    assert (machine.reg("x7"), machine.reg("x8"), machine.reg("x9")) == (0x1111, 0x2222, 0x3333)
    written = int.from_bytes(machine.uc.mem_read(data + 0x808, 8), "little")
    assert written == 0x1111


# -- issue 10: TLB maintenance, table stores, DSBs --------------------------------

DVA = 0x5000_0000
PAGE_A, PAGE_B = LOAD + 0x20000, LOAD + 0x21000


def _remap_program() -> str:
    """DVA -> page_a is read, replaced in place by page_b (no break-before-make),
    read again before any TLBI, then TLBI VAE2; DSB; ISB and read a third time."""
    return f"""
_start:{PROLOGUE}
    ldr x1, =root
    msr ttbr0_el2, x1
    tlbi alle2
    dsb ish
    mrs x2, sctlr_el2
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
    ldr x4, ={DVA:#x}
    ldr x5, [x4]
    ldr x8, =slot
    ldr x8, [x8]
    ldr x9, ={PAGE_B | PAGE:#x}
replace:
    str x9, [x8]
    dsb ish
    isb
stale:
    ldr x6, [x4, #0x238]
    lsr x13, x4, #12
    tlbi vae2is, x13
    dsb ish
    isb
    ldr x7, [x4]
done:
    b done
.ltorg
slot:
    .quad 0
.align 12
root:
"""


def _remap_image(tables: Tables):  # type: ignore[no-untyped-def]
    tables.base = LOAD + 0x1000  # 'root', right after the code page
    root = tables.new_table()
    tables.identity_2m(root, LOAD)
    tables.map(root, DVA, PAGE_A | PAGE, 3)
    slot = next(a for a, v in tables.entries.items() if v == PAGE_A | PAGE)
    tables.entries[PAGE_A], tables.entries[PAGE_B] = 0xA1, 0xB2
    tables.entries[PAGE_A + 0x238], tables.entries[PAGE_B + 0x238] = 0xA1, 0xB2
    image = build_image(_remap_program(), tables)
    tables.entries[image.symbols["slot"]] = slot
    return build_image(_remap_program(), tables)


def test_a_tlbi_makes_the_guest_stop_using_what_it_removed(tables: Tables) -> None:
    """Item 2: until the TLBI the stale entry may be used (the model continues
    through it); after TLBI + DSB the guest must see the new page.  A guest TLBI
    does not reliably flush Unicorn's softmmu TLB (DESIGN.md section 3), so the
    machine flushes it itself after every TLBI that removed model entries."""
    image = _remap_image(tables)
    machine = Machine(image)
    flushes: list[int] = []
    schedule = machine.schedule_flush
    machine.schedule_flush = lambda: (flushes.append(machine.pc), schedule())  # type: ignore[method-assign]
    stop = machine.run([image.symbols["done"]])
    assert stop.kind is StopKind.ARRIVED, stop.message
    assert machine.reg("x5") == 0xA1
    assert machine.reg("x6") == 0xA1  # through the stale entry
    assert machine.reg("x7") == 0xB2
    tlbi = next(e for e in machine.events
                if isinstance(e, TlbInvalidate) and e.operation == "TLBI VAE2IS")
    assert tlbi.pc in flushes


def test_a_stale_use_names_the_accessed_address_and_events_come_in_order(
        tables: Tables) -> None:
    image = _remap_image(tables)
    run = run_checked(image, "done")
    events = run.machine.events
    order = [e.index for e in events]
    assert order == sorted(order)
    [write] = [e for e in events if isinstance(e, DescriptorWrite)]
    assert write.pc == image.symbols["replace"]
    [stale] = [e for e in events if isinstance(e, StaleTranslationUse)]
    assert stale.pc == image.symbols["stale"]
    assert stale.va == DVA + 0x238 and stale.fill_va == DVA
    assert isinstance(stale.fresh, Translation) and stale.fresh.pa == PAGE_B + 0x238
    assert stale.entry.memory_attributes == stale.fresh.memory_attributes


def test_dsbs_after_maintenance_are_barrier_events_and_the_watch_ends(tables: Tables) -> None:
    """Item 3: from a TLBI or table store to its DSB the machine watches
    instructions (and emits each DSB as a Barrier); after it, no more."""
    image = _remap_image(tables)
    machine = Machine(image)
    calls: list[int] = []
    original = machine._on_window_insn
    machine._on_window_insn = lambda *args: (calls.append(args[1]), original(*args))  # type: ignore[method-assign]
    stop = machine.run([image.symbols["done"]])
    assert stop.kind is StopKind.ARRIVED
    dsbs = [e for e in machine.events if isinstance(e, Barrier) and e.operation == "DSB ISH"]
    assert len(dsbs) == 3  # after the first TLBI, the table store and the TLBI VAE2
    assert len(calls) < 40
