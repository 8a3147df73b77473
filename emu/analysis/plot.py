"""PNG pictures of sweeps and layouts (matplotlib, the optional ``plot`` extra).

* :func:`plot_sweep`: for each layout, which load addresses boot clean and
  why the others do not (one row per layout, the verdict as a colour);
* :func:`plot_layout`: the level-0 slots of a layout, the identity area and
  each static region.

matplotlib is imported only here and only when a picture is asked for;
without it :class:`PlotError` says how to install it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emu.analysis.clashes import ClashAnalysis, ClashKind
from emu.analysis.layout import SlotRange, check_layout, va_map
from emu.analysis.sweep import CLEAN, SweepResult, verdict_runs
from emu.image.layout import SLOT_COUNT, SLOT_SHIFT, Layout

__all__ = ["PlotError", "ensure_plotting", "plot_layout", "plot_sweep"]

_INSTALL_HINT = "pip install 'bootemu[plot]'"


class PlotError(RuntimeError):
    """A picture that cannot be drawn (matplotlib missing, nothing to draw)."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotError(f"--plot needs matplotlib, which is not installed ({_INSTALL_HINT})"
                        ) from None
    # No display is needed (or wanted) to write a PNG.
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def ensure_plotting() -> None:
    """Raise :class:`PlotError` now if a picture could not be drawn later."""
    _pyplot()


# Clean is green; failures get distinct, non-green colours in order of appearance.
_CLEAN_COLOUR = "#2ca02c"
_OTHER_COLOURS = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf", "#1f77b4"]


def _format_address(value: float, _position: object = None) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift:
            return f"{value / (1 << shift):g} {unit}"
    return f"{value:g}"


def plot_sweep(results: Mapping[str, Sequence[SweepResult]], path: str | Path) -> Path:
    """Write a PNG: one row per layout, load address across, the verdict as colour.

    Each result is drawn as a bar from its load address to the next one of
    its sweep (the sweep's stride), so a clash area shows as a solid band.
    """
    if not any(results.values()):
        raise PlotError("nothing to plot: the sweep has no results")
    pyplot = _pyplot()
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    # One colour per outcome: boots with other rules fired, or another failure
    # code, are told apart.
    verdicts: list[str] = []
    for rows in results.values():
        for result in rows:
            if result.outcome not in verdicts:
                verdicts.append(result.outcome)
    others = [v for v in verdicts if v != CLEAN]
    colours = {v: _OTHER_COLOURS[i % len(_OTHER_COLOURS)] for i, v in enumerate(others)}
    colours[CLEAN] = _CLEAN_COLOUR

    names = list(results)
    figure, axes = pyplot.subplots(figsize=(11, max(2.6, 1.3 + 0.8 * len(names))))
    every = [r.load_address for rows in results.values() for r in rows]
    low, high = min(every), max(every)
    # An isolated load address still gets a visible bar: at least 1/250 of the axis.
    least = max(high - low, 2 << 20) / 250
    for row, name in enumerate(names):
        ordered = sorted(results[name], key=lambda r: r.load_address)
        if not ordered:
            continue
        addresses = [r.load_address for r in ordered]
        gaps = [b - a for a, b in zip(addresses, addresses[1:], strict=False)]
        stride = min(gaps) if gaps else 0
        high = max(high, addresses[-1] + max(stride, least))
        for run in verdict_runs(ordered):
            width = max(run.last + stride - run.first, least)
            axes.broken_barh([(run.first, width)], (row - 0.35, 0.7),
                             facecolors=colours[run.outcome], edgecolor="none")
    axes.set_yticks(range(len(names)), names)
    axes.set_ylim(len(names) - 0.5, -0.5)
    axes.set_xlim(low, high)
    # Power-of-two ticks, so that slot boundaries (512 GiB) fall on round labels.
    step = 1
    while (high - low) / step > 10:
        step *= 2
    axes.xaxis.set_major_locator(MultipleLocator(step))
    axes.xaxis.set_major_formatter(FuncFormatter(_format_address))
    axes.set_xlabel("load address")
    axes.set_title("bootemu sweep: verdict per load address and layout")
    axes.grid(axis="x", alpha=0.3)
    handles = [Patch(color=colours[v], label=v) for v in [CLEAN, *others] if v in verdicts]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                fontsize=8, title="verdict", title_fontsize=8)
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=110)
    pyplot.close(figure)
    return target


def _size_text(size: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size:#x} bytes"


_OUTCOME_COLOURS = {ClashKind.FITS: "#2ca02c", ClashKind.CLASH: "#d62728",
                    ClashKind.BEYOND_PA: "#7f7f7f"}


def _split_at_outcomes(columns: list[SlotRange], clashes: ClashAnalysis) -> list[SlotRange]:
    """The slot map's columns, split where the load addresses' outcome changes."""
    cuts = {load_range.start >> SLOT_SHIFT for load_range in clashes.ranges}
    out = []
    for column in columns:
        first = column.first
        for cut in sorted(c for c in cuts if column.first < c <= column.last):
            out.append(SlotRange(first, cut - 1, column.regions, column.identity))
            first = cut
        out.append(SlotRange(first, column.last, column.regions, column.identity))
    return out


def plot_layout(layout: Layout, path: str | Path, clashes: ClashAnalysis | None = None) -> Path:
    """Write a PNG of a layout's level-0 slot map: identity area, regions, clashes.

    The columns are the entries of :func:`emu.image.layout.va_map` (runs of slots
    with the same contents, free runs collapsed), all of one width, so that a
    2 MiB region in slot 1 is as visible as the 5 TiB direct map.  One row per
    static region, red where it lies in the identity area.  With ``clashes``, a
    last row says what an image loaded at the physical addresses of each
    column gets: a slot of its own, an identity clash, or beyond the PA range.
    """
    pyplot = _pyplot()
    from matplotlib.patches import Patch

    columns = va_map(layout)
    if clashes is not None:
        columns = _split_at_outcomes(columns, clashes)
    column_of = {slot: index for index, entry in enumerate(columns)
                 for slot in range(entry.first, entry.last + 1)}
    problems = {name for problem in check_layout(layout) for name in problem.regions}
    regions = list(layout.regions)
    figure, axes = pyplot.subplots(figsize=(max(8, 1.45 * len(columns) + 2),
                                            1.9 + 0.6 * (len(regions) + (clashes is not None))))
    for index, entry in enumerate(columns):
        if entry.identity:
            axes.axvspan(index, index + 1, color="#2ca02c", alpha=0.18, linewidth=0)
    for row, region in enumerate(regions):
        first = column_of.get(region.first_slot)
        last = column_of.get(min(region.last_slot, SLOT_COUNT - 1))
        if first is None or last is None:
            continue  # beyond the VA space: check_layout reports it
        inside = region.first_slot < layout.identity_slots
        colour = "#d62728" if inside else ("#ff7f0e" if region.name in problems else "#1f77b4")
        axes.broken_barh([(first + 0.06, last + 1 - first - 0.12)], (row - 0.38, 0.76),
                         facecolors=colour)
        axes.text((first + last + 1) / 2, row, f"{region.start:#x}\n{_size_text(region.size)}",
                  ha="center", va="center", fontsize=7.5, color="white")
    axes.set_xticks([index + 0.5 for index in range(len(columns))],
                    [(f"slot {e.first}" if e.first == e.last else f"slots {e.first}-{e.last}")
                     + f"\n{e.start:#x}" for e in columns], fontsize=7.5)
    for index in range(1, len(columns)):
        axes.axvline(index, color="#cccccc", linewidth=0.8)
    rows = [r.name for r in regions]
    if clashes is not None:
        row = len(rows)
        rows.append("load here")
        for index, column in enumerate(columns):
            kind = clashes.outcome(column.start).kind
            axes.broken_barh([(index + 0.06, 0.88)], (row - 0.38, 0.76),
                             facecolors=_OUTCOME_COLOURS[kind])
    axes.set_xlim(0, len(columns))
    axes.set_yticks(range(len(rows)), rows)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlabel(f"level-0 slots ({1 << (SLOT_SHIFT - 30)} GiB of VA each; runs of "
                    "equal slots collapsed)")
    area = ("none" if not layout.identity_slots else "slot 0" if layout.identity_slots == 1
            else f"slots 0-{layout.identity_slots - 1}")
    axes.set_title(f"layout {layout.name}: identity area {area}")
    handles = [Patch(color="#2ca02c", alpha=0.18, label="identity area (kept free)"),
               Patch(color="#1f77b4", label="static region"),
               Patch(color="#d62728", label="region in the identity area")]
    if any(not r.first_slot < layout.identity_slots and r.name in problems for r in regions):
        handles.append(Patch(color="#ff7f0e", label="region with another problem"))
    if clashes is not None:
        handles += [Patch(color=_OUTCOME_COLOURS[ClashKind.FITS], label="load: fits"),
                    Patch(color=_OUTCOME_COLOURS[ClashKind.CLASH], label="load: identity clash"),
                    Patch(color=_OUTCOME_COLOURS[ClashKind.BEYOND_PA],
                          label=f"load: beyond {clashes.pa_bits}-bit PA")]
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.32),
                ncol=min(len(handles), 4), frameon=False, fontsize=8)
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=110)
    pyplot.close(figure)
    return target
