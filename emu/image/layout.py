"""The hypervisor's static virtual memory layout, and what it leaves for identity maps.

A :class:`Layout` is a set of static virtual regions (the image, fixmap,
vmap, frame table, direct map...) plus the number of leading level-0 slots
the design keeps free so the boot code can identity-map (VA == PA) wherever
it was loaded.  With the 4 KiB granule and 48-bit VAs that head.S uses, one
level-0 entry ("slot") covers 512 GiB and there are 512 of them.

Layouts come from a boot source's preprocessor macros (``STATIC_REGIONS``
and the ``*_VIRT_START`` / ``*_VIRT_SIZE`` macros, as ``asm/include/layout.h``
defines them) or from a :data:`LAYOUT_PRESETS` entry.  A preset is a set of
``-D`` definitions for head.S, so booting head.S with them gives the layout
the preset describes.

:func:`check_layout` finds what makes a layout unsafe for identity maps;
:func:`va_map` says which level-0 slots hold what.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from emu.asm.preprocess import eval_c_integer

__all__ = [
    "LAYOUT_PRESETS",
    "Layout",
    "LayoutError",
    "LayoutPreset",
    "LayoutProblem",
    "ProblemKind",
    "Region",
    "SlotRange",
    "check_layout",
    "expand_macros",
    "get_preset",
    "layout_from_macros",
    "preset_layout",
    "va_map",
]

GRANULE = 4096
VA_BITS = 48
VA_LIMIT = 1 << VA_BITS
SLOT_SHIFT = 39  # 4 KiB granule: 12 + 3 * 9 bits below the level-0 index
SLOT_SIZE = 1 << SLOT_SHIFT  # 512 GiB
SLOT_COUNT = VA_LIMIT >> SLOT_SHIFT  # 512
TWO_MIB = 2 << 20
GIB = 1 << 30
TIB = 1 << 40

# Xen's name for the number of level-0 slots kept for identity maps; a
# source that defines it says how large its identity area is.
IDENTITY_SLOTS_MACRO = "IDENTITY_MAPPING_AREA_NR_L0"
DEFAULT_IDENTITY_SLOTS = 1


class LayoutError(ValueError):
    """A layout that cannot be built from the macros or options given (a user mistake)."""


@dataclass(frozen=True)
class Region:
    """A static virtual region: ``[start, start + size)``."""

    name: str
    start: int
    size: int

    @property
    def end(self) -> int:
        """First address past the region."""
        return self.start + self.size

    @property
    def first_slot(self) -> int:
        return self.start >> SLOT_SHIFT

    @property
    def last_slot(self) -> int:
        """Level-0 slot of the region's last byte (its first slot when empty)."""
        return (self.end - 1) >> SLOT_SHIFT if self.size else self.first_slot

    def slots(self) -> range:
        return range(self.first_slot, self.last_slot + 1)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "start": self.start,
            "size": self.size,
            "end": self.end,
            "first_slot": self.first_slot,
            "last_slot": self.last_slot,
        }


@dataclass(frozen=True)
class Layout:
    """Static regions plus the leading level-0 slots reserved for identity maps."""

    name: str
    regions: tuple[Region, ...]
    identity_slots: int = DEFAULT_IDENTITY_SLOTS

    @property
    def identity_limit(self) -> int:
        """First VA past the identity area: RAM below it can be identity-mapped."""
        return self.identity_slots << SLOT_SHIFT

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "identity_slots": self.identity_slots,
            "identity_limit": self.identity_limit,
            "regions": [region.to_dict() for region in self.regions],
        }


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
# Layouts from preprocessor macros

_IDENTIFIER_USE = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_PARAMETER_LIST = re.compile(r"\(\s*((?:[A-Za-z_]\w*\s*(?:,\s*[A-Za-z_]\w*\s*)*)?)\)\s?")
_MAX_EXPANSION = 100_000


def _call_arguments(text: str, open_paren: int) -> tuple[list[str], int] | None:
    """Arguments of a macro call whose ``(`` is at ``open_paren``, and the index past ``)``."""
    depth, start, arguments = 0, open_paren + 1, []
    for index in range(open_paren, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                arguments.append(text[start:index].strip())
                return ([] if arguments == [""] else arguments), index + 1
        elif char == "," and depth == 1:
            arguments.append(text[start:index].strip())
            start = index + 1
    return None


def _function_like(body: str) -> tuple[list[str], str] | None:
    """``(params) replacement``, as :class:`emu.asm.program.Program` records
    function-like macros."""
    match = _PARAMETER_LIST.match(body)
    if match is None:
        return None
    parameters = [p.strip() for p in match.group(1).split(",")] if match.group(1).strip() else []
    return parameters, body[match.end():]


def expand_macros(text: str, macros: Mapping[str, str]) -> str:
    """Expand the C macros of ``macros`` (as ``Program.defines`` holds them) in ``text``.

    Object-like and function-like macros, arguments expanded before they are
    substituted, no recursion into a macro being expanded, as cpp does; ``#``
    and ``##`` are not supported.  ``Program.defines`` records a function-like
    macro as ``(params) body``, which an object-like macro whose value starts
    with a parenthesised identifier list would also look like: such a macro is
    called where ``(`` follows it, left alone (as C leaves a function-like macro
    without arguments) elsewhere, except when its body is only ``(ident)``,
    which is taken as an object-like value.
    """

    def expand(fragment: str, active: frozenset[str], budget: list[int]) -> str:
        out: list[str] = []
        position = 0
        while True:
            match = _IDENTIFIER_USE.search(fragment, position)
            if match is None:
                out.append(fragment[position:])
                break
            out.append(fragment[position:match.start()])
            name = match.group()
            position = match.end()
            body = macros.get(name)
            if body is None or name in active:
                out.append(name)
                continue
            budget[0] -= 1
            if budget[0] < 0:
                raise LayoutError(f"macro expansion of {text.strip()!r} does not terminate")
            rest = fragment[position:]
            call = _function_like(body) if rest.lstrip().startswith("(") else None
            if call is not None:
                parameters, replacement = call
                open_paren = position + (len(rest) - len(rest.lstrip()))
                parsed = _call_arguments(fragment, open_paren)
                if parsed is None:
                    raise LayoutError(f"unbalanced parentheses in a call of {name}: "
                                      f"{text.strip()!r}")
                arguments, position = parsed
                if len(arguments) != len(parameters):
                    raise LayoutError(f"macro {name} takes {len(parameters)} argument(s), "
                                      f"given {len(arguments)}")
                if "#" in replacement:
                    raise LayoutError(f"macro {name}: # and ## are not supported here")
                values = {p: expand(a, active, budget) for p, a in zip(parameters, arguments,
                                                                      strict=True)}
                substituted = _IDENTIFIER_USE.sub(
                    lambda m, values=values: values.get(m.group(), m.group()), replacement)
                out.append(expand(substituted, active | {name}, budget))
            elif _uncalled_function(body):
                out.append(name)  # a function-like macro not called: left alone, as in C
            else:
                out.append(expand(body, active | {name}, budget))
        return "".join(out)

    return expand(text, frozenset(), [_MAX_EXPANSION])


def _uncalled_function(body: str) -> bool:
    """Whether a macro used without ``(`` is a function-like one, to be left alone.

    ``(X)`` with nothing after it is taken as an object-like parenthesised value.
    """
    call = _function_like(body)
    return call is not None and bool(call[1].strip())


def _evaluate(name: str, macros: Mapping[str, str], what: str) -> int:
    try:
        return eval_c_integer(expand_macros(macros[name], macros))
    except ValueError as err:
        raise LayoutError(f"{what} {name} = {macros[name]!r}: {err}") from None


def _region_name(argument: str) -> str:
    for suffix in ("_VIRT_START", "_START"):
        if argument.endswith(suffix) and argument != suffix:
            return argument[: -len(suffix)]
    return argument


def _static_region_arguments(macros: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(start, size)`` argument texts of each ``X(...)`` in ``STATIC_REGIONS(X)``."""
    call = _function_like(macros["STATIC_REGIONS"])
    if call is None or len(call[0]) != 1:
        raise LayoutError("STATIC_REGIONS must be a macro of one parameter, "
                          "STATIC_REGIONS(X), expanding X(start, size) per region")
    [parameter], body = call
    pairs: list[tuple[str, str]] = []
    for match in re.finditer(rf"(?<![\w.]){re.escape(parameter)}\s*\(", body):
        parsed = _call_arguments(body, match.end() - 1)
        if parsed is None or len(parsed[0]) != 2:
            raise LayoutError(f"STATIC_REGIONS: expected {parameter}(start, size), "
                              f"found {body[match.start():match.start() + 60]!r}")
        start, size = parsed[0]
        pairs.append((start, size))
    if not pairs:
        raise LayoutError(f"STATIC_REGIONS expands no {parameter}(start, size)")
    return pairs


def layout_from_macros(
    macros: Mapping[str, str],
    *,
    name: str,
    identity_slots: int | None = None,
) -> Layout:
    """A layout from a source's macros (``Program.defines``).

    Regions are those ``STATIC_REGIONS(X)`` lists, in its order; without it,
    every ``NAME_VIRT_START`` that has a ``NAME_VIRT_SIZE``.  ``identity_slots``
    defaults to the source's ``IDENTITY_MAPPING_AREA_NR_L0`` if defined, else 1.
    """
    regions: list[Region] = []
    if "STATIC_REGIONS" in macros:
        for start_text, size_text in _static_region_arguments(macros):
            try:
                start = eval_c_integer(expand_macros(start_text, macros))
                size = eval_c_integer(expand_macros(size_text, macros))
            except ValueError as err:
                raise LayoutError(f"STATIC_REGIONS entry ({start_text}, {size_text}): "
                                  f"{err}") from None
            regions.append(Region(_region_name(start_text), start, size))
    else:
        for macro in macros:
            if macro.endswith("_VIRT_START") and macro[:-6] + "_SIZE" in macros:
                size_macro = macro[:-6] + "_SIZE"
                regions.append(Region(
                    _region_name(macro),
                    _evaluate(macro, macros, "region start"),
                    _evaluate(size_macro, macros, "region size")))
        if not regions:
            raise LayoutError("no static regions: the source defines neither STATIC_REGIONS "
                              "nor any NAME_VIRT_START / NAME_VIRT_SIZE pair")
    if identity_slots is None:
        identity_slots = (_evaluate(IDENTITY_SLOTS_MACRO, macros, "identity area")
                          if IDENTITY_SLOTS_MACRO in macros else DEFAULT_IDENTITY_SLOTS)
    if not 0 <= identity_slots <= SLOT_COUNT:
        raise LayoutError(f"identity slots must be 0-{SLOT_COUNT}, not {identity_slots}")
    return Layout(name=name, regions=tuple(regions), identity_slots=identity_slots)


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
