"""The exact clash ranges of a layout (emu.analysis.clashes, `bootemu layout --clashes`).

Two truths from outside the analysis:

* arithmetic on the layouts' published facts: a level-0 slot is 512 GiB
  (4 KiB granule, 48-bit VA: DDI 0487 D8.2), the regions' slots are those of
  Xen's layout.h (the presets cite them), and the Cortex-A72's
  ID_AA64MMFR0_EL1.PARange is 0b0100, 44 bits (Cortex-A72 MPCore TRM,
  ID_AA64MMFR0_EL1), so loads end at 16 TiB;
* head.S itself: booted at sampled load addresses, its own checks
  (BOOT_ERR_IDMAP_CLASH, BOOT_ERR_PA_RANGE in create_boot_page_tables) must
  agree with the ranges, at every range's first and last 2 MiB and at random
  addresses between.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu.analysis.clashes import ClashKind, clash_ranges
from emu.analysis.layout import LAYOUT_PRESETS, get_preset, preset_layout
from emu.analysis.sweep import sweep_program
from emu.asm.assembler import assemble_file
from emu.image.layout import Layout, Region

HEAD_S = Path(__file__).resolve().parent.parent / "asm" / "head.S"
GIB, TIB, MIB = 1 << 30, 1 << 40, 1 << 20
SLOT = 512 * GIB
PA_LIMIT = 16 * TIB  # 44-bit PA


# Expected ranges, by hand from the presets' sources (slot n is [n * 512 GiB,
# (n + 1) * 512 GiB)); the direct map (slots 256-265, 128 TiB up) is past the
# 44-bit PA range in every layout, so no load can clash with it.
EXPECTED = {
    "pre-rework": [(0, SLOT, "identity-clash"), (SLOT, PA_LIMIT, "fits")],
    "rework-512g": [(0, SLOT, "fits"), (SLOT, 2 * SLOT, "identity-clash"),
                    (2 * SLOT, 4 * SLOT, "fits"), (4 * SLOT, 5 * SLOT, "identity-clash"),
                    (5 * SLOT, PA_LIMIT, "fits")],
    "rework-2t": [(0, 2 * TIB, "fits"), (2 * TIB, 2 * TIB + SLOT, "identity-clash"),
                  (2 * TIB + SLOT, PA_LIMIT, "fits")],
    "rework-10t": [(0, 10 * TIB, "fits"), (10 * TIB, 10 * TIB + SLOT, "identity-clash"),
                   (10 * TIB + SLOT, PA_LIMIT, "fits")],
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_presets_clash_where_their_slots_say(name: str) -> None:
    analysis = clash_ranges(preset_layout(name), image_size=0x10000, pa_bits=44)
    got = [(r.start, r.end, r.kind.value) for r in analysis.ranges]
    assert got == [*EXPECTED[name], (PA_LIMIT, 1 << 64, "beyond-pa-range")]


def test_an_image_reaching_into_the_next_slot_clashes_from_below_it() -> None:
    # 3 MiB from L reaches slot 1 for L > 512 GiB - 3 MiB: with 2 MiB steps,
    # from 512 GiB - 2 MiB.
    analysis = clash_ranges(preset_layout("rework-512g"), image_size=3 * MIB, pa_bits=44)
    [first_clash, *_] = analysis.clashes
    assert first_clash.start == SLOT - 2 * MIB
    assert analysis.outcome(SLOT - 4 * MIB).kind is ClashKind.FITS
    # ... and the last load below 16 TiB is the one whose 3 MiB still fit.
    [beyond] = [r for r in analysis.ranges if r.kind is ClashKind.BEYOND_PA]
    assert beyond.start == PA_LIMIT - 2 * MIB


def test_a_region_spanning_almost_all_slots_is_computed_without_enumerating_them() -> None:
    layout = Layout("huge", (Region("XEN", 0x200000, (1 << 64) - 0x400000),))
    start = time.perf_counter()
    analysis = clash_ranges(layout, pa_bits=52)
    assert time.perf_counter() - start < 0.1
    assert [(r.start, r.end, r.kind) for r in analysis.ranges] == [
        (0, 1 << 52, ClashKind.CLASH), (1 << 52, 1 << 64, ClashKind.BEYOND_PA)]


def test_the_pre_rework_image_is_linked_inside_the_identity_area_wherever_it_loads() -> None:
    analysis = clash_ranges(preset_layout("pre-rework"), link_address=0x200000)
    assert analysis.layout_findings[0].startswith("layout-slot0:")
    assert clash_ranges(preset_layout("rework-2t"),
                        link_address=4 * SLOT + 2 * MIB).layout_findings == ()


def _samples(analysis, rng: random.Random) -> list[int]:
    """Each range's first and last load address, one random one inside,
    2 MiB-aligned, below 2^64."""
    addresses = set()
    for load_range in analysis.ranges:
        last = min(load_range.end, 1 << 48) - analysis.align
        addresses.update({load_range.start, last})
        if last > load_range.start:
            steps = (last - load_range.start) // analysis.align
            addresses.add(load_range.start + rng.randrange(steps) * analysis.align)
    return sorted(a for a in addresses if a < 1 << 48)


@pytest.mark.parametrize("name", list(LAYOUT_PRESETS))
def test_head_s_booted_at_samples_agrees_with_the_ranges(name: str) -> None:
    preset = get_preset(name)
    program = assemble_file(HEAD_S, defines=preset.defines)
    layout = preset_layout(name)
    analysis = clash_ranges(layout, image_size=len(program.code), pa_bits=44)
    addresses = _samples(analysis, random.Random(16))
    results = sweep_program(program, addresses, jobs=1)
    assert len(results) == len(addresses) >= 8
    for result in results:
        kind = analysis.outcome(result.load_address).kind
        where = f"{name} at {result.load_address:#x}: {result.outcome} ({result.message})"
        if kind is ClashKind.BEYOND_PA:
            assert result.verdict == "beyond-pa-range", where
        elif kind is ClashKind.CLASH:
            assert result.failure_name == "BOOT_ERR_IDMAP_CLASH", where
            assert "identity-clash" in result.rules, where
        else:
            assert result.failure_name is None and "identity-clash" not in result.rules, where


def _bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emu.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_layout_clashes_json_holds_the_ranges() -> None:
    done = _bootemu("layout", "--layout", "rework-10t", "--clashes", "--json")
    assert done.returncode == 0, done.stderr
    clashes = json.loads(done.stdout)["clashes"]
    assert clashes["pa_bits"] == 44 and clashes["cpu"] == "cortex-a72"
    assert [(r["start"], r["end"], r["kind"]) for r in clashes["ranges"]] == [
        *EXPECTED["rework-10t"], (PA_LIMIT, 1 << 64, "beyond-pa-range")]
    assert clashes["layout_findings"] == []


def test_layout_clashes_text_and_a53_pa_range() -> None:
    done = _bootemu("layout", "--layout", "rework-2t", "--clashes", "--cpu", "cortex-a53")
    assert done.returncode == 0, done.stderr
    # Cortex-A53 MPCore TRM, ID_AA64MMFR0_EL1: PARange 0b0010, 40 bits (1 TiB):
    # slot 4 is out of reach.
    assert "40-bit physical addresses" in done.stdout
    assert "identity-clash" not in done.stdout.split("Load addresses")[1]
    assert "0x0000010000000000 - 0xffffffffffffffff" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--image-size", "1M"], "--image-size goes with --clashes"),
    (["--clashes", "--image-size", "lots"], "--image-size: 'lots' is not an address"),
    (["--clashes", "--image-size", "0"], "--image-size: 0x0 is not a size"),
])
def test_layout_clashes_usage_errors(args: list[str], message: str) -> None:
    done = _bootemu("layout", *args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
