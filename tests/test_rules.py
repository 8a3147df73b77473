"""Each rule fires on a small program that breaks it, and stays silent on its fixed twin."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import (
    BLOCK,
    HEAD_S,
    LOAD,
    PAGE,
    PROLOGUE,
    CheckedRun,
    Tables,
    build_image,
    run_checked,
)

from emu.arch.mmu.regime import RegimeName, TranslationRegime
from emu.arch.mmu.tables import (
    DescriptorLimit,
    TableReader,
    compare_trees,
    maps_nothing,
    valid_mappings,
)
from emu.checks import ALL_CHECKS
from emu.checks.run import build_image as load
from emu.checks.run import check_image
from emu.machine.stop import StopKind

SECOND = LOAD + 0x20_0000  # a second 2 MiB of RAM, holding nothing


def _program(body: str) -> str:
    return f"""
_start:{PROLOGUE}
    ldr x1, =root
    msr ttbr0_el2, x1
    tlbi alle2
    dsb nsh
{body}
done:
    b done
.ltorg
.align 12
root:
"""


ENABLE = """
    mrs x2, sctlr_el2
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
"""


def _identity(tables: Tables) -> int:
    tables.base = LOAD + 0x1000
    root = tables.new_table()
    tables.identity_2m(root, LOAD)
    return root


# -- ttbr-switch-live ---------------------------------------------------------

SWITCH_LIVE = ENABLE + """
    ldr x1, =other
    dsb sy
    isb
    tlbi alle2
    dsb sy
    isb
    msr ttbr0_el2, x1
    isb
    tlbi alle2
    dsb sy
    isb
"""


def _two_tables(tables: Tables) -> None:
    root = _identity(tables)
    other = tables.new_table()
    assert other == root + 0x1000 * 3  # root, its L1, its L2, then 'other'
    tables.identity_2m(other, LOAD)


def test_ttbr_switch_live_fires_on_a_switch_under_a_running_mmu(tables: Tables) -> None:
    source = _program(SWITCH_LIVE).replace("root:", "root:\n.space 0x3000\nother:")
    _two_tables(tables)
    run = run_checked(build_image(source, tables), "done")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.rules == {"ttbr-switch-live"}
    [finding] = run.findings
    assert finding.symbol.startswith("_start+")
    assert "TTBR0_EL2 written with the MMU on" in finding.message
    assert finding.evidence and f"{LOAD:#x}" in finding.evidence[0]


def test_ttbr_switch_with_the_mmu_off_is_silent(tables: Tables) -> None:
    body = ENABLE + """
    ldr x1, =other
    mrs x2, sctlr_el2
    bic x2, x2, #1
    msr sctlr_el2, x2
    isb
    tlbi alle2
    dsb nsh
    msr ttbr0_el2, x1
    isb
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
"""
    source = _program(body).replace("root:", "root:\n.space 0x3000\nother:")
    _two_tables(tables)
    run = run_checked(build_image(source, tables), "done")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.findings == []
    assert len(run.machine.windows) == 2


# -- mmu-toggle-off-identity --------------------------------------------------

def test_mmu_on_where_the_next_fetch_is_not_identity_mapped_fires(tables: Tables) -> None:
    tables.base = LOAD + 0x1000
    root = tables.new_table()
    tables.map(root, LOAD, SECOND | BLOCK, 2)  # VA LOAD -> PA LOAD + 2 MiB
    run = run_checked(build_image(_program(ENABLE), tables), "done")
    assert run.rules >= {"mmu-toggle-off-identity"}
    finding = next(f for f in run.findings if f.rule == "mmu-toggle-off-identity")
    assert "MMU turned on" in finding.message
    assert f"{SECOND:#x}" in finding.message or "PA 0x40200" in finding.message


def test_mmu_off_from_a_high_alias_fires(tables: Tables) -> None:
    high = 0x80_0000_0000
    body = ENABLE + f"""
    ldr x3, ={high:#x} + (virt - _start)
    br x3
virt:
    mrs x2, sctlr_el2
    bic x2, x2, #1
    msr sctlr_el2, x2
    isb
"""
    root = _identity(tables)
    tables.map(root, high, LOAD | BLOCK, 2)
    run = run_checked(build_image(_program(body), tables), "done")
    assert run.rules == {"mmu-toggle-off-identity"}
    assert "MMU turned off" in run.findings[0].message
    assert run.stop.kind is StopKind.UNMAPPED  # the next fetch, at PA 0x80..., finds no RAM


def test_mmu_on_from_identity_code_is_silent(tables: Tables) -> None:
    _identity(tables)
    run = run_checked(build_image(_program(ENABLE), tables), "done")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.findings == []


# -- fetch-outside-identity ---------------------------------------------------

OFF_CALL_ON = ENABLE + """
    mrs x2, sctlr_el2
    bic x2, x2, #1
    msr sctlr_el2, x2
    isb
    bl helper
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
    b done
.align 12
helper:
    tlbi alle2
    dsb nsh
    isb
    ret
.align 12
"""


def test_a_helper_called_with_the_mmu_off_outside_the_new_identity_map_is_silent(
        tables: Tables) -> None:
    # Issue 10 item 7: after the ISB that follows the MMU-off, fetches are
    # physical; the helper needs no mapping in either table.
    tables.base = LOAD + 0x3000
    root = tables.new_table()
    # The switch (page 0) and 'done' with the literal pool (page 2) are
    # identity-mapped; 'helper' (page 1) is not.
    for page in (LOAD, LOAD + 0x2000):
        tables.map(root, page, page | PAGE, 3)
    image = build_image(_program(OFF_CALL_ON), tables)
    assert image.symbols["helper"] == LOAD + 0x1000
    run = run_checked(image, "done")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.findings == []


def test_the_same_code_with_the_helper_identity_mapped_is_silent(tables: Tables) -> None:
    tables.base = LOAD + 0x3000
    root = tables.new_table()
    for page in (LOAD, LOAD + 0x1000, LOAD + 0x2000):
        tables.map(root, page, page | PAGE, 3)
    run = run_checked(build_image(_program(OFF_CALL_ON), tables), "done")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.findings == []


# -- missing-tlbi -------------------------------------------------------------

def test_enabling_the_mmu_with_no_tlbi_since_reset_fires(tables: Tables) -> None:
    _identity(tables)
    source = _program(ENABLE).replace("    tlbi alle2\n", "", 1)
    run = run_checked(build_image(source, tables), "done")
    assert run.rules == {"missing-tlbi"}
    assert "since reset" in run.findings[0].message


def test_turning_the_mmu_back_on_over_stale_entries_fires(tables: Tables) -> None:
    """Off, switch to tables that map less, on: the TLB still has the old page."""
    body = ENABLE + """
    ldr x1, =other
    ldr x5, [x1]
    mrs x2, sctlr_el2
    bic x2, x2, #1
    msr sctlr_el2, x2
    isb
    msr ttbr0_el2, x1
    isb
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
"""
    source = _program(body).replace("root:", "root:\n.space 0x3000\nother:")
    root = _identity(tables)
    other = tables.new_table()
    assert other == root + 0x3000
    # 'other' identity-maps only the code page, not the page of tables that was read.
    tables.map(other, LOAD, LOAD | PAGE, 3)
    run = run_checked(build_image(source, tables), "done")
    assert run.rules == {"missing-tlbi"}
    [finding] = run.findings
    assert "MMU on" in finding.message
    assert any(f"VA {other:#x}" in line and "translation fault" in line
               for line in finding.evidence)


# -- missing-isb --------------------------------------------------------------

HIGH = 0x80_0000_0000
TO_HIGH = f"""
    ldr x3, ={HIGH:#x} + (virt - _start)
    br x3
virt:
    add x4, x4, #1
"""


def _high_alias(tables: Tables) -> None:
    root = _identity(tables)
    tables.map(root, HIGH, LOAD | BLOCK, 2)


def test_jumping_to_the_high_alias_without_an_isb_after_mmu_on_fires(tables: Tables) -> None:
    _high_alias(tables)
    body = ENABLE.replace("    isb\n", "") + TO_HIGH
    image = build_image(_program(body), tables)
    run = run_checked(image, hex(HIGH + image.symbols["done"] - LOAD))
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert "missing-isb" in run.rules
    finding = next(f for f in run.findings if f.rule == "missing-isb")
    assert finding.pc == HIGH + image.symbols["virt"] - LOAD
    assert "no ISB came between" in finding.message
    assert "SCTLR_EL2" in finding.message
    # With no ISB the MMU-on transition never closes, so the alias is also
    # fetched inside it, where only identity-mapped code belongs.
    assert run.rules == {"missing-isb", "fetch-outside-identity"}


def test_the_same_jump_after_an_isb_is_silent(tables: Tables) -> None:
    _high_alias(tables)
    image = build_image(_program(ENABLE + TO_HIGH), tables)
    run = run_checked(image, hex(HIGH + image.symbols["done"] - LOAD))
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.findings == []


def test_identity_code_right_after_mmu_on_needs_no_isb_to_be_correct(tables: Tables) -> None:
    """Fetches that translate the same either way do not depend on the write."""
    _identity(tables)
    body = ENABLE.replace("    isb\n", "    nop\n    nop\n    isb\n")
    run = run_checked(build_image(_program(body), tables), "done")
    assert run.findings == []


# -- unexpected-exception -----------------------------------------------------

def test_an_abort_during_boot_is_reported_with_syndrome_and_walk(tables: Tables) -> None:
    _identity(tables)
    body = ENABLE + f"    ldr x3, ={HIGH:#x}\n    ldr x4, [x3]\n"
    run = run_checked(build_image(_program(body), tables), "done")
    assert run.rules == {"unexpected-exception"}
    [finding] = run.findings
    assert finding.message.startswith("data abort: translation fault, level 0")
    assert any(line.startswith("L0 invalid") for line in finding.evidence)


# -- live-descriptor-change and stale-tlb ----------------------------------------

DATA_A, DATA_B = LOAD + 0x8000, LOAD + 0x9000


def _leaf_tables(tables: Tables) -> int:
    """Identity block for the code and tables; HIGH -> DATA_A through a level-3 page.
    Returns the physical address of HIGH's level-3 descriptor."""
    root = _identity(tables)
    tables.map(root, HIGH, DATA_A | PAGE, 3)
    [leaf] = [address for address, value in tables.entries.items() if value == DATA_A | PAGE]
    return leaf


def _rewrite(leaf: int, steps: str) -> str:
    return ENABLE + f"""
    ldr x3, ={HIGH:#x}
    ldr x4, [x3]
    ldr x5, ={leaf:#x}
    ldr x6, ={DATA_B | PAGE:#x}
{steps}
    ldr x7, [x3]
"""


def _prepared(tables: Tables, steps: str) -> CheckedRun:
    leaf = _leaf_tables(tables)
    image = build_image(_program(_rewrite(leaf, steps)), tables)
    payload = bytearray(image.payload)
    payload[DATA_A - LOAD:DATA_A - LOAD + 8] = (0xAAAA).to_bytes(8, "little")
    payload[DATA_B - LOAD:DATA_B - LOAD + 8] = (0xBBBB).to_bytes(8, "little")
    image.payload = bytes(payload)
    return run_checked(image, "done")


def test_replacing_a_live_descriptor_directly_fires(tables: Tables) -> None:
    run = _prepared(tables, "    str x6, [x5]\n    dsb ish\n    tlbi alle2\n    dsb ish\n    isb")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.rules == {"live-descriptor-change"}
    [finding] = run.findings
    assert "without break-before-make" in finding.message
    assert finding.evidence and f"VA {HIGH:#x}" in finding.evidence[0]
    assert run.machine.reg("x7") == 0xBBBB  # after the TLBI the new mapping applies


def test_break_before_make_is_silent(tables: Tables) -> None:
    steps = """    str xzr, [x5]
    dsb ish
    tlbi alle2
    dsb ish
    str x6, [x5]
    dsb ish
    isb"""
    run = _prepared(tables, steps)
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.findings == []
    assert run.machine.reg("x4") == 0xAAAA and run.machine.reg("x7") == 0xBBBB


def test_using_a_translation_after_its_break_without_tlbi_fires_stale_tlb(
    tables: Tables,
) -> None:
    run = _prepared(tables, "    str xzr, [x5]\n    dsb ish\n    isb")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    assert run.rules == {"stale-tlb"}
    [finding] = run.findings
    assert f"read of VA {HIGH:#x} through a TLB entry to PA {DATA_A:#x}" in finding.message
    assert "translation fault, level 3" in finding.message
    # The hardware may still use the entry: the run goes on as if it did.
    assert run.machine.reg("x7") == 0xAAAA


# -- rules that cannot judge an image ------------------------------------------

def test_the_layout_rules_are_not_applicable_to_an_image_without_sources(tmp_path: Path
                                                                         ) -> None:
    binary = tmp_path / "spin.bin"
    binary.write_bytes((0x14000000).to_bytes(4, "little"))  # b .
    run = check_image(load(binary, kind="raw", load_address=LOAD), until=None, max_insns=100)
    skipped = {n.rule: n.reason for n in run.not_applicable}
    assert set(skipped) == {"identity-clash", "layout-slot0"}
    assert all("raw binary" in reason for reason in skipped.values())
    assert not set(skipped) & set(run.rules)
    assert "ttbr-switch-conflict" in run.rules and "live-descriptor-change" in run.rules
    assert run.not_applicable[0].to_dict() == {"rule": "identity-clash",
                                               "reason": skipped["identity-clash"]}


def test_head_s_is_judged_by_every_rule() -> None:
    image = load(HEAD_S, load_address=LOAD, include_dirs=[HEAD_S.parent / "include"])
    run = check_image(image)
    assert run.rules == [cls.rule_id for cls in ALL_CHECKS] and run.not_applicable == []


# -- the table walker the TTBR rules use (emu.arch.mmu.tables) -----------------

def _memory(entries: dict[int, int]) -> TableReader:
    """A TableReader over descriptors at physical addresses (zero elsewhere)."""
    def read(address: int, size: int) -> bytes | None:
        return b"".join(entries.get(address + i, 0).to_bytes(8, "little")
                        for i in range(0, size, 8))
    return read


def test_tables_are_compared_by_range_not_page() -> None:
    tcr = 0x80823519  # 4K granule, T0SZ=25: start level 1
    mair = 0xFF4400
    l1a, l2a, l3a, l1b, l2b = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000
    memory = {l1a + 8: l2a | 3, l2a + 8: l3a | 3,
              l1b + 8: l2b | 3, l2b + 8: 0x4000_0000 | 0x749}  # B: one 2 MiB block
    for i in range(512):  # A: the same 2 MiB as 512 pages, same PAs and attributes
        memory[l3a + 8 * i] = (0x4000_0000 + (i << 12)) | 0x74B
    a = TranslationRegime(RegimeName.EL2, sctlr=1, tcr=tcr, ttbr0=l1a, mair=mair)
    b = TranslationRegime(RegimeName.EL2, sctlr=1, tcr=tcr, ttbr0=l1b, mair=mair)
    read = _memory(memory)
    [pages] = valid_mappings(a, read)  # 512 leaves coalesce into one range
    assert (pages.va, pages.length, pages.leaf_size, pages.pa) == (
        0x4020_0000, 0x20_0000, 0x1000, 0x4000_0000)
    result = compare_trees(a, b, read)
    assert result.old_nonempty and result.new_nonempty
    assert result.conflict_count == 1 and result.conflicts[0].fields == ("size",)
    same = compare_trees(a, a, read)
    assert same.conflict_count == 0 and same.permission_count == 0


def test_a_reserved_table_is_known_empty_from_its_root_however_large_the_other_tree() -> None:
    """Linux switches TTBR1 through ``reserved_pg_dir``, an all-invalid table:
    the switch away from it is the "make" of break-before-make (DDI 0487
    D8.16.1), since an invalid descriptor translates nothing (D8.3, a
    translation fault).  Its incoming tree (the linear map of all RAM in pages)
    is far too large to enumerate, so emptiness must come from the root alone."""
    tcr = 0x80823519  # 4K granule, T0SZ=25: start level 1
    mair = 0xFF4400
    reserved, l1, l2, l3 = 0x1000, 0x2000, 0x3000, 0x4000
    memory = {l1 + 8 * i: l2 | 3 for i in range(512)}  # every entry: the same L2 ...
    memory.update({l2 + 8 * i: l3 | 3 for i in range(512)})  # ... and the same L3
    memory.update({l3 + 8 * i: (0x4000_0000 + (i << 12)) | 0x74B for i in range(512)})
    empty = TranslationRegime(RegimeName.EL2, sctlr=1, tcr=tcr, ttbr0=reserved, mair=mair)
    large = TranslationRegime(RegimeName.EL2, sctlr=1, tcr=tcr, ttbr0=l1, mair=mair)
    read = _memory(memory)
    with pytest.raises(DescriptorLimit):
        compare_trees(empty, large, read)  # 512 * 512 tables of 512 entries each
    assert maps_nothing(empty, read)
    assert not maps_nothing(large, read)
