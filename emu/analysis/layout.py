"""What a memory layout gets wrong, which level-0 slots hold what, and the
layouts Xen has had.

:func:`check_layout` finds what makes a :class:`~emu.image.layout.Layout`
unsafe for identity maps or unmappable; :func:`va_map` says which level-0
slots hold what.  :data:`LAYOUT_PRESETS` are Xen's arm64 layouts before and
after its rework, each a set of ``-D`` definitions for head.S, so booting
head.S with them gives the layout the preset describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from emu.image.layout import (
    DEFAULT_IDENTITY_SLOTS,
    GIB,
    SLOT_COUNT,
    SLOT_SHIFT,
    SLOT_SIZE,
    TWO_MIB,
    VA_LIMIT,
    Layout,
    LayoutError,
    Region,
)

__all__ = [
    "LAYOUT_PRESETS",
    "LayoutPreset",
    "LayoutProblem",
    "ProblemKind",
    "SlotRange",
    "check_layout",
    "get_preset",
    "preset_layout",
    "va_map",
]


# --------------------------------------------------------------------------
# Problems


class ProblemKind(Enum):
    """What is wrong with a layout."""

    IDENTITY_AREA = "identity-area"  # a region inside the slots kept for identity maps
    OVERLAP = "overlap"  # two regions share addresses
    MISALIGNED = "misaligned"  # start or size not 2 MiB aligned
    BEYOND_VA = "beyond-va"  # a region past the 48-bit VA space
    EMPTY = "empty"  # a region of size 0


@dataclass(frozen=True)
class LayoutProblem:
    """One thing :func:`check_layout` found, with the regions involved."""

    kind: ProblemKind
    regions: tuple[str, ...]
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind.value, "regions": list(self.regions), "message": self.message}


def _slots_text(first: int, last: int) -> str:
    return f"slot {first}" if first == last else f"slots {first}-{last}"


def _span(region: Region) -> str:
    return f"{region.name} [{region.start:#x}, {region.end:#x})"


def check_layout(layout: Layout) -> list[LayoutProblem]:
    """Everything that makes a layout unsafe for identity maps or unmappable.

    Checked: regions inside the identity area (the first ``identity_slots``
    level-0 slots), overlapping regions, start or size not 2 MiB aligned (the
    boot tables map with 2 MiB blocks), regions beyond the 48-bit VA space,
    and empty regions.
    """
    problems: list[LayoutProblem] = []
    for region in layout.regions:
        if region.size == 0:
            problems.append(LayoutProblem(
                ProblemKind.EMPTY, (region.name,), f"{region.name} has size 0"))
        if region.start < layout.identity_limit:
            problems.append(LayoutProblem(
                ProblemKind.IDENTITY_AREA, (region.name,),
                f"{_span(region)} lies in level-0 slot {region.first_slot}, inside the "
                f"identity area ({_slots_text(0, layout.identity_slots - 1)}, below "
                f"{layout.identity_limit:#x}): RAM in that slot cannot be identity-mapped "
                f"without clashing with it"))
        bad = [what for what, value in (("start", region.start), ("size", region.size))
               if value % TWO_MIB]
        if bad:
            problems.append(LayoutProblem(
                ProblemKind.MISALIGNED, (region.name,),
                f"{_span(region)}: {' and '.join(bad)} not 2 MiB aligned "
                f"(start {region.start:#x}, size {region.size:#x})"))
        if region.end > VA_LIMIT:
            problems.append(LayoutProblem(
                ProblemKind.BEYOND_VA, (region.name,),
                f"{_span(region)} ends beyond the 48-bit VA space ({VA_LIMIT:#x})"))
    ordered = sorted(layout.regions, key=lambda r: (r.start, r.end))
    for index, first in enumerate(ordered):
        for second in ordered[index + 1:]:
            if second.start >= first.end:
                break
            if first.size and second.size:
                problems.append(LayoutProblem(
                    ProblemKind.OVERLAP, (first.name, second.name),
                    f"{_span(first)} overlaps {_span(second)} "
                    f"at [{second.start:#x}, {min(first.end, second.end):#x})"))
    return problems


# --------------------------------------------------------------------------
# The level-0 slot map


@dataclass(frozen=True)
class SlotRange:
    """Consecutive level-0 slots with the same contents."""

    first: int
    last: int
    regions: tuple[str, ...]  # regions with addresses in these slots
    identity: bool  # inside the identity area

    @property
    def start(self) -> int:
        return self.first << SLOT_SHIFT

    @property
    def end(self) -> int:
        return (self.last + 1) << SLOT_SHIFT

    @property
    def clash(self) -> bool:
        """Regions in slots kept for identity maps."""
        return self.identity and bool(self.regions)

    def describe(self) -> str:
        if self.regions:
            what = ", ".join(self.regions)
            return f"{what}  <- CLASH: in the identity area" if self.identity else what
        return "free: identity maps" if self.identity else "free"

    def to_dict(self) -> dict[str, object]:
        return {
            "first_slot": self.first,
            "last_slot": self.last,
            "start": self.start,
            "end": self.end,
            "regions": list(self.regions),
            "identity": self.identity,
            "clash": self.clash,
        }


def va_map(layout: Layout) -> list[SlotRange]:
    """Which level-0 slots hold what, runs of equal slots (free ones too) collapsed."""
    contents: list[list[str]] = [[] for _ in range(SLOT_COUNT)]
    for region in layout.regions:
        # Clamped: a region past the VA space (check_layout reports it) has no slot here.
        for slot in range(region.first_slot, min(region.last_slot, SLOT_COUNT - 1) + 1):
            contents[slot].append(region.name)
    ranges: list[SlotRange] = []
    for slot in range(SLOT_COUNT):
        key = (tuple(contents[slot]), slot < layout.identity_slots)
        last = ranges[-1] if ranges else None
        if last is not None and (last.regions, last.identity) == key:
            ranges[-1] = SlotRange(last.first, slot, last.regions, last.identity)
        else:
            ranges.append(SlotRange(slot, slot, *key))
    return ranges


# --------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class LayoutPreset:
    """A named layout for head.S: its ``-D`` definitions and its identity area."""

    name: str
    description: str
    source: str  # where the layout's facts come from
    defines: dict[str, str] = field(default_factory=dict)
    identity_slots: int = DEFAULT_IDENTITY_SLOTS


def _defines(**regions: tuple[int, int]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, (start, size) in regions.items():
        out[f"{name}_VIRT_START"] = f"{start:#018x}"
        out[f"{name}_VIRT_SIZE"] = f"{size:#x}"
    return out


def _slot(n: int) -> int:
    return n << SLOT_SHIFT


MIB = 1 << 20
# Xen's direct map: slots 256-265 (5 TiB), the same in every layout below.
_DIRECTMAP = (_slot(256), 10 * SLOT_SIZE)

LAYOUT_PRESETS: dict[str, LayoutPreset] = {
    preset.name: preset
    for preset in (
        LayoutPreset(
            name="pre-rework",
            description="Xen 4.17: the image at 2 MiB, fixmap, vmap and frame table also in "
                        "level-0 slot 0, where identity maps of low RAM must go",
            source="xen/arch/arm/include/asm/config.h (Xen 4.17): XEN_VIRT_START 0x00200000, "
                   "FIXMAP 0x00400000, VMAP_VIRT_START GB(1) (1 GiB), FRAMETABLE_VIRT_START "
                   "GB(32) (GB(32)), DIRECTMAP_VIRT_START SLOT0(256) (slots 256..265)",
            defines=_defines(XEN=(2 * MIB, 2 * MIB), FIXMAP=(4 * MIB, 2 * MIB),
                             VMAP=(GIB, GIB), FRAMETABLE=(32 * GIB, 32 * GIB),
                             DIRECTMAP=_DIRECTMAP),
        ),
        LayoutPreset(
            name="rework-512g",
            description="the rework as bootemu's layout.h has it: the image at 512 GiB + 2 MiB "
                        "(slot 1), slot 0 free for identity maps",
            source="asm/include/layout.h defaults (DESIGN.md section 1)",
            defines=_defines(XEN=(_slot(1) + 2 * MIB, 2 * MIB),
                             FIXMAP=(_slot(1) + 4 * MIB, 2 * MIB),
                             VMAP=(_slot(1) + GIB, GIB),
                             FRAMETABLE=(_slot(4), SLOT_SIZE),
                             DIRECTMAP=_DIRECTMAP),
        ),
        LayoutPreset(
            name="rework-2t",
            description="Xen 4.18: slots 0-3 (2 TiB) free for identity maps, the image at "
                        "2 TiB + 2 MiB, vmap and frame table in slot 4",
            source="xen/arch/arm/include/asm/mmu/layout.h (IDENTITY_MAPPING_AREA_NR_L0 4): "
                   "XEN_VIRT_START SLOT0(4) + MB(2), VMAP SLOT0(4) + GB(1), "
                   "FRAMETABLE SLOT0(4) + GB(32) (GB(32)), DIRECTMAP SLOT0(256)",
            defines=_defines(XEN=(_slot(4) + 2 * MIB, 2 * MIB),
                             FIXMAP=(_slot(4) + 4 * MIB, 2 * MIB),
                             VMAP=(_slot(4) + GIB, GIB),
                             FRAMETABLE=(_slot(4) + 32 * GIB, 32 * GIB),
                             DIRECTMAP=_DIRECTMAP),
            identity_slots=4,
        ),
        LayoutPreset(
            name="rework-10t",
            description="upstream Xen after widening the identity area to slots 0-19 (10 TiB): "
                        "the image at 10 TiB + 2 MiB, vmap and frame table in slot 20",
            source="xen/arch/arm/include/asm/mmu/layout.h (IDENTITY_MAPPING_AREA_NR_L0 20): "
                   "XEN_VIRT_START SLOT0(20) + MB(2), VMAP SLOT0(20) + GB(1), "
                   "FRAMETABLE SLOT0(20) + GB(32) (GB(32)), DIRECTMAP SLOT0(256)",
            defines=_defines(XEN=(_slot(20) + 2 * MIB, 2 * MIB),
                             FIXMAP=(_slot(20) + 4 * MIB, 2 * MIB),
                             VMAP=(_slot(20) + GIB, GIB),
                             FRAMETABLE=(_slot(20) + 32 * GIB, 32 * GIB),
                             DIRECTMAP=_DIRECTMAP),
            identity_slots=20,
        ),
    )
}

# The order head.S's STATIC_REGIONS lists the regions in.
_PRESET_REGION_ORDER = ("XEN", "FIXMAP", "VMAP", "FRAMETABLE", "DIRECTMAP")


def get_preset(name: str) -> LayoutPreset:
    """A layout preset by name; LayoutError naming the known ones otherwise."""
    try:
        return LAYOUT_PRESETS[name]
    except KeyError:
        raise LayoutError(f"unknown layout preset {name!r} "
                          f"(known: {', '.join(LAYOUT_PRESETS)})") from None


def preset_layout(name: str) -> Layout:
    """A preset's layout from its definitions alone (no preprocessing of head.S)."""
    preset = get_preset(name)
    regions = tuple(
        Region(region, int(preset.defines[f"{region}_VIRT_START"], 0),
               int(preset.defines[f"{region}_VIRT_SIZE"], 0))
        for region in _PRESET_REGION_ORDER)
    return Layout(name=preset.name, regions=regions, identity_slots=preset.identity_slots)
