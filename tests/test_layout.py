"""The memory-layout analysis: presets, problems, the level-0 slot map, `bootemu layout`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HEAD_S

from emu.analysis.layout import (
    LAYOUT_PRESETS,
    ProblemKind,
    check_layout,
    preset_layout,
    va_map,
)
from emu.asm.assembler import assemble_file
from emu.image.layout import (
    SLOT_SIZE,
    Layout,
    LayoutError,
    Region,
    expand_macros,
    layout_from_macros,
)

BOOTEMU = [sys.executable, "-m", "emu.cli.main"]
GIB = 1 << 30
TIB = 1 << 40


def bootemu(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOOTEMU, *args], capture_output=True, text=True, timeout=120,
                          env=env)


def kinds(layout: Layout) -> list[tuple[ProblemKind, tuple[str, ...]]]:
    return [(problem.kind, problem.regions) for problem in check_layout(layout)]


# -- presets ------------------------------------------------------------------


def test_pre_rework_has_its_regions_in_the_identity_slot() -> None:
    layout = preset_layout("pre-rework")
    assert layout.region("XEN").start == 2 << 20
    assert kinds(layout) == [(ProblemKind.IDENTITY_AREA, (name,))
                             for name in ("XEN", "FIXMAP", "VMAP", "FRAMETABLE")]


@pytest.mark.parametrize("name", ["rework-512g", "rework-2t", "rework-10t"])
def test_reworked_presets_pass(name: str) -> None:
    assert check_layout(preset_layout(name)) == []


def test_rework_10t_keeps_20_slots_free_and_moves_every_region_above_them() -> None:
    layout = preset_layout("rework-10t")
    assert layout.identity_slots == 20
    assert layout.region("XEN").start == 10 * TIB + (2 << 20)
    assert all(region.first_slot >= 20 for region in layout.regions)


@pytest.mark.parametrize("name", list(LAYOUT_PRESETS))
def test_each_preset_is_what_head_s_assembles_with_its_definitions(name: str) -> None:
    preset = LAYOUT_PRESETS[name]
    program = assemble_file(HEAD_S, defines=preset.defines)
    built = layout_from_macros(program.defines, name=name, identity_slots=preset.identity_slots)
    assert built == preset_layout(name)
    assert program.base == built.region("XEN").start  # head.S links at XEN_VIRT_START


def test_rework_512g_is_layout_h_as_it_is() -> None:
    program = assemble_file(HEAD_S)
    assert layout_from_macros(program.defines, name="x").regions == \
        preset_layout("rework-512g").regions


# -- problems -----------------------------------------------------------------


def test_a_define_that_overlaps_two_regions_is_reported() -> None:
    program = assemble_file(HEAD_S, defines={"FIXMAP_VIRT_START": "0x0000008000200000"})
    layout = layout_from_macros(program.defines, name="overlap")
    assert kinds(layout) == [(ProblemKind.OVERLAP, ("XEN", "FIXMAP"))]
    [problem] = check_layout(layout)
    assert "XEN" in problem.message and "FIXMAP" in problem.message
    assert "0x8000200000" in problem.message


def test_misaligned_beyond_va_and_empty_regions() -> None:
    layout = Layout("bad", (
        Region("A", SLOT_SIZE + 0x1000, 2 << 20),
        Region("B", 2 * SLOT_SIZE, 0x1000),
        Region("C", (1 << 48) - (2 << 20), 4 << 20),
        Region("D", 3 * SLOT_SIZE, 0),
    ))
    found = kinds(layout)
    assert (ProblemKind.MISALIGNED, ("A",)) in found
    assert (ProblemKind.MISALIGNED, ("B",)) in found
    assert (ProblemKind.BEYOND_VA, ("C",)) in found
    assert (ProblemKind.EMPTY, ("D",)) in found
    assert not any(kind is ProblemKind.OVERLAP for kind, _ in found)


def test_adjacent_regions_do_not_overlap() -> None:
    layout = Layout("adjacent", (Region("A", SLOT_SIZE, 2 << 20),
                                 Region("B", SLOT_SIZE + (2 << 20), 2 << 20)))
    assert check_layout(layout) == []


def test_identity_slots_decide_the_identity_area() -> None:
    layout = preset_layout("rework-512g")
    wider = Layout(layout.name, layout.regions, identity_slots=20)
    assert {regions for kind, regions in kinds(wider)} == \
        {("XEN",), ("FIXMAP",), ("VMAP",), ("FRAMETABLE",)}


# -- the slot map -------------------------------------------------------------


def test_slot_map_of_rework_512g() -> None:
    rows = [(r.first, r.last, r.regions, r.identity) for r in va_map(preset_layout("rework-512g"))]
    assert rows == [
        (0, 0, (), True),
        (1, 1, ("XEN", "FIXMAP", "VMAP"), False),
        (2, 3, (), False),
        (4, 4, ("FRAMETABLE",), False),
        (5, 255, (), False),
        (256, 265, ("DIRECTMAP",), False),
        (266, 511, (), False),
    ]


def test_slot_map_marks_the_pre_rework_clash() -> None:
    first = va_map(preset_layout("pre-rework"))[0]
    assert (first.first, first.last, first.clash) == (0, 0, True)
    assert first.regions == ("XEN", "FIXMAP", "VMAP", "FRAMETABLE")
    assert "CLASH" in first.describe()


def test_slot_map_covers_every_slot_once() -> None:
    for name in LAYOUT_PRESETS:
        rows = va_map(preset_layout(name))
        assert rows[0].first == 0 and rows[-1].last == 511
        assert all(a.last + 1 == b.first for a, b in zip(rows, rows[1:], strict=False))


# -- macros -------------------------------------------------------------------


def test_macro_expansion_follows_cpp() -> None:
    macros = {
        "SLOT0": "(slot) ((slot) << 39)",
        "MB": "(n) ((n) << 20)",
        "XEN_VM_MAPPING": "SLOT0(IDENTITY)",
        "IDENTITY": "20",
        "PAREN": "(1 << 21)",
        "SELF": "SELF + 1",
    }
    assert expand_macros("XEN_VM_MAPPING + MB(2)", macros) == "((20) << 39) + ((2) << 20)"
    assert expand_macros("PAREN", macros) == "(1 << 21)"
    assert expand_macros("SELF", macros) == "SELF + 1"  # no recursion, as in cpp
    assert expand_macros("SLOT0", macros) == "SLOT0"  # a function-like macro not called


def test_layout_without_static_regions_uses_virt_start_size_pairs() -> None:
    macros = {"A_VIRT_START": "SLOT(2)", "A_VIRT_SIZE": "(1 << 30)", "SLOT": "(n) ((n) << 39)",
              "B_VIRT_START": "0x1000", "IDENTITY_MAPPING_AREA_NR_L0": "4"}
    layout = layout_from_macros(macros, name="pairs")
    assert layout.regions == (Region("A", 2 * SLOT_SIZE, GIB),)  # B has no size
    assert layout.identity_slots == 4


def test_layout_errors_name_the_macro() -> None:
    with pytest.raises(LayoutError, match="no static regions"):
        layout_from_macros({"FOO": "1"}, name="none")
    with pytest.raises(LayoutError, match="XEN_VIRT_START"):
        layout_from_macros({"STATIC_REGIONS": "(X) X(XEN_VIRT_START, 0x200000)",
                            "XEN_VIRT_START": "undefined_thing"}, name="bad")


# -- bootemu layout -------------------------------------------------------------


def test_cli_layout_of_head_s_is_clean() -> None:
    result = bootemu("layout")
    assert result.returncode == 0, result.stderr
    assert "XEN" in result.stdout and "0x0000008000200000" in result.stdout
    assert "free: identity maps" in result.stdout
    assert "Problems\n  none" in result.stdout


def test_cli_layout_pre_rework_exits_1() -> None:
    result = bootemu("layout", "--layout", "pre-rework")
    assert result.returncode == 1
    assert "[identity-area] XEN" in result.stdout
    assert "CLASH" in result.stdout


def test_cli_layout_overlap_from_define_exits_1() -> None:
    result = bootemu("layout", str(HEAD_S), "-D", "VMAP_VIRT_START=0x0000008000000000",
                     "-D", "VMAP_VIRT_SIZE=0x40000000")
    assert result.returncode == 1
    assert "[overlap] XEN" in result.stdout or "[overlap] VMAP" in result.stdout


def test_cli_layout_json() -> None:
    result = bootemu("layout", "--layout", "rework-10t", "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["name"] == "rework-10t" and report["identity_slots"] == 20
    assert [r["name"] for r in report["regions"]] == \
        ["XEN", "FIXMAP", "VMAP", "FRAMETABLE", "DIRECTMAP"]
    assert report["problems"] == []
    assert report["slots"][0] == {"first_slot": 0, "last_slot": 19, "start": 0,
                                  "end": 20 * SLOT_SIZE, "regions": [], "identity": True,
                                  "clash": False}


def test_cli_layout_bad_source_is_one_line_exit_2(tmp_path: Path) -> None:
    result = bootemu("layout", str(tmp_path / "missing.S"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing.S" in result.stderr


def test_cli_layout_without_regions_is_one_line_exit_2(tmp_path: Path) -> None:
    source = tmp_path / "plain.S"
    source.write_text("_start:\n    nop\n")
    result = bootemu("layout", str(source))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"bootemu: error: {source}: no static regions: the source defines neither "
        "STATIC_REGIONS nor any NAME_VIRT_START / NAME_VIRT_SIZE pair"]


def test_cli_layout_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "map.png"
    result = bootemu("layout", "--layout", "pre-rework", "--plot", str(target))
    assert result.returncode == 1
    assert target.read_bytes().startswith(b"\x89PNG")


def test_cli_plot_without_matplotlib_is_one_line_exit_2(tmp_path: Path) -> None:
    # A module that refuses to import shadows the real matplotlib.
    (tmp_path / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{Path(HEAD_S).parents[1]}"}
    result = bootemu("layout", "--plot", str(tmp_path / "x.png"), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "bootemu: error: --plot needs matplotlib, which is not installed "
        "(pip install 'bootemu[plot]')"]
