"""Load-address sweeps: which loads each layout can identity-map, and `bootemu sweep`.

The three layout sweeps boot head.S at 4096 load addresses each, every
512 MiB over [0, 2 TiB) (1024 per level-0 slot), in two worker processes.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HEAD_S, REPO

from emu.analysis.clashes import ClashKind, clash_ranges
from emu.analysis.corpus import load_defects, materialize
from emu.analysis.layout import LAYOUT_PRESETS, preset_layout
from emu.analysis.sweep import (
    LOAD_ADDRESS_PRESETS,
    MAX_ADDRESSES,
    SweepError,
    SweepResult,
    layout_wide_rules,
    parse_load_addresses,
    parse_size,
    sweep,
    sweep_program,
    verdict_counts,
    verdict_runs,
)
from emu.asm.assembler import assemble_file

BOOTEMU = [sys.executable, "-m", "emu.cli.main"]
MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40
SLOT = 512 * GIB
# head.S refuses such a load (BOOT_ERR_IDMAP_CLASH) and the identity-clash rule
# names the regions; a rule that fires makes the verdict `findings`, the rules
# beside it (issue 13: the verdict is bootemu check's word).
CLASH = "identity-clash"
SLOT0 = "layout-slot0"
FINDINGS = "findings"
SWEEP_2TIB = list(range(0, 2 * TIB, 512 * MIB))


def bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOOTEMU, *args], capture_output=True, text=True, timeout=300)


# -- load addresses -----------------------------------------------------------


def test_range_default_step_is_2_mib() -> None:
    assert parse_load_addresses("0x4000_0000:0x4080_0000") == \
        [0x4000_0000, 0x4020_0000, 0x4040_0000, 0x4060_0000]


def test_range_with_units_and_step() -> None:
    assert parse_load_addresses("0:2T:512M") == SWEEP_2TIB
    assert parse_size("512MiB") == 512 * MIB and parse_size("0x10") == 16


def test_lists_mix_presets_ranges_and_addresses_sorted_without_duplicates() -> None:
    assert parse_load_addresses("juno-bank2, qemu-virt,0x40000000,0:4M") == \
        [0, 2 * MIB, 0x4000_0000, 0x8_8000_0000]


def test_presets() -> None:
    assert parse_load_addresses("qemu-virt") == [0x4000_0000]
    assert parse_load_addresses("juno-bank2") == [0x8_8000_0000]
    assert parse_load_addresses("above-1tib") == [0x100_0000_0000]
    slot1 = parse_load_addresses("slot1")
    assert (len(slot1), slot1[0], slot1[-1]) == (512, SLOT, 2 * SLOT - GIB)
    assert parse_load_addresses("first-2tib") == SWEEP_2TIB
    assert set(LOAD_ADDRESS_PRESETS) >= {"qemu-virt", "juno-bank2", "above-1tib", "slot1"}


@pytest.mark.parametrize(("text", "message"), [
    ("0x1000:0x400000", "start 0x1000 is not 2 MiB aligned"),
    ("0:1G:1M", "step 0x100000 is not 2 MiB aligned"),
    ("1G:1G", "must be above START"),
    ("0:1G:0", "step must be positive"),
    ("1:2:3:4", "not a range"),
    ("banana", "not an address, a START:END[:STEP] range or a preset"),
    ("0x40000000,,0x0", "empty load address"),
    ("0x40000002", "not 4-byte aligned"),
    ("0:256T:2M", f"more than {MAX_ADDRESSES}"),
])
def test_bad_load_addresses(text: str, message: str) -> None:
    with pytest.raises(SweepError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_load_addresses(text)


# -- the layout sweeps (4096 boots each) --------------------------------------


@pytest.fixture(scope="module")
def layout_sweeps() -> dict[str, dict[int, SweepResult]]:
    out = {}
    for name in ("pre-rework", "rework-512g", "rework-10t"):
        results = sweep(HEAD_S, SWEEP_2TIB, defines=LAYOUT_PRESETS[name].defines, jobs=2,
                        layout=name)
        assert [r.load_address for r in results] == SWEEP_2TIB
        out[name] = {r.load_address: r for r in results}
    return out


def clashes(result: SweepResult) -> bool:
    """head.S refused the load and the identity-clash rule fired."""
    return (result.failure_name == "BOOT_ERR_IDMAP_CLASH" and result.failure_code == 4
            and CLASH in result.rules)


def test_pre_rework_clashes_for_every_load_below_512_gib(layout_sweeps) -> None:
    results = layout_sweeps["pre-rework"]
    below = [r for a, r in results.items() if a < SLOT]
    assert len(below) == 1024 and all(clashes(r) for r in below)
    assert {(r.verdict, r.rules) for r in below} == {(FINDINGS, (CLASH, SLOT0))}
    # Above slot 0 the boot arrives, but the image is still linked in the identity slot.
    above = [r for a, r in results.items() if a >= SLOT]
    assert {(r.verdict, r.rules, r.failure_name) for r in above} == {(FINDINGS, (SLOT0,), None)}
    assert results[0x4000_0000].layout == "pre-rework"


def test_pre_rework_reports_layout_slot0_once_and_each_address_apart(layout_sweeps) -> None:
    # layout-slot0 judges the link address (0x200000, slot 0: inside the
    # identity area) alone, so it fires everywhere; what sets addresses apart
    # is the identity clash below 512 GiB.
    results = sorted(layout_sweeps["pre-rework"].values(), key=lambda r: r.load_address)
    assert layout_wide_rules(results) == (SLOT0,)
    assert {r.layout_rules for r in results} == {(SLOT0,)}
    runs = verdict_runs(results, per_address=True)
    assert [(r.first, r.last, r.count, r.outcome) for r in runs] == [
        (0, SLOT - 512 * MIB, 1024, f"{FINDINGS} ({CLASH})"),
        (SLOT, 2 * TIB - 512 * MIB, 3072, "clean"),
    ]


@pytest.mark.parametrize("name", ["pre-rework", "rework-512g", "rework-10t"])
def test_the_exact_clash_ranges_agree_with_every_boot(layout_sweeps, name: str) -> None:
    analysis = clash_ranges(preset_layout(name), pa_bits=44)
    for address, result in layout_sweeps[name].items():
        expected = analysis.outcome(address).kind is ClashKind.CLASH
        assert clashes(result) == expected, f"{name} at {address:#x}: {result.outcome}"


def test_rework_512g_clashes_exactly_in_slot_1(layout_sweeps) -> None:
    results = layout_sweeps["rework-512g"]
    clashing = sorted(a for a, r in results.items() if r.rules == (CLASH,))
    assert clashing == [a for a in SWEEP_2TIB if SLOT <= a < 2 * SLOT]
    assert all(clashes(results[a]) for a in clashing)
    assert {r.verdict for a, r in results.items() if not SLOT <= a < 2 * SLOT} == {"clean"}


def test_rework_10t_is_clean_everywhere(layout_sweeps) -> None:
    results = layout_sweeps["rework-10t"]
    assert verdict_counts(results.values()) == {"clean": len(SWEEP_2TIB)}
    assert all(r.executed > 10_000 for r in results.values())  # a whole boot each


def test_verdict_runs_summarise_a_sweep(layout_sweeps) -> None:
    runs = verdict_runs(sorted(layout_sweeps["rework-512g"].values(),
                               key=lambda r: r.load_address))
    assert [(r.first, r.last, r.count, r.verdict, r.outcome) for r in runs] == [
        (0, SLOT - 512 * MIB, 1024, "clean", "clean"),
        (SLOT, 2 * SLOT - 512 * MIB, 1024, FINDINGS, f"{FINDINGS} ({CLASH})"),
        (2 * SLOT, 2 * TIB - 512 * MIB, 2048, "clean", "clean"),
    ]


# -- other verdicts -----------------------------------------------------------


def test_one_and_two_processes_agree() -> None:
    program = assemble_file(HEAD_S)
    addresses = [0, 0x4000_0000, 0x4000_1000, SLOT, SLOT + GIB, 2 * SLOT, 0x8_8000_0000]
    one = sweep_program(program, addresses, jobs=1)
    two = sweep_program(program, addresses, jobs=2)
    assert one == two
    assert [r.verdict for r in one] == ["clean", "clean", "boot-failed",
                                        FINDINGS, FINDINGS, "clean", "clean"]
    assert [r.outcome for r in one][2:5] == ["boot-failed (BOOT_ERR_MISALIGNED)",
                                             f"{FINDINGS} ({CLASH})", f"{FINDINGS} ({CLASH})"]


def test_a_clash_keeps_the_boot_failure_code() -> None:
    [result] = sweep(HEAD_S, [SLOT], jobs=1)
    assert (result.verdict, result.rules, result.failure_code, result.failure_name) == \
        (FINDINGS, (CLASH,), 4, "BOOT_ERR_IDMAP_CLASH")


def test_loads_beyond_the_physical_address_space_are_reported() -> None:
    addresses = [(1 << 44) - 2 * MIB, 1 << 44, 1 << 48, (1 << 64) - 2 * MIB]
    results = sweep(HEAD_S, addresses, jobs=2)
    assert [r.verdict for r in results] == ["clean"] + ["beyond-pa-range"] * 3
    assert "44-bit physical address space" in results[1].message


def test_a_rule_that_fires_makes_the_verdict_findings(tmp_path: Path) -> None:
    defect = next(d for d in load_defects(REPO / "fixtures" / "defects.toml")
                  if d.name == "ttbr-write-mmu-on")
    source = materialize(defect, HEAD_S, tmp_path)
    [result] = sweep(source, [0x4000_0000], include_dirs=[HEAD_S.parent / "include"], jobs=1)
    assert result.verdict == FINDINGS
    assert result.rules == ("ttbr-switch-conflict", "ttbr-switch-live")
    assert result.outcome == "findings (ttbr-switch-conflict, ttbr-switch-live)"


def test_an_exhausted_budget_is_incomplete() -> None:
    [result] = sweep(HEAD_S, [0x4000_0000], jobs=1, max_insns=100)
    assert result.verdict == "incomplete"


def test_progress_counts_every_boot() -> None:
    seen: list[int] = []
    sweep(HEAD_S, parse_load_addresses("0:8G:512M"), jobs=2, progress=seen.append)
    assert sum(seen) == 16


# -- bootemu sweep --------------------------------------------------------------


def test_cli_all_clean_exits_0_with_a_grouped_summary() -> None:
    result = bootemu("sweep", "--load-addresses", "0:4G:1G,juno-bank2", "-j", "2")
    assert result.returncode == 0, result.stderr
    assert "0x0 - 0x880000000" in result.stdout and "5 boot(s)  clean" in result.stdout
    assert "5 of 5 boot(s) clean" in result.stdout
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_cli_layouts_and_clash_exit_1() -> None:
    result = bootemu("sweep", "--load-addresses", "0:2T:256G", "--layout", "rework-512g",
                     "--layout", "rework-10t")
    assert result.returncode == 1
    assert "layout rework-512g" in result.stdout and "layout rework-10t" in result.stdout
    assert "0x8000000000 - 0xc000000000" in result.stdout
    assert f"boot(s)  {FINDINGS} ({CLASH})" in result.stdout
    assert "verdicts: clean 8" in result.stdout  # rework-10t


def test_cli_reports_a_layout_wide_finding_once() -> None:
    result = bootemu("sweep", "--load-addresses", "0:2T:512G", "--layout", "pre-rework")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert sum("layout-wide" in line for line in lines) == 1
    assert f"layout-wide, at every load address booted: [{SLOT0}]" in result.stdout
    assert re.search(r"0x8000000000 - 0x18000000000 +3 boot\(s\)  clean", result.stdout)
    assert "verdicts: findings 4" in result.stdout  # check's own verdict is unchanged


def test_cli_json() -> None:
    result = bootemu("sweep", "--load-addresses", "qemu-virt,slot1", "--json")
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and len(rows) == 513
    assert rows[0]["load_address"] == 0x4000_0000 and rows[0]["verdict"] == "clean"
    assert {(row["verdict"], tuple(row["rules"])) for row in rows[1:]} == {(FINDINGS, (CLASH,))}
    assert {"load_address", "verdict", "failure_code", "failure_name", "executed",
            "message", "layout", "rules", "layout_rules", "address_verdict"} <= set(rows[0])


def test_cli_csv() -> None:
    result = bootemu("sweep", "--load-addresses", "qemu-virt,0x8000000000", "--csv",
                     "--layout", "pre-rework")
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["layout"], r["load_address"], r["verdict"], r["failure_name"]) for r in rows] == [
        ("pre-rework", "0x40000000", FINDINGS, "BOOT_ERR_IDMAP_CLASH"),
        ("pre-rework", "0x8000000000", FINDINGS, ""),
    ]
    assert [r["rules"] for r in rows] == [f"{CLASH}+{SLOT0}", SLOT0]


@pytest.mark.parametrize(("args", "needle"), [
    (["--load-addresses", "0:1G:3M"], "--load-addresses: range '0:1G:3M': step"),
    (["--load-addresses", "nowhere"], "--load-addresses: 'nowhere' is not an address"),
    (["--load-addresses", "qemu-virt", "--json", "--csv"], "choose one"),
])
def test_cli_bad_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    result = bootemu("sweep", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bootemu: error: ") and needle in lines[0]
    assert result.stdout == ""


def test_cli_source_error_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.S"
    bad.write_text("_start:\n    frobnicate x0\n")
    result = bootemu("sweep", str(bad), "--load-addresses", "qemu-virt")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "bad.S:2" in result.stderr


def test_cli_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "sweep.png"
    result = bootemu("sweep", "--load-addresses", "0:2T:64G", "--layout", "pre-rework",
                     "--layout", "rework-10t", "--plot", str(target))
    assert result.returncode == 1
    assert target.read_bytes().startswith(b"\x89PNG")
