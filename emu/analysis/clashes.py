"""Which load addresses a layout lets an image's identity map use, exactly.

The boot code identity-maps (VA == PA) the image where it was loaded, with a
level-0 table entry of its own (4 KiB granule, 48-bit VAs: 512 GiB a slot).
That entry cannot also hold a static region of the layout, so an image whose
bytes ``[L, L + size)`` touch a level-0 slot some region uses cannot be
identity-mapped at ``L`` (the ``identity-clash`` rule; head.S's
BOOT_ERR_IDMAP_CLASH).  And an image whose last byte is at or past the CPU's
physical address size cannot be loaded at all (ID_AA64MMFR0_EL1.PARange,
DDI 0487 D17.2.65; head.S's BOOT_ERR_PA_RANGE).

:func:`clash_ranges` answers both for every load address at once, from the
layout alone: load addresses come in steps of ``align`` (2 MiB, the arm64
boot protocol's), so the answer is a short list of ranges.

What does not depend on the load address is set apart as layout-wide: an
image linked inside the identity area (``layout-slot0``) and what
:func:`emu.analysis.layout.check_layout` finds.  A sweep reports those once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from emu.analysis.layout import LayoutProblem, check_layout
from emu.checks.layout_slot0 import LayoutSlot0, linked_inside
from emu.image.layout import SLOT_SIZE, TWO_MIB, Layout

__all__ = [
    "ClashAnalysis",
    "ClashKind",
    "LoadRange",
    "clash_ranges",
]

ADDRESS_LIMIT = 1 << 64


class ClashKind(Enum):
    """What a load address in a range gets."""

    FITS = "fits"  # the identity map has a level-0 slot of its own
    CLASH = "identity-clash"  # it would share a slot with a static region
    BEYOND_PA = "beyond-pa-range"  # the image ends past the physical address size


@dataclass(frozen=True)
class LoadRange:
    """Load addresses ``[start, end)`` (in steps of the analysis's alignment)
    with the same outcome: the same kind, the same regions in the way."""

    start: int
    end: int
    kind: ClashKind
    regions: tuple[str, ...] = ()
    slots: tuple[int, int] | None = None  # the level-0 slots of the regions in the way

    @property
    def size(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "size": self.size,
                "kind": self.kind.value, "regions": list(self.regions),
                "slots": list(self.slots) if self.slots else None}


@dataclass(frozen=True)
class ClashAnalysis:
    """The whole 64-bit load-address space of one layout, image size and CPU."""

    layout: Layout
    image_size: int
    pa_bits: int
    align: int
    ranges: tuple[LoadRange, ...]  # in order, covering [0, 2^64) without gaps
    layout_findings: tuple[str, ...]  # true whatever the load address

    @property
    def clashes(self) -> tuple[LoadRange, ...]:
        return tuple(r for r in self.ranges if r.kind is ClashKind.CLASH)

    def outcome(self, load_address: int) -> LoadRange:
        """The range ``load_address`` falls in."""
        for load_range in self.ranges:
            if load_range.start <= load_address < load_range.end:
                return load_range
        raise ValueError(f"{load_address:#x} is not a 64-bit load address")

    def to_dict(self) -> dict[str, object]:
        return {"layout": self.layout.name, "image_size": self.image_size,
                "pa_bits": self.pa_bits, "align": self.align,
                "layout_findings": list(self.layout_findings),
                "ranges": [r.to_dict() for r in self.ranges]}


def _align_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _occupied_slots(layout: Layout) -> list[tuple[int, int, tuple[str, ...]]]:
    """Runs of consecutive level-0 slots with the same regions in them:
    ``(first, last, regions)``, slots without regions left out.  Computed
    from the regions' slot bounds, never slot by slot (a region may span
    2^25 slots)."""
    # An empty region holds its first slot, as the identity-clash rule has it.
    bounds = sorted({slot for region in layout.regions
                     for slot in (region.first_slot, region.last_slot + 1)})
    runs: list[tuple[int, int, tuple[str, ...]]] = []
    for low, high in zip(bounds, bounds[1:], strict=False):
        names = tuple(region.name for region in layout.regions
                      if region.first_slot < high and region.last_slot >= low)
        if not names:
            continue
        if runs and runs[-1][1] == low - 1 and runs[-1][2] == names:
            runs[-1] = (runs[-1][0], high - 1, names)
        else:
            runs.append((low, high - 1, names))
    return runs


def layout_wide_findings(layout: Layout, link_address: int | None) -> list[str]:
    """What is wrong with ``layout`` (and the image's link address) wherever
    the image is loaded."""
    findings = []
    inside = None if link_address is None else linked_inside(layout, link_address)
    if inside is not None:
        findings.append(f"{LayoutSlot0.rule_id}: {inside}")
    problems: list[LayoutProblem] = check_layout(layout)
    findings.extend(f"layout: [{problem.kind.value}] {problem.message}" for problem in problems)
    return findings


def clash_ranges(layout: Layout, *, image_size: int = TWO_MIB, pa_bits: int = 44,
                 align: int = TWO_MIB, link_address: int | None = None) -> ClashAnalysis:
    """Every load address's outcome for an image of ``image_size`` bytes.

    A load address ``L`` (a multiple of ``align``) clashes when a slot of
    ``[L, L + image_size)`` holds a region: for a run of occupied slots
    ``[a, b]`` that is ``a * 512 GiB - image_size < L < (b + 1) * 512 GiB``.
    It is beyond the PA range when ``L + image_size > 2^pa_bits``, which
    comes first (the boot code checks it first, and nothing can be loaded
    there).  The ranges cover the whole 64-bit space in order.
    """
    if image_size <= 0:
        raise ValueError(f"image size must be positive, not {image_size}")
    if align <= 0:
        raise ValueError(f"alignment must be positive, not {align}")
    pa_limit = 1 << pa_bits
    # First aligned L whose image does not fit below the PA limit.
    beyond = min(_align_up(max(pa_limit - image_size + 1, 0), align), ADDRESS_LIMIT)
    ranges: list[LoadRange] = []
    cursor = 0

    def add(start: int, end: int, kind: ClashKind, regions: tuple[str, ...] = (),
            slots: tuple[int, int] | None = None) -> None:
        nonlocal cursor
        start, end = max(start, cursor), min(end, beyond)
        if start >= end:
            return
        if start > cursor:
            ranges.append(LoadRange(cursor, start, ClashKind.FITS))
        ranges.append(LoadRange(start, end, kind, regions, slots))
        cursor = end

    for first, last, names in _occupied_slots(layout):
        start = _align_up(max(first * SLOT_SIZE - image_size + 1, 0), align)
        add(start, (last + 1) * SLOT_SIZE, ClashKind.CLASH, names, (first, last))
    if cursor < beyond:
        ranges.append(LoadRange(cursor, beyond, ClashKind.FITS))
    if beyond < ADDRESS_LIMIT:
        ranges.append(LoadRange(beyond, ADDRESS_LIMIT, ClashKind.BEYOND_PA))
    return ClashAnalysis(layout=layout, image_size=image_size, pa_bits=pa_bits, align=align,
                         ranges=tuple(ranges),
                         layout_findings=tuple(layout_wide_findings(layout, link_address)))
