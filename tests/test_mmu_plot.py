"""The picture of a boot's MMU story (emu.report.mmu_plot), checked by its
elements, not its pixels: the title, the window spans, the finding markers,
the TTBR labels, the MMU track, the axes, and the files written.

The README's pictures, docs/head-timeline.png and docs/defect-timeline.png,
are the two runs these tests draw (head.S, and the corpus defect
ttbr-write-mmu-on), written with ``plot_run(run, "docs/....png")``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from emu.analysis.corpus import load_defects, materialize  # noqa: E402
from emu.board.board import Board  # noqa: E402
from emu.checks.run import CheckRun, build_image, check_image  # noqa: E402
from emu.machine.events import (  # noqa: E402
    CacheMaintenance,
    DescriptorWrite,
    MmuDisable,
    MmuEnable,
    TlbInvalidate,
    TtbrWrite,
)
from emu.report.mmu_plot import (  # noqa: E402
    Landmarks,
    PlotError,
    figure_for,
    plot_run,
    table_name,
)

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "asm" / "head.S"
DEFECTS = ROOT / "fixtures" / "defects.toml"
DEFECT = "ttbr-write-mmu-on"


@pytest.fixture(scope="module")
def head_run() -> CheckRun:
    return check_image(build_image(HEAD))


@pytest.fixture(scope="module")
def defect_rules() -> list[str]:
    return next(d for d in load_defects(DEFECTS) if d.name == DEFECT).rules


@pytest.fixture(scope="module")
def defect_run(tmp_path_factory: pytest.TempPathFactory) -> CheckRun:
    defect = next(d for d in load_defects(DEFECTS) if d.name == DEFECT)
    return check_image(build_image(materialize(defect, HEAD, tmp_path_factory.mktemp("defect"))))


@pytest.fixture(scope="module")
def head_figure(head_run: CheckRun) -> Figure:
    return figure_for(head_run)


@pytest.fixture(scope="module")
def defect_figure(defect_run: CheckRun) -> Figure:
    return figure_for(defect_run)


def by_gid(figure: Figure, prefix: str, kind: type = object) -> list:
    """The figure's artists of one kind whose gid starts with ``prefix``."""
    return [artist for artist in figure.findobj(lambda a: isinstance(a, kind))
            if (artist.get_gid() or "").startswith(prefix)]


def texts(figure: Figure) -> list[str]:
    return [text.get_text() for text in figure.findobj(Text)]


def only_axes(figure: Figure):
    (axes,) = figure.axes
    return axes


def test_the_title_names_the_image_and_the_verdict(head_figure: Figure, defect_figure: Figure,
                                                   head_run: CheckRun,
                                                   defect_run: CheckRun) -> None:
    assert head_run.verdict == "clean" and defect_run.verdict == "findings"
    assert head_figure.get_suptitle() == "head.S: clean - no rule fired"
    title = defect_figure.get_suptitle()
    assert title.startswith(f"{DEFECT}.S: findings - ")
    assert all(finding.rule in title for finding in defect_run.findings)
    subtitle = only_axes(head_figure).get_title(loc="left")
    assert f"#{head_run.stop.index}" in subtitle and "start_c" in subtitle
    assert "2 MMU-transition windows" in subtitle and "0 findings" in subtitle


@pytest.mark.parametrize("which", ["head", "defect"])
def test_one_span_per_transition_window_where_it_opens_and_closes(
        which: str, request: pytest.FixtureRequest) -> None:
    run: CheckRun = request.getfixturevalue(f"{which}_run")
    figure: Figure = request.getfixturevalue(f"{which}_figure")
    spans = sorted(by_gid(figure, "window-", Rectangle), key=Rectangle.get_x)
    assert run.windows and len(spans) == len(run.windows)
    for span, window in zip(spans, run.windows, strict=True):
        assert window.closed_by is not None
        assert span.get_x() == window.opened_by.index
        assert span.get_x() + span.get_width() == window.closed_by.index
    labels = [t.get_text() for t in by_gid(figure, "window-", Text)]
    assert labels == [f"W{n}" for n in range(1, len(run.windows) + 1)]


def test_each_window_is_wide_enough_to_see(head_figure: Figure, head_run: CheckRun) -> None:
    # head.S's first window is one instruction of 12,596: on a linear axis it
    # would be a hair; the compressed axis gives it a visible share.
    axes = only_axes(head_figure)
    left, right = axes.transData.transform([(axes.get_xlim()[0], 0),
                                            (axes.get_xlim()[1], 0)])[:, 0]
    for span in by_gid(head_figure, "window-", Rectangle):
        x0, x1 = axes.transData.transform([(span.get_x(), 0),
                                           (span.get_x() + span.get_width(), 0)])[:, 0]
        assert (x1 - x0) / (right - left) > 0.03


def test_a_marker_with_its_rule_id_per_finding(defect_figure: Figure, defect_run: CheckRun,
                                               defect_rules: list[str]) -> None:
    fired = [finding.rule for finding in defect_run.findings]
    assert set(defect_rules) <= set(fired)
    markers = by_gid(defect_figure, "finding-", Line2D)
    assert len([m for m in markers if not m.get_gid().startswith("finding-line")]) == len(fired)
    for number, finding in enumerate(defect_run.findings, 1):
        (marker,) = by_gid(defect_figure, f"finding-{number}", Line2D)
        assert list(marker.get_xdata()) == [finding.index]
        (label,) = by_gid(defect_figure, f"finding-{number}-label", Text)
        assert label.get_text() == f"{finding.rule} #{finding.index}"
        (line,) = by_gid(defect_figure, f"finding-line-{number}", Line2D)
        assert list(line.get_xdata()) == [finding.index, finding.index]


def test_a_clean_run_has_no_finding_marker(head_figure: Figure) -> None:
    assert not by_gid(head_figure, "finding")
    assert "no rule fired" in texts(head_figure)


def expected_table_names(run: CheckRun) -> set[str]:
    """The symbols of the image at the tables the TTBR writes point at, looked
    up in the image's symbol table (not through the plot's own lookup); names
    like ``__bss_start`` that mark where a section starts are not tables."""
    by_physical: dict[int, set[str]] = {}
    for name, value in run.image.symbols.items():
        if name.startswith(("_", ".", "$")):
            continue
        by_physical.setdefault(run.image.physical(value), set()).add(name)
    return {name for event in run.events if isinstance(event, TtbrWrite)
            for name in by_physical.get(event.new, ())}


@pytest.mark.parametrize("which", ["head", "defect"])
def test_ttbr_labels_name_the_tables(which: str, request: pytest.FixtureRequest) -> None:
    run: CheckRun = request.getfixturevalue(f"{which}_run")
    figure: Figure = request.getfixturevalue(f"{which}_figure")
    expected = expected_table_names(run)
    assert expected == {"boot_pgtable", "runtime_pgtable"}
    assert "runtime_pgtable:" in HEAD.read_text() and "boot_pgtable:" in HEAD.read_text()
    on_bars = " ".join(t.get_text() for t in by_gid(figure, "ttbr-TTBR0_EL2-", Text))
    legend = [t.get_text() for t in only_axes(figure).get_legend().get_texts()]
    for name in expected:
        assert name in on_bars
        assert any(text.startswith(f"table {name} (PA ") for text in legend)
    # The bars change where the TTBR writes are.
    bars = sorted(by_gid(figure, "ttbr-TTBR0_EL2-", Rectangle), key=Rectangle.get_x)
    writes = [e.index for e in run.events if isinstance(e, TtbrWrite)]
    assert [bar.get_x() for bar in bars[1:]] == writes
    assert bars[-1].get_x() + bars[-1].get_width() == run.stop.index


def test_table_name_is_the_symbol_or_none(head_run: CheckRun) -> None:
    image = head_run.image
    pa = image.symbol_physical("boot_pgtable")
    assert table_name(image, pa) == "boot_pgtable"
    assert table_name(image, pa | (5 << 48) | 1) == "boot_pgtable"  # ASID and CnP ignored
    assert table_name(image, 0) is None
    assert table_name(image, 0x7000_0000_0000) is None  # outside the image


@pytest.mark.parametrize("which", ["head", "defect"])
def test_the_mmu_track_turns_at_the_mmu_events(which: str,
                                              request: pytest.FixtureRequest) -> None:
    run: CheckRun = request.getfixturevalue(f"{which}_run")
    figure: Figure = request.getfixturevalue(f"{which}_figure")
    bars = sorted(by_gid(figure, "mmu-EL2-", Rectangle), key=Rectangle.get_x)
    states = ["-on-" in bar.get_gid() for bar in bars]
    toggles = [(e.index, isinstance(e, MmuEnable)) for e in run.events
               if isinstance(e, (MmuEnable, MmuDisable))]
    assert toggles and toggles[0][1]
    assert [(bar.get_x(), on) for bar, on in zip(bars[1:], states[1:], strict=True)] == toggles
    assert bars[0].get_x() == 0 and not states[0]
    assert bars[-1].get_x() + bars[-1].get_width() == run.stop.index
    # The exception level: EL2 throughout.
    (el,) = by_gid(figure, "el-", Rectangle)
    assert (el.get_x(), el.get_width()) == (0, run.stop.index)
    assert by_gid(figure, "el-1-label", Text)[0].get_text() == "EL2"


def test_tlbi_ticks_and_descriptor_writes(head_figure: Figure, head_run: CheckRun) -> None:
    (ticks,) = by_gid(head_figure, "tlbi", LineCollection)
    tlbi = [e.index for e in head_run.events if isinstance(e, TlbInvalidate)]
    assert sorted(segment[0][0] for segment in ticks.get_segments()) == tlbi
    writes = [e for e in head_run.events if isinstance(e, DescriptorWrite)]
    assert writes
    drawn = [x for line in by_gid(head_figure, "descriptor-", Line2D)
             for x in line.get_xdata()]
    assert sorted(drawn) == [e.index for e in writes]


def test_axes_are_labelled(head_figure: Figure, head_run: CheckRun) -> None:
    axes = only_axes(head_figure)
    assert axes.get_xlabel().startswith("instruction count")
    rows = [label.get_text() for label in axes.get_yticklabels()]
    assert rows[:4] == ["findings", "exception level", "MMU EL2 (SCTLR_EL2.M)", "TTBR0_EL2"]
    assert {"TLBI", "descriptor writes"} <= set(rows)
    ticks = list(axes.get_xticks())
    assert 0 in ticks and head_run.stop.index in ticks
    for window in head_run.windows:
        assert window.opened_by.index in ticks
    assert [t.get_text() for t in axes.get_xticklabels()][-1] == f"{head_run.stop.index:,}"


def test_writes_png_and_svg_by_suffix(defect_run: CheckRun, tmp_path: Path) -> None:
    png, svg = tmp_path / "story.png", tmp_path / "story.svg"
    assert isinstance(plot_run(defect_run, png), Figure)
    plot_run(defect_run, svg)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 10_000
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    for finding in defect_run.findings:
        assert f"{finding.rule} #{finding.index}" in text  # text, not glyph paths
    assert "runtime_pgtable" in text
    with pytest.raises(PlotError, match=r"\.png, \.svg or \.pdf"):
        plot_run(defect_run, tmp_path / "story.jpeg")


def test_the_scale_is_piecewise_linear_between_landmarks() -> None:
    landmarks = Landmarks([0, 10, 11, 1_000_010])
    assert landmarks.positions == pytest.approx([0, 2, 3, 10])
    assert list(landmarks.forward([0, 5, 10, 11, 500_010.5, 1_000_010])) == pytest.approx(
        [0, 1, 2, 3, 6.5, 10])
    values = [-3, 0, 3, 10.5, 77, 999_999, 1_000_012]
    assert list(landmarks.inverse(landmarks.forward(values))) == pytest.approx(values)


def test_many_events_are_thinned_to_what_can_be_seen(head_run: CheckRun) -> None:
    # A kernel cleans caches hundreds of thousands of times: one tick each
    # would make an SVG of tens of megabytes for nothing visible.
    loop = [CacheMaintenance(index, 0x4000_0000, 0x4000_0000, 2, "DC CIVAC", index * 64)
            for index in range(1_000, 11_000, 1)]
    busy = dataclasses.replace(head_run, events=sorted(
        [*loop, *head_run.events], key=lambda event: event.index))
    figure = figure_for(busy)
    (ticks,) = by_gid(figure, "cache", LineCollection)
    assert 1 < len(ticks.get_segments()) < 2_000


def test_without_matplotlib_it_says_how_to_install(head_run: CheckRun,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match=r"pip install 'bootemu\[plot\]'"):
        figure_for(head_run)


def test_a_boot_entered_at_el1_shows_el1_and_its_regime() -> None:
    board = Board(el=1)
    run = check_image(build_image(HEAD, board=board), board=board)
    assert run.verdict == "boot-failed"  # head.S insists on EL2
    figure = figure_for(run)
    assert figure.get_suptitle().startswith("head.S: boot-failed - ")
    assert "it arrived at boot_failure" in only_axes(figure).get_title(loc="left")
    assert by_gid(figure, "el-1-label", Text)[0].get_text() == "EL1"
    rows = [label.get_text() for label in only_axes(figure).get_yticklabels()]
    assert "MMU EL1&0 (SCTLR_EL1.M)" in rows and not any(r.startswith("TTBR") for r in rows)


def test_check_draws_the_picture_with_plot(tmp_path: Path) -> None:
    import subprocess
    import sys

    picture = tmp_path / "head.svg"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "emu.cli", "check", "--plot", str(picture)],
                          capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "runtime_pgtable" in picture.read_text()
    wrong = subprocess.run([sys.executable, "-m", "emu.cli", "check", "--plot",
                            str(tmp_path / "head.jpg")],
                           capture_output=True, text=True, cwd=root, timeout=120)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
