"""Translation tables as sets of mappings: enumerate a regime's valid leaves by
descending its tables, and compare two table trees region by region.

Pure functions over a physical-memory reader (no Unicorn), for rules that must
reason about *every* translation a set of tables gives, not only those the run
happened to use: with the MMU on, the PE may walk any of them speculatively
and cache the result (Arm ARM DDI 0487, D8.16 "Translation Lookaside Buffers",
R_SQBCS).  The walk is by table, never VA by VA: a 1 GiB block is one mapping,
a subtree shared by two trees is skipped, and runs of leaves with contiguous
output addresses and equal attributes are coalesced into one range, so the
work is bounded by the number of descriptors, not by the size of the VA space.

The rules use :func:`valid_mappings`, :func:`compare_trees` and
:func:`table_pages` (which tables hold live descriptors); the machine uses
:func:`reachable_table_pages` (which physical pages to hand Unicorn
read-only).  Both answer "which tables can a walk reach" with different
bounds and records; merging them is left for later.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from emu.arch.mmu.regime import (
    Granule,
    RegimeName,
    TranslationRegime,
    level_shift,
    regime_asid,
    regime_walk_params,
)
from emu.arch.mmu.walk import address_field, block_allowed

TableReader = Callable[[int, int], bytes | None]
"""Reads ``size`` bytes of physical memory at an address; None where there is none."""

MASK64 = (1 << 64) - 1
_OA_MASK = (1 << 48) - 1
_AF = 1 << 10
_NG = 1 << 11
_CONTIGUOUS = 1 << 52
# Leaf bits that only restrict access (D8.4 "Memory access control"): AP[2:1],
# PXN, UXN/XN.  Changing them needs TLB maintenance, not break-before-make.
_PERMISSION_BITS = (0b11 << 6) | (1 << 53) | (1 << 54)
# Table-descriptor bits inherited by the leaves below (APTable, UXN/XNTable, PXNTable).
_TABLE_LIMIT_BITS = (0b11 << 61) | (1 << 60) | (1 << 59)

DEFAULT_DESCRIPTOR_LIMIT = 1 << 18
"""How many descriptors one enumeration or comparison reads at most."""


@dataclass(frozen=True)
class Mapping:
    """A VA range a table tree maps validly, with one leaf level and one set of attributes.

    ``va``..``va + length`` goes linearly to ``pa``..``pa + length``; every
    leaf in the range is a block or page of ``leaf_size`` bytes at ``level``.
    ``memory`` is the MAIR attribute byte (memory type and cacheability),
    ``permissions`` the leaf's AP/XN/PXN bits ORed with the table limits above it.
    """

    va: int
    length: int
    pa: int
    level: int
    leaf_size: int
    select: int
    memory: int
    shareability: int
    not_global: bool
    contiguous: bool
    permissions: int

    @property
    def end(self) -> int:
        return self.va + self.length

    def pa_at(self, va: int) -> int:
        return self.pa + (va - self.va)

    def follows(self, other: Mapping) -> bool:
        """Whether this range continues ``other`` with nothing but the addresses changed."""
        return (self.va == other.end and self.pa == other.pa + other.length
                and self.level == other.level and self.select == other.select
                and self.attributes == other.attributes
                and self.permissions == other.permissions)

    @property
    def attributes(self) -> tuple[int, int, bool, bool]:
        return (self.memory, self.shareability, self.not_global, self.contiguous)


class DescriptorLimit(Exception):
    """Raised when an enumeration would read more descriptors than allowed."""


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise DescriptorLimit("translation tables too large to enumerate")


def _read_table(read: TableReader, address: int, entries: int, big_endian: bool
                ) -> list[int]:
    data = read(address, entries * 8)
    if data is None:
        return [0] * entries  # nothing there: the walk would abort, no mapping
    return list(struct.unpack(f"{'>' if big_endian else '<'}{entries}Q", data))


@dataclass(frozen=True)
class _Range:
    """One VA range of a regime: where its tables start and how they are shaped."""

    regime: TranslationRegime
    select: int
    base_va: int
    table: int
    start_level: int
    input_size: int
    output_size: int

    @property
    def granule(self) -> Granule:
        return regime_walk_params(self.regime, self.select).granule

    def entries(self, level: int) -> int:
        if level == self.start_level:
            return 1 << (self.input_size - level_shift(self.granule, level))
        return 1 << self.granule.stride


def _ranges(regime: TranslationRegime, selects: tuple[int, ...] | None = None
            ) -> list[_Range]:
    """The VA ranges with tables: TTBR0 (and TTBR1 for EL1&0), unless EPDn disables walks."""
    if not regime.mmu_enabled:
        return []
    if selects is None:
        selects = (0, 1) if regime.name is RegimeName.EL10 else (0,)
    found = []
    for select in selects:
        params = regime_walk_params(regime, select)
        if params.epd or params.table_base >> params.output_size:
            continue
        base_va = (MASK64 << params.input_size) & MASK64 if select else 0
        found.append(_Range(regime, select, base_va, params.table_base, params.start_level,
                            params.input_size, params.output_size))
    return found


def _leaf(rng: _Range, descriptor: int, level: int, va: int, limits: int) -> Mapping | None:
    """The mapping a block or page descriptor gives, or None when it could never be
    cached: a translation that faults (access flag 0, output address beyond the
    output size) is never held in a TLB (D8.16 "Translation Lookaside Buffers")."""
    shift = level_shift(rng.granule, level)
    oa = descriptor & _OA_MASK & ~((1 << shift) - 1)
    if not descriptor & _AF or oa >> rng.output_size:
        return None
    attr_index = (descriptor >> 2) & 0b111
    el10 = rng.regime.name is RegimeName.EL10
    return Mapping(
        va=va, length=1 << shift, pa=oa, level=level, leaf_size=1 << shift,
        select=rng.select,
        memory=(rng.regime.mair >> (8 * attr_index)) & 0xFF,
        shareability=(descriptor >> 8) & 0b11,
        not_global=el10 and bool(descriptor & _NG),  # nG is RES0 in non-VHE EL2
        contiguous=bool(descriptor & _CONTIGUOUS),
        permissions=(descriptor & _PERMISSION_BITS) | limits,
    )


def _kind(descriptor: int, level: int, rng: _Range) -> str:
    if not descriptor & 1:
        return "invalid"
    if level == 3:
        return "leaf" if descriptor & 2 else "invalid"
    if descriptor & 2:
        return "table"
    return "leaf" if block_allowed(rng.granule, level) else "invalid"


def _next_table(descriptor: int, rng: _Range) -> int | None:
    address = descriptor & _OA_MASK & ~((1 << rng.granule.shift) - 1)
    return None if address >> rng.output_size else address


def _descend(rng: _Range, read: TableReader, table: int, level: int, va: int, limits: int,
             budget: _Budget) -> Iterator[Mapping]:
    count = rng.entries(level)
    budget.spend(count)
    big_endian = bool((rng.regime.sctlr >> 25) & 1)
    shift = level_shift(rng.granule, level)
    for index, descriptor in enumerate(_read_table(read, table, count, big_endian)):
        yield from _subtree(rng, read, descriptor, _kind(descriptor, level, rng), level,
                            va + (index << shift), limits, budget)


def maps_nothing(regime: TranslationRegime, read: TableReader, *,
                 selects: tuple[int, ...] | None = None) -> bool:
    """Whether the root tables of ``regime`` (its ``selects`` ranges) hold no valid
    descriptor, so they translate nothing: a reserved table such as Linux's
    ``reserved_pg_dir``.  Reads the roots only, however large the trees below
    other roots are; a root with a valid entry counts as mapping something."""
    for rng in _ranges(regime, selects):
        big_endian = bool((regime.sctlr >> 25) & 1)
        entries = _read_table(read, rng.table, rng.entries(rng.start_level), big_endian)
        if any(descriptor & 1 for descriptor in entries):
            return False
    return True


def coalesce(mappings: Iterator[Mapping]) -> Iterator[Mapping]:
    """Merge runs of leaves that continue one another (addresses contiguous, all else equal)."""
    current: Mapping | None = None
    for mapping in mappings:
        if current is not None and mapping.follows(current):
            current = Mapping(current.va, current.length + mapping.length, current.pa,
                              current.level, current.leaf_size, current.select,
                              current.memory, current.shareability, current.not_global,
                              current.contiguous, current.permissions)
            continue
        if current is not None:
            yield current
        current = mapping
    if current is not None:
        yield current


def valid_mappings(regime: TranslationRegime, read: TableReader, *,
                   selects: tuple[int, ...] | None = None,
                   limit: int = DEFAULT_DESCRIPTOR_LIMIT) -> Iterator[Mapping]:
    """Every VA range ``regime``'s tables map validly, in VA order per TTBR, coalesced.

    Raises :class:`DescriptorLimit` past ``limit`` descriptors read.
    """
    budget = _Budget(limit)
    for rng in _ranges(regime, selects):
        yield from coalesce(_descend(rng, read, rng.table, rng.start_level, rng.base_va, 0,
                                     budget))


def table_pages(regime: TranslationRegime, read: TableReader, *,
                limit: int = DEFAULT_DESCRIPTOR_LIMIT) -> dict[int, list[tuple[int, int, int]]]:
    """The tables reachable from the regime's TTBRs: table PA -> [(level, select, VA base)].

    A descriptor is reachable by a walk (and so by a speculative one, R_SQBCS)
    exactly when the table holding it is in here.
    """
    budget = _Budget(limit)
    found: dict[int, list[tuple[int, int, int]]] = {}

    def visit(rng: _Range, table: int, level: int, va: int) -> None:
        found.setdefault(table, []).append((level, rng.select, va))
        if level == 3:
            return
        count = rng.entries(level)
        budget.spend(count)
        big_endian = bool((rng.regime.sctlr >> 25) & 1)
        shift = level_shift(rng.granule, level)
        for index, descriptor in enumerate(_read_table(read, table, count, big_endian)):
            if _kind(descriptor, level, rng) == "table":
                below = _next_table(descriptor, rng)
                if below is not None and len(found.get(below, ())) < 4:
                    visit(rng, below, level + 1, va + (index << shift))

    for rng in _ranges(regime):
        visit(rng, rng.table, rng.start_level, rng.base_va)
    return found


# --------------------------------------------------------------------------
# Comparing two trees
# --------------------------------------------------------------------------

def _is_device(memory: int) -> bool:
    return memory & 0xF0 == 0


def conflicting_fields(old: Mapping, new: Mapping, va: int) -> list[str]:
    """What makes two valid mappings of ``va`` different translations, by the fields
    break-before-make is required for (D8.17.1, R_WHZWS): output address, block
    size (level), memory type, cacheability, shareability.  Empty when they agree
    in all of those (permissions aside)."""
    fields = []
    if old.pa_at(va) != new.pa_at(va):
        fields.append("output address")
    if old.leaf_size != new.leaf_size:
        fields.append("size")
    if old.memory != new.memory:
        if _is_device(old.memory) or _is_device(new.memory):
            fields.append("memory type")
        else:
            fields.append("cacheability")
    elif old.shareability != new.shareability and not _is_device(old.memory):
        # Shareability is ignored for Device memory (always Outer Shareable).
        fields.append("shareability")
    return fields


@dataclass(frozen=True)
class Difference:
    """One VA range mapped validly by both trees, differently."""

    va: int
    length: int
    old: Mapping
    new: Mapping
    fields: tuple[str, ...]  # empty: permissions only


@dataclass
class TreeComparison:
    """How two table trees compare, over every VA either maps validly.

    ``conflicts`` are ranges whose translations differ in a break-before-make
    field; ``permission_changes`` ranges that differ only in permissions
    (bounded to a few examples each, with the total counts alongside).
    """

    old_nonempty: bool = False
    new_nonempty: bool = False
    shared: int = 0  # bytes of VA both map the same way (permissions included)
    agreements: list[Difference] = field(default_factory=list)  # a few of those ranges
    conflicts: list[Difference] = field(default_factory=list)
    conflict_count: int = 0
    permission_changes: list[Difference] = field(default_factory=list)
    permission_count: int = 0
    examples: int = 3

    def add(self, va: int, length: int, old: Mapping, new: Mapping) -> None:
        fields = conflicting_fields(old, new, va)
        if fields:
            self.conflict_count += 1
            if len(self.conflicts) < self.examples:
                self.conflicts.append(Difference(va, length, old, new, tuple(fields)))
        elif old.permissions != new.permissions:
            self.permission_count += 1
            if len(self.permission_changes) < self.examples:
                self.permission_changes.append(Difference(va, length, old, new, ()))
        else:
            self.shared += length
            if len(self.agreements) < self.examples:
                self.agreements.append(Difference(va, length, old, new, ()))


def _sweep(old: list[Mapping], new: list[Mapping], result: TreeComparison) -> None:
    """Compare two VA-sorted lists of ranges by their overlaps."""
    i = j = 0
    while i < len(old) and j < len(new):
        a, b = old[i], new[j]
        lo, hi = max(a.va, b.va), min(a.end, b.end)
        if lo < hi:
            result.add(lo, hi - lo, a, b)
        if a.end <= b.end:
            i += 1
        else:
            j += 1


def compare_trees(old: TranslationRegime, new: TranslationRegime, read: TableReader, *,
                  selects: tuple[int, ...] | None = None,
                  keep_old: Callable[[Mapping], bool] = lambda _m: True,
                  limit: int = DEFAULT_DESCRIPTOR_LIMIT) -> TreeComparison:
    """Compare what the tables of ``old`` and ``new`` map, region by region.

    The two trees are descended together from their roots: a subtree both
    reach through the same table (with the same inherited limits) maps the same
    VAs the same way and is skipped unread; where they part, the valid leaves
    below are coalesced and their ranges compared.  ``keep_old`` drops
    outgoing mappings the PE can no longer use (e.g. non-global entries of
    another ASID).  Raises :class:`DescriptorLimit` past ``limit`` descriptors.
    """
    result = TreeComparison()
    budget = _Budget(limit)
    old_ranges = {r.select: r for r in _ranges(old, selects)}
    new_ranges = {r.select: r for r in _ranges(new, selects)}
    for select in sorted(set(old_ranges) | set(new_ranges)):
        a, b = old_ranges.get(select), new_ranges.get(select)
        if a is not None and b is not None and _same_shape(a, b):
            _together(a, b, read, a.table, b.table, a.start_level, a.base_va, 0, 0,
                      budget, keep_old, result)
            continue
        # Different shapes (or one side absent): compare the full leaf lists.
        olds = [] if a is None else [m for m in coalesce(
            _descend(a, read, a.table, a.start_level, a.base_va, 0, budget)) if keep_old(m)]
        news = [] if b is None else list(coalesce(
            _descend(b, read, b.table, b.start_level, b.base_va, 0, budget)))
        result.old_nonempty |= bool(olds)
        result.new_nonempty |= bool(news)
        _sweep(olds, news, result)
    return result


def _same_shape(a: _Range, b: _Range) -> bool:
    return (a.granule == b.granule and a.start_level == b.start_level
            and a.input_size == b.input_size and a.output_size == b.output_size
            and a.regime.mair == b.regime.mair
            and (a.regime.sctlr >> 25) & 1 == (b.regime.sctlr >> 25) & 1)


def _together(a: _Range, b: _Range, read: TableReader, table_a: int | None,
              table_b: int | None, level: int, va: int, limits_a: int, limits_b: int,
              budget: _Budget, keep_old: Callable[[Mapping], bool],
              result: TreeComparison) -> None:
    """Descend both trees at one table each (None: that side maps nothing here)."""
    if table_a is not None and table_a == table_b and limits_a == limits_b:
        # The same subtree: identical mappings.  Only emptiness is still of interest.
        if not (result.old_nonempty and result.new_nonempty):
            nonempty = any(keep_old(m) for m in _descend(a, read, table_a, level, va,
                                                          limits_a, budget))
            result.old_nonempty |= nonempty
            result.new_nonempty |= nonempty
        return
    count = a.entries(level)
    big_endian = bool((a.regime.sctlr >> 25) & 1)
    budget.spend(2 * count)
    olds = (_read_table(read, table_a, count, big_endian) if table_a is not None
            else [0] * count)
    news = (_read_table(read, table_b, count, big_endian) if table_b is not None
            else [0] * count)
    shift = level_shift(a.granule, level)
    for index in range(count):
        da, db = olds[index], news[index]
        if da == 0 and db == 0:
            continue
        entry_va = va + (index << shift)
        ka, kb = _kind(da, level, a), _kind(db, level, b)
        if ka == "table" and kb == "table":
            _together(a, b, read, _next_table(da, a), _next_table(db, b), level + 1,
                      entry_va, limits_a | (da & _TABLE_LIMIT_BITS),
                      limits_b | (db & _TABLE_LIMIT_BITS), budget, keep_old, result)
            continue
        left = [m for m in coalesce(_subtree(a, read, da, ka, level, entry_va, limits_a,
                                             budget)) if keep_old(m)]
        right = list(coalesce(_subtree(b, read, db, kb, level, entry_va, limits_b, budget)))
        result.old_nonempty |= bool(left)
        result.new_nonempty |= bool(right)
        _sweep(left, right, result)


def _subtree(rng: _Range, read: TableReader, descriptor: int, kind: str, level: int, va: int,
             limits: int, budget: _Budget) -> Iterator[Mapping]:
    """The valid leaves one descriptor (a leaf, or a table to descend) gives."""
    if kind == "leaf":
        leaf = _leaf(rng, descriptor, level, va, limits)
        if leaf is not None:
            yield leaf
    elif kind == "table":
        below = _next_table(descriptor, rng)
        if below is not None:
            yield from _descend(rng, read, below, level + 1, va,
                                limits | (descriptor & _TABLE_LIMIT_BITS), budget)


def usable_after(old: TranslationRegime, new: TranslationRegime) -> Callable[[Mapping], bool]:
    """Which outgoing mappings the PE may still use once ``new`` is in force: global
    ones, and non-global ones only while the ASID stays the same (D8.16: an entry
    tagged with another ASID is not used)."""
    if regime_asid(old) == regime_asid(new):
        return lambda _m: True
    return lambda m: not m.not_global


# The machine's cheaper question: which physical pages hold tables, at most
# ``limit`` of them, with no per-descriptor record.

def reachable_table_pages(regime: TranslationRegime, read_table: Callable[[int, int], bytes | None],
                limit: int = 256) -> set[int]:
    """The physical pages of every translation table reachable from the regime's TTBRs
    (the start-level tables and every table a valid table descriptor points at).

    ``read_table(pa, size)`` returns ``size`` bytes of physical memory (None
    where there is none).  Whatever SCTLR.M says: tables a TTBR points at may
    be walked as soon as the MMU is on, so stores to them matter before that.
    At most ``limit`` pages are visited (boot tables are a handful; the bound
    keeps a garbage TTBR cheap).
    """
    selects = (0, 1) if regime.name is RegimeName.EL10 else (0,)
    order = ">" if (regime.sctlr >> 25) & 1 else "<"  # SCTLR.EE: big-endian walks
    pages: set[int] = set()
    for select in selects:
        params = regime_walk_params(regime, select)
        if params.epd or params.table_base >> params.output_size:
            continue
        granule = params.granule
        todo = [(params.table_base, params.start_level)]
        while todo and len(pages) < limit:
            base, level = todo.pop()
            page = base & ~((1 << granule.shift) - 1)
            if page in pages:
                continue
            pages.add(page)
            if level >= 3:
                continue
            shift = level_shift(granule, level)
            width = params.input_size - shift if level == params.start_level else granule.stride
            data = read_table(base, 8 << width)
            if data is None:
                continue
            for descriptor in struct.unpack(f"{order}{1 << width}Q", data):
                # bits[1:0] = 0b11 below level 3: a table descriptor.
                if descriptor & 3 == 3:
                    todo.append((address_field(descriptor, granule.shift), level + 1))
    return pages
