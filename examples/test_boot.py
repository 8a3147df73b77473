"""An emulation suite for a boot program: copy this file next to your head.S.

It boots ``../asm/head.S`` (yours: change ``SOURCE``) under bootemu's MMU
model, as ``bootemu check`` would, and checks what the Arm ARM requires of
its MMU transitions at every load address the boards use, that a known
mistake is caught where it is made, and that the timeline of MMU events has
not changed behind the reviewers' back (a golden timeline, ``golden/``;
refresh it with ``pytest examples --bootemu-update-golden`` and review the
diff).  Installing bootemu installs the plugin (a ``pytest11`` entry point);
nothing here needs a conftest.

Run: ``pytest examples`` (``-n 2`` with pytest-xdist; ``--bootemu-report
DIR`` keeps each test's reports for CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import bootemu
from bootemu import assert_clean, assert_fires, assert_timeline

SOURCE = "../asm/head.S"  # relative to this file

# Every test boots SOURCE; a marker on a test adds or overrides options.
pytestmark = pytest.mark.bootemu(source=SOURCE, until="start_c")


# QEMU virt's RAM base and Juno's second RAM bank: with the image's virtual
# layout out of level-0 slot 0 (layout.h, DESIGN.md section 1), any RAM below
# 512 GiB can be identity-mapped, so the MMU-off -> TTBR switch -> MMU-on
# sequence stays inside identity-mapped code, live tables are never replaced
# (DDI 0487 D8.17.1, "Using break-before-make when updating translation table
# entries"; the README's rules), and no rule fires.
@pytest.mark.bootemu(load_address=[0x4000_0000, 0x8_8000_0000],
                     layout=["rework-512g", "rework-2t"])
def test_boots_clean(bootemu_run: bootemu.BootRun, load_address: int) -> None:
    assert_clean(bootemu_run)
    assert bootemu_run.image.load_address == load_address


# 0x80_0000_0000 is level-0 slot 1, where the image itself is mapped: the
# identity map would clash with it, and head.S refuses to boot there.
@pytest.mark.bootemu(load_address=0x80_0000_0000)
def test_a_load_address_in_the_images_slot_is_refused(bootemu_run: bootemu.BootRun) -> None:
    assert_fires(bootemu_run, "identity-clash")
    assert bootemu_run.verdict == bootemu.FINDINGS


def test_a_switch_without_tlbi_is_caught(bootemu_boots: bootemu.Boots, tmp_path: Path) -> None:
    # The corpus' switch-without-tlbi: switch_ttbr_id drops its TLBI ALLE2, so
    # the MMU comes back on while the TLB may hold boot-table translations
    # (a cached entry stays usable until a TLBI of its regime, DDI 0487 D8.16,
    # R_SQBCS, completed by a DSB, D8.17.8; fixtures/defects.toml documents
    # missing-tlbi for it).
    run = bootemu_boots.check(bootemu.corpus_defect("switch-without-tlbi", tmp_path))
    assert_fires(run, "missing-tlbi", at="switch_ttbr_id")


def test_the_timeline_is_the_reviewed_one(bootemu_run: bootemu.BootRun,
                                          bootemu_golden: bootemu.Golden) -> None:
    assert_timeline(bootemu_run, bootemu_golden)


# Stopped where the runtime tables are switched in, to look around.
@pytest.mark.bootemu(until="switch_ttbr_id")
def test_the_switch_runs_identity_mapped(bootemu_machine: bootemu.Machine) -> None:
    machine = bootemu_machine
    assert machine.reg("CurrentEL") == 0x8  # entered at EL2 (CurrentEL bits [3:2])
    assert machine.reg("SCTLR_EL2") & 1  # the MMU is on when it is called...
    assert machine.pc == machine.fetch_pa(machine.pc)  # ...from its identity alias (VA == PA)
    machine.step(5)  # its first instructions turn the MMU off
    assert machine.reg("SCTLR_EL2") & 1 == 0
