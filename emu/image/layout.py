"""The hypervisor's static virtual memory layout, and what it leaves for identity maps.

A :class:`Layout` is a set of static virtual regions (the image, fixmap,
vmap, frame table, direct map...) plus the number of leading level-0 slots
the design keeps free so the boot code can identity-map (VA == PA) wherever
it was loaded.  With the 4 KiB granule and 48-bit VAs that head.S uses, one
level-0 entry ("slot") covers 512 GiB and there are 512 of them.

Layouts come from a boot source's preprocessor macros (``STATIC_REGIONS``
and the ``*_VIRT_START`` / ``*_VIRT_SIZE`` macros, as ``asm/include/layout.h``
defines them) or from a preset of :mod:`emu.analysis.layout`.

What is wrong with a layout, and which slots hold what, is analysis:
:mod:`emu.analysis.layout`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from emu.asm.preprocess import eval_c_integer

__all__ = [
    "Layout",
    "LayoutError",
    "Region",
    "expand_macros",
    "layout_from_macros",
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
