"""A picture of a checked boot's MMU story along the instruction count.

:func:`plot_run` draws a :class:`~emu.checks.run.CheckRun` as one chart of
horizontal tracks sharing an instruction axis, for a review or a bug report:

* **findings** (top): a red marker per finding where it fired, labelled with
  its rule id and instruction count, and a dashed red line through every
  track below it;
* **exception level**: the EL over time (from the board's entry EL, the
  events' ELs and the exceptions taken, marked ``*``);
* **MMU <regime>**: SCTLR_ELx.M per translation regime, a green bar while the
  MMU is on, a grey one while it is off, changing exactly at the
  :class:`~emu.machine.events.MmuEnable`/:class:`~emu.machine.events.MmuDisable`
  events;
* **TTBR0_EL2, TTBR0_EL1, TTBR1_EL1** (those written): which table each
  register points at over time, one colour per table, labelled with the
  image's symbol for the table's address (``boot_pgtable``) or its PA;
* **other sysregs** (SCTLR without an M change, TCR, MAIR, VBAR, HCR),
  **TLBI** ticks, **cache** maintenance ticks, and **descriptor writes**
  (filled when TLB entries had been walked through the descriptor);
* **MMU-transition windows** (``run.windows``) as orange spans across every
  track, from the instruction that opened each to the ISB that closed it,
  numbered W1, W2, ... in the order of the text report's "Transition window
  1, 2, ...".

The title names the image and gives the verdict as the text report's last
line does (``findings - 2 findings (ttbr-switch-conflict, ...)``); the line
under it says where and why the run stopped.

The instruction axis.  What matters in a boot clusters: head.S spends 12,365
instructions building tables and then does everything this picture is about
in its last 230; a kernel runs millions of instructions between a handful of
MMU steps.  A linear axis squeezes a cluster into one pixel, and a log or
symlog axis does too (12,365 and 12,596 are 0.008 decades apart).  An axis of
event ordinals would be readable but would hide which stretches are long.
So the axis is piecewise linear between **landmarks** (the start, the stop,
every system-register write, exception, finding and window edge), and each
gap between consecutive landmarks is drawn ``1 + log10(gap)`` units wide: a
gap of one instruction is 1 unit, of 188 instructions 3.3, of a million 7.
The x data are still instruction counts (a matplotlib ``function`` scale), so
every artist sits at its instruction count and the ticks, at landmarks, are
true counts; other events (TLBI, cache, descriptor writes) fall linearly
between the landmarks around them.  Gaps compressed more than a hundredfold
are marked ``//`` on the axis.  Where events crowd closer than the eye can
tell apart (a kernel cleans caches half a million times), one tick or marker
per slice of 1/200 or 1/50 inch is drawn.

:func:`story_of` gathers what the tracks show in one pass over the events
(the EL, SCTLR.M and TTBR stretches, the landmarks), for readers who want the
numbers rather than the picture.

matplotlib (the optional ``plot`` extra) is imported only when a picture is
asked for, and only through its object-oriented API (no pyplot, no global
figure state, no display): :func:`figure_for` builds the figure,
:func:`plot_run` also writes it, PNG, SVG or PDF by the file's suffix.  SVG
text stays text, so rule ids and symbols can be searched in it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emu.checks.run import CheckRun
from emu.checks.verdict import BOOT_FAILED, CLEAN, FINDINGS, INCOMPLETE
from emu.image.boot_image import BootImage
from emu.machine.events import (
    CacheMaintenance,
    DescriptorWrite,
    ExceptionTaken,
    MmuDisable,
    MmuEnable,
    SysRegWrite,
    TlbInvalidate,
    TransitionWindow,
    TtbrWrite,
)
from emu.report.check_report import run_end, verdict_words
from emu.report.ending import counted

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FORMATS", "Landmarks", "PlotError", "Story", "figure_for", "plot_run", "story_of",
           "table_name", "window_span"]

_INSTALL_HINT = "pip install 'bootemu[plot]'"
# The file suffixes plot_run writes, by matplotlib's format name.
FORMATS = ("png", "svg", "pdf")

# Where the TTBR_ELx.BADDR field is: bits 47:1 (bit 0 is CnP, 63:48 the ASID).
_BADDR_MASK = ((1 << 48) - 1) & ~1

_WINDOW_COLOUR = "#ff9f1c"
_MMU_ON = "#2ca02c"
_MMU_OFF = "#d9d9d9"
_EL_COLOURS = {0: "#deebf7", 1: "#9ecae1", 2: "#4292c6", 3: "#08519c"}
_TABLE_COLOURS = ["#1f77b4", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#bcbd22",
                  "#7f7f7f", "#393b79"]
_FINDING = "#d62728"
_TLBI = "#6a3d9a"
_CACHE = "#969696"
_DESCRIPTOR = "#b15928"
_SYSREG = "#525252"
_VERDICT_COLOURS = {CLEAN: "#2ca02c", FINDINGS: "#d62728", BOOT_FAILED: "#ff7f0e",
                    INCOMPLETE: "#7f7f7f"}
_TTBR_ORDER = ("TTBR0_EL2", "TTBR0_EL1", "TTBR1_EL1")
_REGIME_SCTLR = {"EL2": "SCTLR_EL2", "EL1&0": "SCTLR_EL1"}

# Figure geometry, in inches: the width, and the part of it the axes get.
_WIDTH = 13.0
_AXES_LEFT, _AXES_RIGHT = 0.13, 0.80
_CHAR = 0.0075  # inches per point of font size, for one character (an estimate)
# The most finding labels drawn; beyond, only each rule's first finding is labelled.
_MAX_FINDING_LABELS = 24
# The most other-sysreg labels drawn; beyond, markers only.
_MAX_SYSREG_LABELS = 24


class PlotError(RuntimeError):
    """A picture that cannot be drawn (matplotlib missing, an unknown file type)."""


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(f"a picture needs matplotlib, which is not installed ({_INSTALL_HINT})"
                        ) from None


# --- The instruction axis -------------------------------------------------------------


def gap_width(gap: int) -> float:
    """How wide a gap of ``gap`` instructions between landmarks is drawn, in units."""
    return 1.0 + math.log10(gap) if gap > 0 else 0.0


@dataclass
class Landmarks:
    """The piecewise-linear instruction axis: landmark instruction counts and
    where each is drawn (``positions``, in units from the first)."""

    counts: list[int]
    positions: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        counts = sorted(set(self.counts))
        if len(counts) < 2:
            counts = [counts[0] if counts else 0, (counts[0] if counts else 0) + 1]
        self.counts = counts
        self.positions = [0.0]
        for low, high in zip(counts, counts[1:], strict=False):
            self.positions.append(self.positions[-1] + gap_width(high - low))

    @property
    def width(self) -> float:
        return self.positions[-1]

    def forward(self, values: Any) -> Any:
        """Instruction counts to axis units (numpy arrays in and out)."""
        import numpy

        x = numpy.asarray(values, dtype=float)
        inside = numpy.interp(x, self.counts, self.positions)
        # Beyond the ends (the axis margins): one unit per instruction.
        low = self.positions[0] + (x - self.counts[0])
        high = self.positions[-1] + (x - self.counts[-1])
        return numpy.where(x < self.counts[0], low,
                           numpy.where(x > self.counts[-1], high, inside))

    def inverse(self, values: Any) -> Any:
        """Axis units to instruction counts."""
        import numpy

        y = numpy.asarray(values, dtype=float)
        inside = numpy.interp(y, self.positions, self.counts)
        low = self.counts[0] + (y - self.positions[0])
        high = self.counts[-1] + (y - self.positions[-1])
        return numpy.where(y < self.positions[0], low,
                           numpy.where(y > self.positions[-1], high, inside))

    def at(self, count: float) -> float:
        """One instruction count in axis units."""
        return float(self.forward([count])[0])


# --- What the tracks show, from the run ------------------------------------------------


@dataclass(frozen=True)
class Stretch:
    """A value held from instruction ``start`` up to ``end``."""

    start: int
    end: int
    value: int


def window_span(window: TransitionWindow, stop_index: int) -> tuple[int, int]:
    """Where a window's span is drawn: from the instruction that opened it to
    the one that closed it (an ISB); an unclosed window runs to its last fetch,
    or to the stop."""
    start = window.opened_by.index
    if window.closed_by is not None:
        end = window.closed_by.index
    elif window.fetches:
        end = max(window.fetches[-1].index, start)
    else:
        end = max(stop_index, start)
    return start, end


def _stretches(start_value: int, changes: Iterable[tuple[int, int]], end: int
               ) -> list[Stretch]:
    """Runs of one value from 0 to ``end``, given ``(index, new value)`` changes."""
    runs: list[Stretch] = []
    since, value = 0, start_value
    for index, new in changes:
        if new == value:
            continue
        if index > since:
            runs.append(Stretch(since, index, value))
        since, value = index, new
    runs.append(Stretch(since, max(end, since), value))
    return runs


@dataclass
class Story:
    """What the picture shows of a run, gathered in one pass over its events
    (a kernel's run has hundreds of thousands, nearly all cache maintenance)."""

    el: list[Stretch]                   # the exception level
    mmu: dict[str, list[Stretch]]       # SCTLR_ELx.M (1 on, 0 off), per regime
    ttbrs: dict[str, list[Stretch]]     # each TTBR written, its value
    sysregs: list[SysRegWrite]          # the other translation-register writes
    exceptions: list[ExceptionTaken]
    tlbi: list[int]                     # instruction counts
    cache: list[int]
    descriptors: list[DescriptorWrite]
    windows: list[tuple[int, int]]      # see window_span
    landmarks: Landmarks


def story_of(run: CheckRun) -> Story:
    """The tracks of a run's picture.

    The EL starts at the board's entry EL and changes at each exception taken
    (to its target EL) and at any event run at another EL.  SCTLR_ELx.M is
    tracked per regime written (the entry regime when none is), from the
    first write's old value, changing only at MMU on/off events; each TTBR
    written likewise from its first write's old value.
    """
    stop = run.stop.index
    el_changes: list[tuple[int, int]] = []
    current_el = run.board.el
    mmu_first: dict[str, int] = {}
    mmu_changes: dict[str, list[tuple[int, int]]] = {}
    ttbr_first: dict[str, int] = {}
    ttbr_changes: dict[str, list[tuple[int, int]]] = {}
    sysregs: list[SysRegWrite] = []
    exceptions: list[ExceptionTaken] = []
    tlbi: list[int] = []
    cache: list[int] = []
    descriptors: list[DescriptorWrite] = []
    counts = {0, stop}
    for event in run.events:
        if event.el != current_el:
            el_changes.append((event.index, event.el))
            current_el = event.el
            counts.add(event.index)
        if type(event) is CacheMaintenance:  # the bulk: no isinstance chain
            cache.append(event.index)
        elif isinstance(event, SysRegWrite):
            counts.add(event.index)
            regime = str(event.after.name)
            mmu_first.setdefault(regime, event.before.sctlr & 1)
            toggles = mmu_changes.setdefault(regime, [])
            if isinstance(event, MmuEnable):
                toggles.append((event.index, 1))
            elif isinstance(event, MmuDisable):
                toggles.append((event.index, 0))
            elif isinstance(event, TtbrWrite):
                ttbr_first.setdefault(event.register, event.old)
                ttbr_changes.setdefault(event.register, []).append((event.index, event.new))
            else:
                sysregs.append(event)
        elif isinstance(event, TlbInvalidate):
            tlbi.append(event.index)
        elif isinstance(event, DescriptorWrite):
            descriptors.append(event)
        elif isinstance(event, ExceptionTaken):
            counts.add(event.index)
            exceptions.append(event)
            if event.taken is not None:
                el_changes.append((event.index, event.taken.to_el))
                current_el = event.taken.to_el
        elif isinstance(event, CacheMaintenance):
            cache.append(event.index)
    if not mmu_first:
        mmu_first["EL2" if run.board.el == 2 else "EL1&0"] = 0
    windows = [window_span(window, stop) for window in run.windows]
    for window, span in zip(run.windows, windows, strict=True):
        counts.update(span)
        if window.mmu_on_index is not None:
            counts.add(window.mmu_on_index)
    counts.update(finding.index for finding in run.findings)
    ttbr_order = sorted(ttbr_first, key=lambda r: (
        _TTBR_ORDER.index(r) if r in _TTBR_ORDER else len(_TTBR_ORDER), r))
    return Story(
        el=_stretches(run.board.el, el_changes, stop),
        mmu={regime: _stretches(mmu_first[regime], mmu_changes.get(regime, []), stop)
             for regime in sorted(mmu_first, key=lambda name: name != "EL2")},
        ttbrs={register: _stretches(ttbr_first[register], ttbr_changes[register], stop)
               for register in ttbr_order},
        sysregs=sysregs, exceptions=exceptions, tlbi=tlbi, cache=cache,
        descriptors=descriptors, windows=windows,
        landmarks=Landmarks(sorted(count for count in counts if count >= 0)),
    )


def table_base(ttbr: int) -> int:
    """The table address a TTBR value holds (BADDR, without ASID and CnP)."""
    return ttbr & _BADDR_MASK


def table_name(image: BootImage, ttbr: int) -> str | None:
    """The image's symbol for the table a TTBR value points at (``boot_pgtable``,
    or ``name+0xoff`` inside a larger object), None when the table is not in the
    image or no symbol names it."""
    base = table_base(ttbr)
    if not base or not image.in_image(base, physical=True):
        return None
    name = image.symbolize(image.link(base), base)
    return None if name == "?" else name


# --- Drawing --------------------------------------------------------------------------


@dataclass
class _Row:
    key: str
    label: str
    height: float = 1.0
    centre: float = 0.0


def _inches_per_unit(landmarks: Landmarks) -> float:
    """How wide one axis unit is drawn (the figure's width is fixed; 0.4 unit of
    margin either side)."""
    return _WIDTH * (_AXES_RIGHT - _AXES_LEFT) / (landmarks.width + 0.8)


class _Chart:
    """One figure being drawn: the axes, the rows, the x scale, and fitting of text."""

    def __init__(self, run: CheckRun, story: Story, rows: list[_Row]) -> None:
        from matplotlib.figure import Figure

        self.run = run
        self.story = story
        self.landmarks = landmarks = story.landmarks
        self.rows = {row.key: row for row in rows}
        top = 0.0
        for row in rows:
            row.centre = top + row.height / 2
            top += row.height
        height = 1.9 + 0.42 * top
        self.figure = Figure(figsize=(_WIDTH, height))
        self.axes: Axes = self.figure.add_axes(
            (_AXES_LEFT, 1.05 / height + 0.02, _AXES_RIGHT - _AXES_LEFT,
             1 - (1.05 + 0.75) / height - 0.02))
        self.axes.set_xscale("function", functions=(landmarks.forward, landmarks.inverse))
        self.axes.set_xlim(float(landmarks.inverse([-0.4])[0]),
                           float(landmarks.inverse([landmarks.width + 0.4])[0]))
        self.axes.set_ylim(top, 0)
        self.legend: list[Any] = []

    def row(self, key: str) -> _Row:
        return self.rows[key]

    def inches_per_unit(self) -> float:
        return _inches_per_unit(self.landmarks)

    def fits(self, text: str, start: float, end: float, size: float) -> bool:
        """Whether ``text`` at font ``size`` fits between two instruction counts."""
        units = self.landmarks.at(end) - self.landmarks.at(start)
        return units * self.inches_per_unit() > (len(text) + 1) * size * _CHAR

    def text_units(self, text: str, size: float) -> float:
        """How many axis units a text at font ``size`` takes."""
        return (len(text) + 1) * size * _CHAR / self.inches_per_unit()

    def bar(self, key: str, start: int, end: int, colour: str, gid: str,
            label: str | None = None, text_colour: str = "white", **style: Any) -> None:
        from matplotlib.patches import Rectangle

        row = self.row(key)
        bar = Rectangle((start, row.centre - 0.34 * row.height), end - start,
                        0.68 * row.height, facecolor=colour, edgecolor="white",
                        linewidth=0.6, **style)
        bar.set_gid(gid)
        self.axes.add_patch(bar)
        if label is not None:
            middle = float(self.landmarks.inverse(
                [(self.landmarks.at(start) + self.landmarks.at(end)) / 2])[0])
            text = self.axes.text(middle, row.centre, label, ha="center", va="center",
                                  fontsize=7.5, color=text_colour, clip_on=True)
            text.set_gid(f"{gid}-label")


def _rows(story: Story, finding_levels: int) -> list[_Row]:
    rows = [_Row("findings", "findings", 0.6 + 0.45 * max(finding_levels, 1)),
            _Row("el", "exception level")]
    for regime in story.mmu:
        rows.append(_Row(f"mmu-{regime}",
                         f"MMU {regime} ({_REGIME_SCTLR.get(regime, 'SCTLR')}.M)"))
    for register in story.ttbrs:
        rows.append(_Row(f"ttbr-{register}", register))
    if story.sysregs:
        rows.append(_Row("sysreg", "other sysregs", 0.9))
    rows.append(_Row("tlbi", "TLBI", 0.7))
    if story.cache:
        rows.append(_Row("cache", "cache maintenance", 0.7))
    rows.append(_Row("descriptor", "descriptor writes", 0.7))
    return rows


def _finding_levels(chart_units: Callable[[str], float], landmarks: Landmarks,
                    labelled: Sequence[tuple[int, str]]) -> list[int]:
    """A level (0, 1, ...) per labelled finding so that labels do not overlap:
    each goes to the first level whose last label ends before it starts."""
    ends: list[float] = []
    levels = []
    for index, text in labelled:
        x = landmarks.at(index)
        for level, end in enumerate(ends):
            if x > end:
                ends[level] = x + chart_units(text)
                levels.append(level)
                break
        else:
            if len(ends) < 4:
                ends.append(x + chart_units(text))
                levels.append(len(ends) - 1)
            else:  # no room: the level that frees first
                level = min(range(len(ends)), key=ends.__getitem__)
                ends[level] = x + chart_units(text)
                levels.append(level)
    return levels


def _finding_labels(run: CheckRun) -> list[str | None]:
    """The label of each finding (``rule #index``), None for those left unlabelled
    when there are too many (each rule keeps its first)."""
    labels: list[str | None] = []
    seen: set[str] = set()
    many = len(run.findings) > _MAX_FINDING_LABELS
    for finding in run.findings:
        first = finding.rule not in seen
        seen.add(finding.rule)
        labels.append(f"{finding.rule} #{finding.index}" if first or not many else None)
    return labels


def _draw_findings(chart: _Chart, labels: list[str | None], levels: list[int]) -> None:
    run, axes, row = chart.run, chart.axes, chart.row("findings")
    if not run.findings:
        axes.text(chart.landmarks.inverse([chart.landmarks.width / 2])[0], row.centre,
                  "no rule fired", ha="center", va="center", fontsize=8, color=_MMU_ON,
                  style="italic").set_gid("no-findings")
        return
    level_of = iter(levels)
    top = row.centre - row.height / 2
    for number, (finding, label) in enumerate(zip(run.findings, labels, strict=True), 1):
        level = next(level_of) if label is not None else 0
        y = top + 0.3 + 0.45 * level
        axes.axvline(finding.index, color=_FINDING, linestyle="--", linewidth=0.9, alpha=0.7,
                     zorder=4).set_gid(f"finding-line-{number}")
        marker, = axes.plot([finding.index], [y], marker="X", color=_FINDING, markersize=8,
                            linestyle="none", zorder=6)
        marker.set_gid(f"finding-{number}")
        if label is None:
            continue
        right = chart.landmarks.at(finding.index) + chart.text_units(label, 8) \
            > chart.landmarks.width + 0.4
        text = axes.annotate(label, (finding.index, y), xytext=(-8 if right else 8, 0),
                             textcoords="offset points", ha="right" if right else "left",
                             va="center", fontsize=8, color=_FINDING, fontweight="bold",
                             zorder=7)
        text.set_gid(f"finding-{number}-label")
    chart.legend.append(("finding (rule id, instruction)", dict(
        marker="X", color=_FINDING, linestyle="--", markersize=7)))


def _draw_el(chart: _Chart) -> None:
    for number, stretch in enumerate(chart.story.el, 1):
        label = f"EL{stretch.value}"
        chart.bar("el", stretch.start, stretch.end, _EL_COLOURS.get(stretch.value, "#6baed6"),
                  f"el-{number}", label if chart.fits(label, stretch.start, stretch.end, 7.5)
                  else None, text_colour="white" if stretch.value >= 2 else "black")
    taken = chart.story.exceptions
    if taken:
        _points(chart, "el", [e.index for e in taken], "exceptions", marker="*",
                color="black", markersize=9)
        chart.legend.append(("exception taken", dict(marker="*", color="black",
                                                     linestyle="none", markersize=8)))


def _draw_mmu(chart: _Chart) -> None:
    for regime, stretches in chart.story.mmu.items():
        for number, stretch in enumerate(stretches, 1):
            on = bool(stretch.value)
            label = "on" if on else "off"
            chart.bar(f"mmu-{regime}", stretch.start, stretch.end, _MMU_ON if on else _MMU_OFF,
                      f"mmu-{regime}-{label}-{number}",
                      label if chart.fits(label, stretch.start, stretch.end, 7.5) else None,
                      text_colour="white" if on else "black")
    chart.legend.append(("MMU on (SCTLR.M=1)", dict(patch=_MMU_ON)))
    chart.legend.append(("MMU off", dict(patch=_MMU_OFF)))


def _draw_ttbrs(chart: _Chart) -> None:
    image = chart.run.image
    colours: dict[int, str] = {}
    for register, stretches in chart.story.ttbrs.items():
        for number, stretch in enumerate(stretches, 1):
            base = table_base(stretch.value)
            gid = f"ttbr-{register}-{number}"
            if not base:
                chart.bar(f"ttbr-{register}", stretch.start, stretch.end, "#f0f0f0", gid,
                          "0" if chart.fits("0", stretch.start, stretch.end, 7.5) else None,
                          text_colour="#7f7f7f")
                continue
            if base not in colours:
                colours[base] = _TABLE_COLOURS[len(colours) % len(_TABLE_COLOURS)]
            name = table_name(image, stretch.value)
            label = None
            for candidate in ([f"{name} (PA {base:#x})", name] if name else [f"PA {base:#x}"]):
                if chart.fits(candidate, stretch.start, stretch.end, 7.5):
                    label = candidate
                    break
            chart.bar(f"ttbr-{register}", stretch.start, stretch.end, colours[base], gid, label)
    for base, colour in colours.items():
        name = table_name(image, base)
        chart.legend.append((f"table {name} (PA {base:#x})" if name else f"table at PA {base:#x}",
                             dict(patch=colour)))


def _draw_sysregs(chart: _Chart) -> None:
    others = chart.story.sysregs
    if not others:
        return
    row, axes = chart.row("sysreg"), chart.axes
    _points(chart, "sysreg", [e.index for e in others], "sysreg-writes", marker="d",
            color=_SYSREG, markersize=5)
    if len(others) > _MAX_SYSREG_LABELS:
        return
    free_from = -math.inf
    for event in others:
        x = chart.landmarks.at(event.index)
        if x - chart.text_units(event.register, 6.5) / 2 < free_from:
            continue
        axes.text(event.index, row.centre - 0.18, event.register, ha="center", va="bottom",
                  fontsize=6.5, color=_SYSREG).set_gid(f"sysreg-{event.index}")
        free_from = x + chart.text_units(event.register, 6.5) / 2


def _thin(chart: _Chart, indices: list[int], inches: float) -> list[int]:
    """The first of the instruction counts falling in each slice ``inches`` wide of
    the axis: what a reader could tell apart anyway (a boot cleans caches half a
    million times; the PNG and SVG should not draw each)."""
    import numpy

    if len(indices) < 2:
        return list(indices)
    units = chart.landmarks.forward(indices)
    slices = numpy.floor(units * chart.inches_per_unit() / inches)
    _values, first = numpy.unique(slices, return_index=True)
    return [indices[i] for i in sorted(first)]


def _points(chart: _Chart, key: str, indices: list[int], gid: str, **style: Any) -> None:
    """Markers at instruction counts, on one row (one per 1/50 inch)."""
    row = chart.row(key)
    indices = _thin(chart, indices, 0.02)
    line, = chart.axes.plot(indices, [row.centre] * len(indices), linestyle="none", zorder=5,
                            **style)
    line.set_gid(gid)


def _ticks(chart: _Chart, key: str, indices: list[int], colour: str, gid: str,
           length: float = 0.6) -> None:
    if not indices:
        return
    row = chart.row(key)
    indices = _thin(chart, indices, 0.005)
    half = length * row.height / 2
    chart.axes.vlines(indices, row.centre - half, row.centre + half, colors=colour,
                      linewidth=1.4, zorder=5).set_gid(gid)


def _draw_maintenance(chart: _Chart) -> None:
    story = chart.story
    _ticks(chart, "tlbi", story.tlbi, _TLBI, "tlbi")
    chart.legend.append(("TLB invalidation", dict(marker="|", color=_TLBI, linestyle="none",
                                                  markersize=9, markeredgewidth=1.5)))
    if "cache" in chart.rows:
        _ticks(chart, "cache", story.cache, _CACHE, "cache")
    writes = story.descriptors
    live = [e.index for e in writes if e.live_entries]
    dead = [e.index for e in writes if not e.live_entries]
    if live:
        _points(chart, "descriptor", live, "descriptor-live", marker="o", color=_DESCRIPTOR,
                markersize=5.5)
    if dead:
        _points(chart, "descriptor", dead, "descriptor-idle", marker="o",
                markerfacecolor="white", markeredgecolor=_DESCRIPTOR, markersize=5.5)
    chart.legend.append(("descriptor write (filled: cached in the TLB)",
                         dict(marker="o", color=_DESCRIPTOR, linestyle="none", markersize=5)))


def _draw_windows(chart: _Chart) -> None:
    from matplotlib.patches import Rectangle

    axes = chart.axes
    for number, (window, (start, end)) in enumerate(
            zip(chart.run.windows, chart.story.windows, strict=True), 1):
        span = Rectangle((start, 0), end - start, 1, transform=axes.get_xaxis_transform(),
                         facecolor=_WINDOW_COLOUR, alpha=0.28, edgecolor=_WINDOW_COLOUR,
                         linewidth=0.8, zorder=0.5,
                         hatch=None if window.closed_by is not None else "//")
        span.set_gid(f"window-{number}")
        axes.add_patch(span)
        middle = float(chart.landmarks.inverse(
            [(chart.landmarks.at(start) + chart.landmarks.at(end)) / 2])[0])
        axes.text(middle, 1.005, f"W{number}", transform=axes.get_xaxis_transform(),
                  ha="center", va="bottom", fontsize=7.5, color="#b35806",
                  fontweight="bold").set_gid(f"window-{number}-label")
    if chart.run.windows:
        chart.legend.append(("MMU-transition window (W1, W2, ...)",
                             dict(patch=_WINDOW_COLOUR, alpha=0.35)))


def _tick_counts(chart: _Chart, priority: list[int]) -> list[int]:
    """Landmarks to label on the x axis, most important first, none closer than
    a label's height to another."""
    spacing = 0.15 / chart.inches_per_unit()
    kept: list[float] = []
    chosen: list[int] = []
    for count in priority:
        x = chart.landmarks.at(count)
        place = bisect.bisect_left(kept, x)
        if place < len(kept) and kept[place] - x < spacing:
            continue
        if place > 0 and x - kept[place - 1] < spacing:
            continue
        kept.insert(place, x)
        chosen.append(count)
    return sorted(chosen)


def _draw_axis(chart: _Chart) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    run, axes, landmarks = chart.run, chart.axes, chart.landmarks
    story = chart.story
    switches = sorted({s.start for stretches in [*story.mmu.values(), *story.ttbrs.values()]
                       for s in stretches})
    edges = [index for span in story.windows for index in span]
    priority = [0, run.stop.index, *(f.index for f in run.findings), *switches, *edges,
                *landmarks.counts]
    axes.xaxis.set_major_locator(FixedLocator(_tick_counts(chart, priority)))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{round(value):,}"))
    axes.tick_params(axis="x", labelrotation=90, labelsize=7)
    axes.set_xlabel("instruction count (piecewise linear between landmarks; a gap of n "
                    "instructions is drawn 1 + log10 n wide, // where compressed > 100x)",
                    fontsize=8)
    for low, high, start, end in zip(landmarks.counts, landmarks.counts[1:],
                                     landmarks.positions, landmarks.positions[1:], strict=False):
        if (high - low) / (end - start) > 100:
            middle = float(landmarks.inverse([(start + end) / 2])[0])
            axes.text(middle, 0, "//", transform=axes.get_xaxis_transform(), ha="center",
                      va="center", fontsize=8, color="#555555", clip_on=False,
                      fontweight="bold", backgroundcolor="white").set_gid(f"break-{low}")
    rows = list(chart.rows.values())
    axes.set_yticks([row.centre for row in rows], [row.label for row in rows], fontsize=8)
    for row in rows[1:]:
        axes.axhline(row.centre - row.height / 2, color="#e0e0e0", linewidth=0.6, zorder=0.4)
    axes.axvline(run.stop.index, color="black", linewidth=1.0, zorder=4).set_gid("stop")
    axes.text(run.stop.index, 1.005, "stop", transform=axes.get_xaxis_transform(),
              ha="center", va="bottom", fontsize=7.5).set_gid("stop-label")
    for spine in ("top", "right"):
        axes.spines[spine].set_visible(False)


def _draw_title(chart: _Chart) -> None:
    run = chart.run
    name = Path(run.image.name).name
    chart.figure.suptitle(f"{name}: {verdict_words(run)}", x=_AXES_LEFT, ha="left", fontsize=13,
                          fontweight="bold", color=_VERDICT_COLOURS.get(run.verdict, "black"))
    end = run_end(run)
    chart.axes.set_title(
        f"bootemu check: stopped at {end.where()}: {end.reason}; "
        f"{counted(len(run.windows), 'MMU-transition window')}, "
        f"{counted(len(run.findings), 'finding')}", loc="left", fontsize=8.5, pad=14)


def _draw_legend(chart: _Chart) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for label, style in chart.legend:
        if "patch" in style:
            handles.append(Patch(facecolor=style["patch"], alpha=style.get("alpha", 1.0),
                                 label=label))
        else:
            handles.append(Line2D([], [], label=label, **style))
    chart.axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      frameon=False, fontsize=7.5)


def figure_for(run: CheckRun) -> Figure:
    """The picture of a checked run's MMU story (a matplotlib Figure, not shown,
    not written; see :func:`plot_run`)."""
    _matplotlib()
    story = story_of(run)
    landmarks = story.landmarks
    labels = _finding_labels(run)
    # The findings row is as deep as its levels of labels; a unit's width does
    # not depend on the rows, so the levels can be worked out first.
    inches_per_unit = _inches_per_unit(landmarks)
    labelled = [(f.index, text) for f, text in zip(run.findings, labels, strict=True)
                if text is not None]
    levels = _finding_levels(lambda text: (len(text) + 5) * 8 * _CHAR / inches_per_unit,
                             landmarks, labelled)
    chart = _Chart(run, story, _rows(story, max(levels, default=0) + 1))
    _draw_windows(chart)
    _draw_findings(chart, labels, levels)
    _draw_el(chart)
    _draw_mmu(chart)
    _draw_ttbrs(chart)
    _draw_sysregs(chart)
    _draw_maintenance(chart)
    _draw_axis(chart)
    _draw_title(chart)
    _draw_legend(chart)
    return chart.figure


def plot_run(run: CheckRun, path: str | Path) -> Figure:
    """Draw a checked run (see :func:`figure_for`) and write it to ``path``:
    PNG, SVG or PDF by its suffix.  Returns the figure."""
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise PlotError(f"{target}: cannot write a picture as {target.suffix or 'no suffix'!r};"
                        f" name it .png, .svg or .pdf")
    figure = figure_for(run)
    import matplotlib

    # Text stays text in SVG (searchable rule ids and symbols); no dates or
    # versions in the file, so that the same run gives the same bytes.
    metadata: dict[str, Any] = {
        "png": {"Software": None},
        "svg": {"Date": None, "Creator": None},
        "pdf": {"CreationDate": None, "Producer": None},
    }[fmt]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "bootemu"}):
        figure.savefig(target, format=fmt, dpi=110, metadata=metadata, bbox_inches="tight",
                       pad_inches=0.15)
    return figure

