"""asm/head.S checked end to end: clean where it boots, refused where it clashes,
and each defect fixture flagged with exactly its intended rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import HEAD_S, REPO

from emu.analysis.corpus import Defect, load_defects, materialize
from emu.checks.run import CheckRun, build_image, check_image
from emu.machine.events import MmuDisable, MmuEnable, TtbrWrite

INCLUDE = HEAD_S.parent / "include"
DEFECTS = load_defects(REPO / "fixtures" / "defects.toml")
XEN_VIRT_START = 0x80_0020_0000


def check(source: Path = HEAD_S, load_address: int = 0x4000_0000) -> CheckRun:
    image = build_image(source, load_address=load_address, include_dirs=[INCLUDE])
    return check_image(image)


@pytest.mark.parametrize("load_address", [0x4000_0000, 0x8_8000_0000, 0x100_0000_0000])
def test_head_s_boots_clean(load_address: int) -> None:
    run = check(load_address=load_address)
    assert run.verdict == "clean", (run.stop.message, [f.message for f in run.findings])
    assert run.stop.pc == run.image.symbols["start_c"]


def test_the_demo_shows_what_the_issue_promises() -> None:
    run = check()
    image = run.image
    enable = next(e for e in run.events if isinstance(e, MmuEnable))
    assert enable.pc == enable.pa, "the MMU is turned on where VA == PA"
    first = run.windows[0]
    jump = first.tail[-1]
    assert jump.va >> 21 == XEN_VIRT_START >> 21 and jump.va != jump.pa, "branch to 0x80_0020_xxxx"

    switch = image.symbols["switch_ttbr_id"]
    off = next(e for e in run.events if isinstance(e, MmuDisable))
    ttbr = [e for e in run.events if isinstance(e, TtbrWrite) and e.index > off.index]
    on = next(e for e in run.events if isinstance(e, MmuEnable) and e.index > off.index)
    for event in (off, *ttbr, on):
        assert image.physical(switch) <= event.pc < image.physical(switch) + 0x1000
    window = next(w for w in run.windows if w.opened_by == off)
    assert window.fetches and all(f.va == f.pa for f in window.fetches)
    assert all(window.identity_old.values()) and all(window.identity_new.values())
    assert window.identity_new and window.identity_old
    assert run.stop.pc == image.symbols["start_c"]


def test_a_load_address_in_xen_virt_starts_slot_is_refused_in_words() -> None:
    run = check(load_address=0x80_0000_0000)
    assert run.verdict == "findings"  # identity-clash says why, and the boot refuses
    assert run.failure is not None and run.failure.meaning is not None
    assert run.failure.meaning.name == "BOOT_ERR_IDMAP_CLASH"
    assert "identity map" in run.failure.describe()
    assert {f.rule for f in run.findings} == {"identity-clash"}
    assert "XEN" in run.findings[0].message
    assert run.exit_code == 1


def test_the_pre_rework_layout_is_flagged_at_any_load_address() -> None:
    pre_rework = {"XEN_VIRT_START": "0x200000", "FIXMAP_VIRT_START": "0x400000"}
    for load_address in (0x4000_0000, 0x100_0000_0000):
        image = build_image(HEAD_S, load_address=load_address, defines=pre_rework)
        run = check_image(image)
        rules = {f.rule for f in run.findings}
        assert "layout-slot0" in rules
        assert ("identity-clash" in rules) == (load_address < 0x80_0000_0000)


@pytest.mark.parametrize("defect", DEFECTS, ids=[d.name for d in DEFECTS])
def test_each_defect_fires_exactly_its_rules(defect: Defect, tmp_path: Path) -> None:
    source = materialize(defect, HEAD_S, tmp_path)
    run = check(source)
    fired = {f.rule for f in run.findings}
    assert fired == set(defect.rules), (defect.name, [f.message for f in run.findings],
                                        run.stop.message)
    assert run.exit_code == 1
    for finding in run.findings:
        assert finding.symbol != "?" and finding.pc


def test_there_is_a_defect_for_each_of_the_first_four_rules() -> None:
    covered = {rule for defect in DEFECTS for rule in defect.rules}
    assert covered >= {"ttbr-switch-live", "mmu-toggle-off-identity", "fetch-outside-identity",
                       "missing-tlbi"}
