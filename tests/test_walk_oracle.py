"""Differential test: the Python stage-1 walker against QEMU's walker inside Unicorn.

For every granule (4K, 16K, 64K), every start level it allows without
FEAT_TTST/LVA (TxSZ 16..39; now and then an out-of-range TxSZ, which QEMU and
the walker both clamp), and every regime (non-VHE EL2; EL1&0 with the range
under test behind TTBR0_EL1 or TTBR1_EL1, the other range random too),
hypothesis builds random page tables - invalid, table, block, page and
reserved descriptors, AF set and clear, random AP/XN/PXN, APTable/XNTable/
PXNTable, ignored and software bits, EPD, TBI, ASIDs, SCTLR.WXN - and random
VAs biased towards the mapped ones.  A smaller test does the same with the
MMU off.  Each VA is judged three ways and the answers must agree exactly:

1. :func:`emu.arch.mmu.walk.translate` for read, write and fetch (and EL0 read,
   write and fetch in EL1&0);
2. ``AT S1E2R/W`` (EL2) or ``AT S1E1R/W`` and ``AT S1E0R/W`` (EL1) run by the
   emulated CPU at that EL with the regime's registers: PAR_EL1's F bit, fault
   status code (kind and level), output address and MAIR attribute;
3. real accesses through the mapping at that EL: a load and a store of the
   loaded value back, a BLR to the VA, and at EL1 LDTR/STTR and an ERET to
   EL0 at the VA: no fault and the physical chunk actually reached, or the
   fault's exception class, status code (kind and level), WnR and FAR.
   They are made where the walker says the access faults or lands in the
   oracle's target window (elsewhere a store or a fetch could hit the
   probe's own memory); AT covers the other VAs.

tests/oracle.py has the probe program and explains how faults are caught.

The generator stays away from exactly those cases where the oracle is known
not to follow the architecture (each is marked ``QEMU departure`` below):

* QEMU 5 in Unicorn 2.1.4 makes no address-size checks (TTBR, table and
  output addresses beyond TCR.{PS,IPS} or PARange translate as if in range),
  so every address generated fits the configured output size;
* it takes a 0b01 descriptor as a block at levels where blocks do not exist
  (4K level 0, 16K levels 0-1, 64K level 1), so 0b01 is only generated where
  blocks are legal, or at level 3 (where it is reserved and QEMU does fault);
* it ORs a block descriptor's RES0 bits between the granule and the block
  size into the output address, so those bits stay zero;
* (Unicorn's memory model, not the walker) a walk that reads a PA with no
  memory behind it reads zeros instead of taking an external abort, so table
  descriptors always point into RAM.

Two further choices keep every case architecturally defined: TTBRs are
aligned to their table's size (the low BADDR bits are otherwise CONSTRAINED
UNPREDICTABLE), and descriptor bits [51:48] stay zero (OA[51:48] with
FEAT_LPA, GP with FEAT_BTI, DBM with FEAT_HAFDBS - QEMU's "max" CPU has BTI,
and a guarded page would make the BLR probe take a branch-target exception).

``BOOTEMU_FUZZ_EXAMPLES=N`` multiplies the number of hypothesis examples (and
the VA count each test must reach); ``pytest -s`` prints what was compared.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import (
    CODE_PA,
    DO_DATA,
    DO_EL0_DATA,
    DO_EL0_FETCH,
    DO_FETCH,
    MAIR,
    PA_BITS,
    PROBE_SIZE,
    RAM_BASE,
    RAM_SIZE,
    TABLES_END,
    TABLES_PA,
    WINDOW_PA,
    WINDOW_SIZE,
    ProbeError,
    QemuProbe,
    Record,
    chunk_from_load,
    in_window,
    probe_page,
    probe_va,
)
from unicorn import UcError

from emu.arch.mmu.regime import RegimeName, TranslationRegime
from emu.arch.mmu.walk import Access, Fault, Translation, WalkReadError, format_walk, translate

MASK64 = (1 << 64) - 1

MULTIPLIER = max(1, int(os.environ.get("BOOTEMU_FUZZ_EXAMPLES", "1")))
VAS_PER_EXAMPLE = 64
EXAMPLES_PER_CASE = 20
MMU_OFF_EXAMPLES = 6
MIN_VAS = 20_000
"""VAs the whole file must probe; each is judged for 3 (EL2) or 6 (EL1&0) access kinds,
against AT for reads and writes and, where it is safe, against real accesses."""

GRANULES = (4096, 16384, 65536)
PS_BITS = (32, 36, 40, 42, 44, 48, 52)  # TCR.{PS,IPS} encodings 0b000-0b110
TG0 = {4096: 0b00, 65536: 0b01, 16384: 0b10}
TG1 = {16384: 0b01, 4096: 0b10, 65536: 0b11}

# Descriptor fields, written out here rather than imported from the walker.
VALID, TABLE_OR_PAGE = 0b01, 0b10
AF = 1 << 10


# --------------------------------------------------------------------------
# Geometry (Arm ARM D8 "translation table lookup"), independent of emu.arch.mmu.regime
# --------------------------------------------------------------------------

def gshift(granule: int) -> int:
    """Page-offset bits of a granule (12, 14, 16)."""
    return granule.bit_length() - 1


def level_shift(granule: int, level: int) -> int:
    """Lowest VA bit indexed at ``level``; a block or page there spans ``1 << shift`` bytes."""
    return gshift(granule) + (3 - level) * (gshift(granule) - 3)


def start_level(granule: int, txsz: int) -> int:
    """Level where a walk of a (64 - txsz)-bit VA range starts: levels 3, 2, ... as needed."""
    level = 3
    while level_shift(granule, level - 1) < 64 - txsz:
        level -= 1
    return level


def effective_txsz(txsz: int) -> int:
    """TxSZ as walks use it: an out-of-range field behaves as the nearest legal value.

    The Arm ARM leaves the choice (that, or a level-0 fault for every VA)
    IMPLEMENTATION DEFINED; QEMU clamps, and so does the walker.
    """
    return min(max(txsz, 16), 39)


def out_of_range_txsz(granule: int, level: int) -> list[int]:
    """Illegal TxSZ values (0..15, 40..63) that clamp to a TxSZ starting at ``level``."""
    return [t for t in (*range(0, 16), *range(40, 64))
            if start_level(granule, effective_txsz(t)) == level]


def txsz_choices(granule: int, level: int) -> list[int]:
    """Legal TxSZ values (16..39: no FEAT_LVA, no FEAT_TTST) that start at ``level``."""
    return [t for t in range(16, 40) if start_level(granule, t) == level]


def blocks_allowed(granule: int, level: int) -> bool:
    """Block descriptors exist at 4K levels 1-2 and 16K/64K level 2 (no FEAT_LPA2)."""
    return level in (1, 2) if granule == 4096 else level == 2


CASES = [(kind, granule, level)
         for kind in ("EL2", "EL1-TTBR0", "EL1-TTBR1")
         for granule in GRANULES
         for level in range(4) if txsz_choices(granule, level)]


# --------------------------------------------------------------------------
# Generated configurations
# --------------------------------------------------------------------------

@dataclass
class VaRange:
    """One VA range of the generated regime and its tables."""

    select: int
    granule: int
    txsz: int  # the TCR field, possibly out of range
    tbi: bool
    epd: bool
    root: int = 0

    @property
    def input_size(self) -> int:
        return 64 - effective_txsz(self.txsz)

    @property
    def start(self) -> int:
        return start_level(self.granule, effective_txsz(self.txsz))

    @property
    def base(self) -> int:
        """Lowest VA of the range (TTBR1's range ends at 2^64)."""
        return 0 if self.select == 0 else (1 << 64) - (1 << self.input_size)

    def entries(self, level: int) -> int:
        """Descriptors in a table at ``level`` (the start-level table may be smaller)."""
        if level == self.start:
            return 1 << (self.input_size - level_shift(self.granule, level))
        return self.granule // 8

    def index(self, va: int, level: int) -> int:
        return (va >> level_shift(self.granule, level)) & (self.entries(level) - 1)


@dataclass(frozen=True)
class Region:
    """A VA span some generated descriptor covers; ``oa`` for block and page leaves."""

    va: int
    size: int
    oa: int | None


@dataclass
class Case:
    """One example: a regime, its tables, and the VAs to probe."""

    kind: str
    regime: TranslationRegime
    registers: dict[str, int]
    probe_base: int
    descriptors: dict[int, int]
    vas: list[int]
    ranges: dict[int, VaRange] = field(default_factory=dict)


class _Tables:
    """Builds the descriptors of one example, allocating tables in the oracle's table area."""

    def __init__(self, draw: st.DrawFn, out_bits: int) -> None:
        self.draw = draw
        self.out_bits = out_bits
        self.next_free = TABLES_PA
        self.descriptors: dict[int, int] = {}
        self.regions: list[Region] = []

    def alloc(self, granule: int) -> int:
        address = -(-self.next_free // granule) * granule
        self.next_free = address + granule
        assert self.next_free <= TABLES_END, "table area exhausted"
        return address

    def place_root(self, rng: VaRange) -> None:
        """The start-level table: inside a fresh granule, at an offset that is a multiple
        of its own size (TTBR alignment: the architecture requires no more)."""
        size = 8 * rng.entries(rng.start)
        chunk = self.alloc(rng.granule)
        rng.root = chunk + size * self.draw(st.integers(0, rng.granule // size - 1))

    def table_descriptor(self, child: int) -> int:
        """A table descriptor with random IGNORED bits and, half the time, table attributes."""
        noise = self.draw(st.integers(0, (1 << 18) - 1))
        attrs = self.draw(st.integers(0, 31))
        ignored = ((noise & 0x3FF) << 2) | (((noise >> 10) & 0x7F) << 52) | ((noise >> 17) << 63)
        # APTable[62:61], XNTable/UXNTable[60], PXNTable[59]: restrictions only half the time.
        table_attrs = (attrs - 16) << 59 if attrs >= 16 else 0
        return child | VALID | TABLE_OR_PAGE | ignored | table_attrs

    def leaf_descriptor(self, rng: VaRange, level: int) -> tuple[int, int]:
        """(descriptor, output address) of a random block (levels 1-2) or page (level 3)."""
        shift = level_shift(rng.granule, level)
        size = 1 << shift
        if self.draw(st.integers(0, 3)) != 3:
            # Mostly where real accesses can follow: a leaf inside the window,
            # or a block larger than the window that contains it.
            if size <= WINDOW_SIZE:
                oa = WINDOW_PA + size * self.draw(st.integers(0, WINDOW_SIZE // size - 1))
            else:
                oa = WINDOW_PA & ~(size - 1)
        else:
            # QEMU departure: no address-size checks, so the OA fits the output size.
            oa = self.draw(st.integers(0, (1 << (self.out_bits - shift)) - 1)) << shift
        # QEMU departure: a block's RES0 bits between the granule and the block
        # size would be ORed into the OA, so the OA is aligned to the block size
        # and the attribute fields below (bits [11:2], [63:52]) never reach them.
        low = self.draw(st.integers(0, (1 << 10) - 1)) << 2  # AttrIndx, NS, AP, SH, AF, nG
        low = low & ~AF if self.draw(st.integers(0, 4)) == 4 else low | AF
        high = self.draw(st.integers(0, (1 << 12) - 1)) << 52  # Cont, PXN, XN, SW, PBHA, bit 63
        kind = VALID | TABLE_OR_PAGE if level == 3 else VALID
        return oa | high | low | kind, oa

    def build_range(self, rng: VaRange, budget: int, probe: bool) -> None:
        """Random tables for one range; with ``probe``, the probe's own mapping first."""
        self.place_root(rng)
        work = [(rng.root, rng.start, rng.base)]
        if probe:
            work += self._map_probe(rng)
        while work and budget > 0:
            table, level, table_va = work.pop(0)
            shift = level_shift(rng.granule, level)
            for _ in range(self.draw(st.integers(1, min(3, budget)))):
                index = self.draw(st.integers(0, rng.entries(level) - 1))
                slot = table + 8 * index
                if slot in self.descriptors:  # the probe's path, or drawn already
                    continue
                budget -= 1
                va = table_va + (index << shift)
                child = self._random_descriptor(rng, level, slot, va)
                if child is not None:
                    work.append((child, level + 1, va))

    def _random_descriptor(self, rng: VaRange, level: int, slot: int, va: int) -> int | None:
        """Write one random descriptor at ``slot``; return the child table's address, if any."""
        if level == 3:
            kinds = ["page"] * 6 + ["invalid", "reserved"]
        else:
            kinds = ["table"] * 5 + ["invalid"]
            # QEMU departure: 0b01 would be taken as a block where blocks do not exist.
            if blocks_allowed(rng.granule, level):
                kinds += ["block"] * 3
        kind = self.draw(st.sampled_from(kinds))
        size = 1 << level_shift(rng.granule, level)
        child = None
        oa = None
        if kind == "table":
            # Unicorn departure: tables outside RAM would read as zeros, so they are in RAM.
            child = self.alloc(rng.granule)
            descriptor = self.table_descriptor(child)
        elif kind in ("block", "page"):
            descriptor, oa = self.leaf_descriptor(rng, level)
        elif kind == "invalid":
            descriptor = self.draw(st.integers(0, MASK64)) & ~VALID  # bits[63:1] ignored
        else:  # 0b01 at level 3: reserved, faults like an invalid descriptor
            descriptor = (self.draw(st.integers(0, (1 << 62) - 1)) << 2) | VALID
        self.descriptors[slot] = descriptor
        self.regions.append(Region(va, size, oa))
        return child

    def _map_probe(self, rng: VaRange) -> list[tuple[int, int, int]]:
        """Map the probe at :func:`probe_va` with plain table descriptors and probe pages.

        Returns the tables made on the way, so random descriptors can sit beside it.
        """
        va = probe_va(rng.select)
        table, level, made = rng.root, rng.start, []
        while level < 3:
            child = self.alloc(rng.granule)
            self.descriptors[table + 8 * rng.index(va, level)] = child | VALID | TABLE_OR_PAGE
            level += 1
            table = child
            made.append((child, level, va & ~((1 << level_shift(rng.granule, level - 1)) - 1)))
        for offset in range(0, PROBE_SIZE, rng.granule):
            self.descriptors[table + 8 * rng.index(va + offset, 3)] = probe_page(offset)
        return made


VA_SEED_BYTES = 16


def _va_from_seed(seed: bytes, regions: list[Region], ranges: dict[int, VaRange]) -> int:
    """Turn 16 drawn bytes into a VA to probe.

    Mostly a VA under a block or page (three times in four in the part whose
    output lands in the window), else under any generated descriptor, now and
    then anywhere in a range or anywhere at all; one VA in sixteen gets a tag.
    One blob per VA keeps generation cheap (a draw per field costs far more
    than the walk it feeds) and still shrinks: all-zero bytes give the first
    region's first VA, untagged.
    """
    pick, where, tag_roll, tag = seed[0] % 20, seed[1] % 4, seed[2] % 16, seed[3]
    index = int.from_bytes(seed[4:8], "little")
    offset = int.from_bytes(seed[8:16], "little")
    leaves = [region for region in regions if region.oa is not None]
    if pick < 18 and regions:
        pool = leaves if pick < 12 and leaves else regions
        region = pool[index % len(pool)]
        lo, hi = 0, region.size
        if region.oa is not None and where != 3:
            lo = max(0, WINDOW_PA - region.oa)
            hi = min(region.size, WINDOW_PA + WINDOW_SIZE - region.oa)
            if lo >= hi:
                lo, hi = 0, region.size
        va = region.va + lo + 16 * (offset % ((hi - lo) // 16))
    elif pick == 18:
        rng = ranges[sorted(ranges)[index % len(ranges)]]
        va = rng.base + 16 * (offset % ((1 << rng.input_size) // 16))
    else:
        va = 16 * (offset % (1 << 60))  # anywhere, mostly out of range
    if tag_roll == 15:
        va = (va & ((1 << 56) - 1)) | (tag << 56)
    return va & MASK64


@st.composite
def walk_cases(draw: st.DrawFn, kind: str, granule: int, level: int) -> Case:
    """A random regime of ``kind`` whose range under test uses ``granule`` from ``level``."""
    el2 = kind == "EL2"
    tested = 1 if kind == "EL1-TTBR1" else 0
    # The probe runs with the MMU on, so it is mapped in an enabled range: the
    # one under test at EL2, the other one at EL1 (which leaves the tested
    # range entirely random, EPD included).
    probe_select = 0 if el2 else 1 - tested
    ps_code = draw(st.integers(0, len(PS_BITS) - 1))
    # QEMU departure: no address-size checks, so nothing is generated beyond this.
    out_bits = min(PS_BITS[ps_code], PA_BITS)
    ranges: dict[int, VaRange] = {}
    for select in ((0,) if el2 else (0, 1)):
        # One range in eight gets an out-of-range TxSZ (clamped, see effective_txsz).
        odd = draw(st.integers(0, 7)) == 7
        if select == tested:
            g = granule
            txsz = draw(st.sampled_from(out_of_range_txsz(granule, level)
                                        if odd and out_of_range_txsz(granule, level)
                                        else txsz_choices(granule, level)))
        else:
            g = draw(st.sampled_from(GRANULES))
            txsz = draw(st.integers(0, 63) if odd else st.integers(16, 39))
        epd = not el2 and select != probe_select and draw(st.integers(0, 7)) == 7
        ranges[select] = VaRange(select, g, txsz, tbi=draw(st.booleans()), epd=epd)
    tables = _Tables(draw, out_bits)
    for select, rng in ranges.items():
        tables.build_range(rng, budget=16 if select == tested else 6,
                           probe=select == probe_select)
    wxn = draw(st.booleans())
    sctlr = 0x30D0_0800 | (int(wxn) << 19) | 1  # RES1 bits, WXN, M
    r0 = ranges[0]
    if el2:
        tcr = (r0.txsz | (TG0[r0.granule] << 14) | (ps_code << 16) | (int(r0.tbi) << 20)
               | (1 << 23) | (1 << 31))
        regime = TranslationRegime(RegimeName.EL2, sctlr, tcr, r0.root, mair=MAIR,
                                   pa_bits=PA_BITS)
        registers = {"SCTLR_EL2": sctlr, "TCR_EL2": tcr, "TTBR0_EL2": r0.root,
                     "MAIR_EL2": MAIR}
    else:
        r1 = ranges[1]
        tcr = (r0.txsz | (int(r0.epd) << 7) | (TG0[r0.granule] << 14) | (r1.txsz << 16)
               | (draw(st.integers(0, 1)) << 22) | (int(r1.epd) << 23)
               | (TG1[r1.granule] << 30) | (ps_code << 32) | (draw(st.integers(0, 1)) << 36)
               | (int(r0.tbi) << 37) | (int(r1.tbi) << 38))
        asids = draw(st.integers(0, (1 << 32) - 1))
        ttbr0 = r0.root | ((asids & 0xFFFF) << 48)
        ttbr1 = r1.root | ((asids >> 16) << 48)
        regime = TranslationRegime(RegimeName.EL10, sctlr, tcr, ttbr0, ttbr1, mair=MAIR,
                                   pa_bits=PA_BITS)
        registers = {"SCTLR_EL1": sctlr, "TCR_EL1": tcr, "TTBR0_EL1": ttbr0,
                     "TTBR1_EL1": ttbr1, "MAIR_EL1": MAIR}
    seeds = draw(st.binary(min_size=VA_SEED_BYTES * VAS_PER_EXAMPLE,
                           max_size=VA_SEED_BYTES * VAS_PER_EXAMPLE))
    vas = [_va_from_seed(seeds[n:n + VA_SEED_BYTES], tables.regions, ranges)
           for n in range(0, len(seeds), VA_SEED_BYTES)]
    return Case(kind, regime, registers, probe_va(probe_select), tables.descriptors, vas,
                ranges)


def _mmu_off_va(seed: bytes) -> int:
    """A VA for a regime with the MMU off (VA = PA): mostly in the window, else anywhere in
    RAM, below or above the 44-bit PA size, or anywhere at all; one in four tagged."""
    pick, tag_roll, tag = seed[0] % 8, seed[1] % 4, seed[2]
    offset = int.from_bytes(seed[8:16], "little") & ~0xF
    if pick < 4:
        va = WINDOW_PA + offset % WINDOW_SIZE
    elif pick == 4:
        va = RAM_BASE + offset % RAM_SIZE
    elif pick == 5:
        va = offset % (1 << PA_BITS)
    elif pick == 6:
        va = (1 << PA_BITS) + offset % ((1 << 48) - (1 << PA_BITS))
    else:
        va = offset
    if tag_roll == 3:
        va = (va & ((1 << 56) - 1)) | (tag << 56)
    return va


@st.composite
def mmu_off_cases(draw: st.DrawFn, el: int) -> Case:
    """A regime with SCTLR.M = 0 at ``el``: flat map, address-size faults beyond PAMax."""
    sctlr = 0x30D0_0800 | (draw(st.integers(0, 1)) << 12)  # M = 0, SCTLR.I either way
    ps_code = draw(st.integers(0, len(PS_BITS) - 1))  # no effect with the MMU off
    tbi0, tbi1 = draw(st.booleans()), draw(st.booleans())
    if el == 2:
        tcr = 16 | (ps_code << 16) | (int(tbi0) << 20) | (1 << 23) | (1 << 31)
        regime = TranslationRegime(RegimeName.EL2, sctlr, tcr, 0, mair=MAIR, pa_bits=PA_BITS)
        registers = {"SCTLR_EL2": sctlr, "TCR_EL2": tcr, "TTBR0_EL2": 0, "MAIR_EL2": MAIR}
    else:
        tcr = (16 | (16 << 16) | (TG1[4096] << 30) | (ps_code << 32) | (int(tbi0) << 37)
               | (int(tbi1) << 38))
        regime = TranslationRegime(RegimeName.EL10, sctlr, tcr, 0, 0, mair=MAIR,
                                   pa_bits=PA_BITS)
        registers = {"SCTLR_EL1": sctlr, "TCR_EL1": tcr, "TTBR0_EL1": 0, "TTBR1_EL1": 0,
                     "MAIR_EL1": MAIR}
    seeds = draw(st.binary(min_size=VA_SEED_BYTES * VAS_PER_EXAMPLE,
                           max_size=VA_SEED_BYTES * VAS_PER_EXAMPLE))
    vas = [_mmu_off_va(seeds[n:n + VA_SEED_BYTES]) for n in range(0, len(seeds), VA_SEED_BYTES)]
    # With the MMU off the probe runs where it is: VA = PA.
    return Case(f"EL{el}-MMU-off", regime, registers, CODE_PA, {}, vas)


# --------------------------------------------------------------------------
# Judging one VA
# --------------------------------------------------------------------------

EC_DATA_ABORT_SAME_EL = 0x25
EC_INSN_ABORT_SAME_EL = 0x21
EC_INSN_ABORT_LOWER_EL = 0x20
EC_SVC = 0x15


def _branch_keeps_va(regime: TranslationRegime, va: int) -> bool:
    """Whether BLR/ERET to ``va`` fetches from ``va`` itself.

    AArch64.BranchAddr drops a TBI tag from the PC (EL2: zero-extends bit 55;
    EL1&0: sign-extends it), so a tagged VA would be fetched at another VA.
    """
    if regime.name is RegimeName.EL2:
        tbi, canonical = bool(regime.tcr >> 20 & 1), 0
    else:
        bit55 = va >> 55 & 1
        tbi, canonical = bool(regime.tcr >> (37 + bit55) & 1), 0xFF * bit55
    return not tbi or va >> 56 == canonical


def _expect_par(par: int, result: Translation | Fault) -> str | None:
    """Mismatch between a PAR_EL1 value and the walker's answer, or None."""
    if isinstance(result, Fault):
        if not par & 1:
            return f"AT translated to PA {par & 0xFFFF_FFFF_F000:#x}"
        fst = (par >> 1) & 0x3F
        if fst != result.status_code or par >> 8 & 0b11:  # FST; S and PTW must be 0
            return f"AT fault status {fst:#08b} (PAR {par:#x})"
        return None
    if par & 1:
        return f"AT faulted, status {(par >> 1) & 0x3F:#08b}"
    if (par & 0xFFFF_FFFF_F000) != (result.pa & 0xFFFF_FFFF_F000):
        return f"AT gave PA {par & 0xFFFF_FFFF_F000:#x}"
    if par >> 56 != result.memory_attributes:
        return f"AT gave attributes {par >> 56:#x}"
    return None


def _expect_access(esr: int, far: int, value: int, result: Translation | Fault, *,
                   fetch: bool, el0: bool, write: bool) -> str | None:
    """Mismatch between what a real access did and the walker's answer, or None."""
    ec = esr >> 26
    if isinstance(result, Translation):
        if fetch and el0:
            if ec != EC_SVC:
                return f"EL0 fetch did not reach the gate (ESR {esr:#x})"
        elif esr:
            return f"faulted with ESR {esr:#x} (FSC {esr & 0x3F:#08b})"
        if write:
            return None  # a store leaves no value; its PA is the load's
        got = value if fetch else chunk_from_load(value)
        if got != result.pa >> 4:
            return f"reached chunk {got if got is None else hex(got << 4)}"
        return None
    if not esr or (fetch and el0 and ec == EC_SVC):
        return "did not fault"
    want_ec = (EC_INSN_ABORT_LOWER_EL if el0 else EC_INSN_ABORT_SAME_EL) if fetch \
        else EC_DATA_ABORT_SAME_EL
    if ec != want_ec:
        return f"exception class {ec:#x}, not {want_ec:#x} (ESR {esr:#x})"
    if esr & 0x3F != result.status_code:
        return f"fault status {esr & 0x3F:#08b} (ESR {esr:#x})"
    if not fetch and bool(esr >> 6 & 1) != write:
        return f"WnR {esr >> 6 & 1} (ESR {esr:#x})"
    if far != result.va:
        return f"FAR {far:#x}"
    return None


@dataclass
class Tally:
    """What one test compared."""

    vas: int = 0
    translations: int = 0  # translate() results checked against AT and/or a real access
    at_checks: int = 0
    access_checks: int = 0

    def add(self, other: Tally) -> None:
        self.vas += other.vas
        self.translations += other.translations
        self.at_checks += other.at_checks
        self.access_checks += other.access_checks


def _in_probe(case: Case, va: int) -> bool:
    """Whether ``va``, tag aside, lies in the probe's own VA span."""
    untagged = (1 << 56) - 1
    return 0 <= (va & untagged) - (case.probe_base & untagged) < PROBE_SIZE


def _reachable(result: Translation | Fault) -> bool:
    """Whether to make the real access: only where the walker says it faults or lands in
    the window, so a store or a fetch can do no harm and the value says where it went."""
    return isinstance(result, Fault) or in_window(result.pa)


def _judge(case: Case, probe: QemuProbe) -> tuple[Tally, list[str]]:
    """Run one example through the walker and the oracle; return the tally and mismatches."""
    regime = case.regime
    el1 = regime.name is RegimeName.EL10

    cache: dict[int, int | None] = {}

    def read(pa: int) -> int:
        # Tables do not change while an example is judged: read each word once.
        if pa not in cache:
            cache[pa] = probe.read_phys(pa)
        value = cache[pa]
        if value is None:
            raise WalkReadError(f"no RAM at {pa:#x}")
        return value

    probe.load_tables(case.descriptors)  # the walker reads the very memory QEMU walks
    kinds = [(Access.READ, False), (Access.WRITE, False), (Access.FETCH, False)]
    if el1:
        kinds += [(Access.READ, True), (Access.WRITE, True), (Access.FETCH, True)]
    expected: list[Answers] = []
    batch: list[tuple[int, int]] = []
    for va in case.vas:
        answers = {k: translate(regime, read, va, k[0], el0=k[1]) for k in kinds}
        expected.append(answers)
        if _in_probe(case, va):
            # The probe's own code and records: AT only.  A walker that wrongly
            # said "fault" here would have the probe branch into itself.
            batch.append((va, 0))
            continue
        flags = DO_DATA if _reachable(answers[Access.READ, False]) else 0
        branch = _branch_keeps_va(regime, va)
        if branch and _reachable(answers[Access.FETCH, False]):
            flags |= DO_FETCH
        if el1:
            if _reachable(answers[Access.READ, True]):
                flags |= DO_EL0_DATA
            if branch and _reachable(answers[Access.FETCH, True]):
                flags |= DO_EL0_FETCH
        batch.append((va, flags))

    try:
        records = probe.run(case.registers, case.probe_base, batch)
    except (ProbeError, UcError) as exc:
        return Tally(), _diagnose_failed_run(case, probe, batch, expected, exc)

    tally = Tally(vas=len(batch))
    problems: list[str] = []
    for answers, record in zip(expected, records, strict=True):
        checks = _checks(record, answers, el1)
        tally.translations += len({key for key, _, _ in checks})
        for key, oracle, problem in checks:
            if oracle == "AT":
                tally.at_checks += 1
            else:
                tally.access_checks += 1
            if problem:
                result = answers[key]
                mine = (result.describe() if isinstance(result, Fault)
                        else f"PA {result.pa:#x} attr {result.memory_attributes:#x}")
                problems.append(f"VA {record.va:#x} {_describe(key)} ({oracle}): {problem}; "
                                f"walker: {mine}")
                problems += [f"    {line}" for line in format_walk(result)]
    return tally, problems


def _diagnose_failed_run(case: Case, probe: QemuProbe, batch: list[tuple[int, int]],
                         expected: list[Answers], exc: Exception) -> list[str]:
    """Explain a probe run that did not finish: find the first VA that breaks it alone.

    A run breaks when a real access goes where the walker did not expect (a
    fetch that executes something other than a window chunk, an access to a
    PA with no RAM).  Each VA is re-run alone with its real accesses; the
    first one that breaks is re-run with AT only and shown with its walks.
    """
    lines = [f"the probe run failed: {exc}"]
    el1 = case.regime.name is RegimeName.EL10
    for (va, flags), answers in zip(batch, expected, strict=True):
        probe.restore()
        probe.load_tables(case.descriptors)
        try:
            probe.run(case.registers, case.probe_base, [(va, flags)])
            continue
        except (ProbeError, UcError) as alone:
            lines.append(f"VA {va:#x} breaks it alone (flags {flags:#x}): {alone}")
        probe.restore()
        probe.load_tables(case.descriptors)
        try:
            (record,) = probe.run(case.registers, case.probe_base, [(va, 0)])
        except (ProbeError, UcError) as at_only:
            lines.append(f"  and so does AT alone: {at_only}")
        else:
            lines += [f"  {_describe(key)} ({oracle}): {problem}"
                      for key, oracle, problem in _checks(record, answers, el1) if problem]
        for key, result in answers.items():
            lines.append(f"  walker, {_describe(key)}:")
            lines += [f"    {line}" for line in format_walk(result)]
        break
    probe.restore()
    return lines


Key = tuple[Access, bool]
"""An access kind and whether it is made from EL0."""
Answers = dict[Key, Translation | Fault]
Check = tuple[Key, str, str | None]
"""(access judged, which oracle judged it, the mismatch or None)."""


def _data_checks(answers: Answers, label: str, el0: bool, load: tuple[int, int, int],
                 store: tuple[int, int]) -> list[Check]:
    """A load's (ESR, FAR, value) and, when the load succeeded, its store's (ESR, FAR)."""
    read, write = (Access.READ, el0), (Access.WRITE, el0)
    esr, far, value = load
    out = [(read, f"{label} load", _expect_access(esr, far, value, answers[read],
                                                  fetch=False, el0=el0, write=False))]
    if not esr:  # the probe stores only after a successful load
        out.append((write, f"{label} store", _expect_access(
            store[0], store[1], 0, answers[write], fetch=False, el0=el0, write=True)))
    return out


def _checks(record: Record, answers: Answers, el1: bool) -> list[Check]:
    """Every comparison made for one VA: AT always, real accesses where the flags asked."""
    r, w = (Access.READ, False), (Access.WRITE, False)
    out: list[Check] = [(r, "AT", _expect_par(record.par_r, answers[r])),
                        (w, "AT", _expect_par(record.par_w, answers[w]))]
    if el1:
        ur, uw = (Access.READ, True), (Access.WRITE, True)
        out += [(ur, "AT", _expect_par(record.par_e0r, answers[ur])),
                (uw, "AT", _expect_par(record.par_e0w, answers[uw]))]
    if record.flags & DO_DATA:
        out += _data_checks(answers, "LDR/STR", False,
                            (record.ld_esr, record.ld_far, record.ld_val),
                            (record.st_esr, record.st_far))
    if record.flags & DO_FETCH:
        x = (Access.FETCH, False)
        out.append((x, "BLR", _expect_access(record.x_esr, record.x_far, record.x_val,
                                             answers[x], fetch=True, el0=False, write=False)))
    if record.flags & DO_EL0_DATA:
        out += _data_checks(answers, "LDTR/STTR", True,
                            (record.uld_esr, record.uld_far, record.uld_val),
                            (record.ust_esr, record.ust_far))
    if record.flags & DO_EL0_FETCH:
        ux = (Access.FETCH, True)
        out.append((ux, "ERET to EL0", _expect_access(
            record.ux_esr, record.ux_far, record.ux_val, answers[ux], fetch=True, el0=True,
            write=False)))
    return out


def _describe(key: Key) -> str:
    return f"{key[0].value}{' at EL0' if key[1] else ''}"


# --------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------

_PROBES: dict[int, QemuProbe] = {}
_TOTALS: dict[str, Tally] = {}  # by case id


def teardown_module() -> None:
    """Release the two Unicorn instances (64 MiB of guest RAM each) after this file."""
    _PROBES.clear()


def _probe(el: int) -> QemuProbe:
    """One Unicorn instance per EL for the whole session (tables are swapped per example)."""
    if el not in _PROBES:
        _PROBES[el] = QemuProbe(el)
    return _PROBES[el]


def _share() -> int:
    """VAs each parametrized case must probe so that together they reach MIN_VAS."""
    return math.ceil(MIN_VAS / len(CASES)) * MULTIPLIER


def _run_examples(strategy: st.SearchStrategy[Case], el: int, examples: int) -> Tally:
    """Drive ``examples`` hypothesis examples of ``strategy`` through the oracle at ``el``."""
    probe = _probe(el)
    tally = Tally()

    @settings(max_examples=examples * MULTIPLIER, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(case=strategy)
    def check(case: Case) -> None:
        got, problems = _judge(case, probe)
        assert not problems, "\n".join(problems[:40])
        tally.add(got)

    check()
    return tally


def _case_id(kind: str, granule: int, level: int) -> str:
    return f"{kind}-{granule // 1024}K-L{level}"


@pytest.mark.parametrize("kind,granule,level", CASES, ids=[_case_id(*c) for c in CASES])
def test_walker_agrees_with_qemu(kind: str, granule: int, level: int):
    tally = _run_examples(walk_cases(kind, granule, level), 2 if kind == "EL2" else 1,
                          EXAMPLES_PER_CASE)
    _TOTALS[_case_id(kind, granule, level)] = tally
    assert tally.vas >= _share(), f"only {tally.vas} VAs probed: {tally}"


@pytest.mark.parametrize("el", [2, 1], ids=["EL2", "EL1"])
def test_walker_agrees_with_qemu_mmu_off(el: int):
    """SCTLR.M = 0: the flat map, TBI, and address-size faults beyond the 44-bit PA size."""
    tally = _run_examples(mmu_off_cases(el), el, MMU_OFF_EXAMPLES)
    _TOTALS[f"EL{el}-MMU-off"] = tally
    assert tally.vas >= MMU_OFF_EXAMPLES * VAS_PER_EXAMPLE * MULTIPLIER // 2, tally


def test_total_compared():
    """All cases together probed at least MIN_VAS VAs (checked when every case ran).

    The tally is also written to the terminal (``pytest -s``) for the record.
    """
    if not all(_case_id(*case) in _TOTALS for case in CASES):
        pytest.skip("not every oracle case ran in this session")
    total = Tally()
    for tally in _TOTALS.values():
        total.add(tally)
    print(f"\nwalker vs QEMU: {total.vas} VAs, {total.translations} translations "
          f"(VA x access kind) compared, {total.at_checks} AT results, "
          f"{total.access_checks} real accesses")
    assert total.vas >= MIN_VAS * MULTIPLIER, total


def test_oracle_layout_is_consistent():
    """The generator's assumptions about the oracle's memory map hold."""
    assert RAM_BASE <= TABLES_PA < TABLES_END <= WINDOW_PA
    assert WINDOW_PA + WINDOW_SIZE <= RAM_BASE + RAM_SIZE
    assert WINDOW_PA % (32 << 20) == 0  # a 16K level-2 block fits inside
    assert (RAM_BASE + RAM_SIZE) <= 1 << 32  # every table address fits PS = 32 bits
