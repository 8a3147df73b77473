"""Tests for the stage-1 walker (emu.arch.mmu.walk) and regime helpers (emu.arch.mmu.regime).

Translation tables are built by hand in a dict-backed fake physical memory.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.arch.mmu.regime import (
    Granule,
    RegimeName,
    TranslationRegime,
    regime_asid,
    regime_effective_txsz,
    regime_granule,
    regime_input_size,
    regime_output_size,
    regime_start_level,
    regime_table_base,
    regime_translation_disabled,
    regime_ttbr,
    regime_va_range,
    regime_walk_params,
    txsz_limits,
)
from emu.arch.mmu.walk import (
    Access,
    Fault,
    FaultKind,
    Translation,
    WalkReadError,
    format_walk,
    translate,
)

# SCTLR bits.
M, C, ICACHE, WXN, EE = 1 << 0, 1 << 2, 1 << 12, 1 << 19, 1 << 25
SCTLR_ON = M | C | ICACHE

# MAIR: Attr0 Device-nGnRnE, Attr1 Normal NC, Attr2 Normal WB, Attr3 Device-nGnRE.
MAIR = 0x00 | (0x44 << 8) | (0xFF << 16) | (0x04 << 24)
ATTR_DEVICE, ATTR_NC, ATTR_WB = 0, 1, 2

# Descriptor bits.
AF = 1 << 10
NG = 1 << 11
AP_EL0 = 1 << 6  # AP[1]
AP_RO = 1 << 7  # AP[2]
CONT = 1 << 52
PXN = 1 << 53
XN = 1 << 54
PXN_TABLE = 1 << 59
XN_TABLE = 1 << 60
AP_TABLE_NO_EL0 = 1 << 61
AP_TABLE_RO = 1 << 62

TG0 = {4096: 0b00, 65536: 0b01, 16384: 0b10}
TG1 = {16384: 0b01, 4096: 0b10, 65536: 0b11}
PS = {32: 0, 36: 1, 40: 2, 42: 3, 44: 4, 48: 5}

GiB, MiB, KiB = 1 << 30, 1 << 20, 1 << 10


def tcr_el2(t0sz: int = 16, granule: int = 4096, ps_bits: int = 48, tbi: bool = False) -> int:
    """TCR_EL2 (non-VHE) with RES1 bits 23 and 31 set, as real code writes it."""
    return (t0sz | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (TG0[granule] << 14)
            | (PS[ps_bits] << 16) | (int(tbi) << 20) | (1 << 23) | (1 << 31))


def tcr_el1(t0sz: int = 16, t1sz: int = 16, g0: int = 4096, g1: int = 4096, ips_bits: int = 48,
            *, epd0: bool = False, epd1: bool = False, a1: bool = False, as16: bool = False,
            tbi0: bool = False, tbi1: bool = False) -> int:
    return (t0sz | (int(epd0) << 7) | (TG0[g0] << 14) | (t1sz << 16) | (int(a1) << 22)
            | (int(epd1) << 23) | (TG1[g1] << 30) | (PS[ips_bits] << 32) | (int(as16) << 36)
            | (int(tbi0) << 37) | (int(tbi1) << 38))


def leaf(oa: int, level: int, *, attr: int = ATTR_WB, extra: int = 0, af: bool = True,
         sh: int = 0b11) -> int:
    """Block (levels 0-2, bits[1:0]=01) or page (level 3, bits[1:0]=11) descriptor."""
    low = 0b11 if level == 3 else 0b01
    return oa | low | (attr << 2) | (sh << 8) | (AF if af else 0) | extra


class Tables:
    """Fake physical memory holding translation tables for one VA range.

    The index arithmetic is written out here from D8 "translation table
    lookup" (each level resolves granule/8 entries) so it checks the walker
    rather than reusing it.
    """

    def __init__(self, granule: int = 4096, txsz: int = 16, base: int = 0x4008_0000) -> None:
        self.mem: dict[int, int] = {}
        self.granule = granule
        self.gshift = granule.bit_length() - 1
        self.stride = self.gshift - 3
        self.input = 64 - txsz
        level = 3
        while self.gshift + (4 - level) * self.stride < self.input:
            level -= 1
        self.start = level
        self.next_free = base
        self.root = self.alloc()

    def alloc(self) -> int:
        addr = self.next_free
        self.next_free += self.granule
        return addr

    def read(self, pa: int) -> int:
        assert pa % 8 == 0, "descriptor reads are 8-byte aligned"
        return self.mem.get(pa, 0)

    def lo_bit(self, level: int) -> int:
        return self.gshift + (3 - level) * self.stride

    def index(self, va: int, level: int) -> int:
        lo = self.lo_bit(level)
        hi = self.input if level == self.start else lo + self.stride
        return (va >> lo) & ((1 << (hi - lo)) - 1)

    def table_for(self, va: int, level: int, table_bits: dict[int, int] | None = None) -> int:
        """Address of the level-``level`` table for ``va``, creating the chain."""
        table = self.root
        for lvl in range(self.start, level):
            slot = table + 8 * self.index(va, lvl)
            desc = self.mem.get(slot, 0)
            if desc & 0b11 != 0b11:
                desc = self.alloc() | 0b11 | (table_bits or {}).get(lvl, 0)
                self.mem[slot] = desc
            table = desc & 0x0000_FFFF_FFFF_F000 & ~(self.granule - 1)
        return table

    def slot(self, va: int, level: int, table_bits: dict[int, int] | None = None) -> int:
        return self.table_for(va, level, table_bits) + 8 * self.index(va, level)

    def put(self, va: int, level: int, desc: int, table_bits: dict[int, int] | None = None):
        self.mem[self.slot(va, level, table_bits)] = desc

    def map(self, va: int, pa: int, level: int, table_bits: dict[int, int] | None = None,
            **kw) -> None:
        self.put(va, level, leaf(pa, level, **kw), table_bits)


def el2(t: Tables, *, sctlr: int = SCTLR_ON, ps_bits: int = 48, pa_bits: int = 48,
        tbi: bool = False, small_tables: bool = False) -> TranslationRegime:
    return TranslationRegime(RegimeName.EL2, sctlr, tcr_el2(64 - t.input, t.granule, ps_bits, tbi),
                             t.root, mair=MAIR, pa_bits=pa_bits, small_tables=small_tables)


def ok(result: Translation | Fault) -> Translation:
    assert isinstance(result, Translation), result.describe()
    return result


def bad(result: Translation | Fault, kind: FaultKind, level: int) -> Fault:
    assert isinstance(result, Fault), f"expected a {kind} fault, got PA {result.pa:#x}"
    assert (result.kind, result.level) == (kind, level), result.describe()
    return result


# --------------------------------------------------------------------------
# 4 KiB granule, EL2
# --------------------------------------------------------------------------

def test_4k_level1_gib_block():
    t = Tables()
    t.map(0x8000_0000, 0x4000_0000, 1)
    r = ok(translate(el2(t), t.read, 0x8012_3456, Access.READ))
    assert r.pa == 0x4012_3456
    assert (r.level, r.size) == (1, GiB)
    assert [s.kind for s in r.steps] == ["table", "block"]
    assert [s.level for s in r.steps] == [0, 1]
    assert not r.identity


def test_4k_level2_2mib_block():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2)
    r = ok(translate(el2(t), t.read, 0x4021_2345, Access.WRITE))
    assert r.pa == 0x4021_2345 and r.identity
    assert (r.level, r.size) == (2, 2 * MiB)
    assert r.writable and r.executable and r.readable
    assert (r.el0_readable, r.el0_writable, r.el0_executable) == (False, False, False)
    assert r.memory_attributes == 0xFF and r.attr_index == ATTR_WB
    assert r.ttbr_select == 0


def test_4k_level3_page():
    t = Tables()
    t.map(0x0000_7FFF_0000_3000, 0x4123_4000, 3, attr=ATTR_DEVICE, sh=0b10)
    r = ok(translate(el2(t), t.read, 0x0000_7FFF_0000_3ABC, Access.READ))
    assert r.pa == 0x4123_4ABC
    assert (r.level, r.size) == (3, 4 * KiB)
    assert [s.level for s in r.steps] == [0, 1, 2, 3]
    assert r.steps[-1].kind == "page"
    assert r.memory_attributes == 0x00 and r.shareability == 0b10


def test_walk_steps_record_addresses():
    t = Tables()
    va = 0x0000_0080_4020_1000  # L0 index 1
    t.map(va, 0x4020_0000, 2)
    r = ok(translate(el2(t), t.read, va, Access.READ))
    step0 = r.steps[0]
    assert step0.table_address == t.root
    assert step0.index == 1
    assert step0.descriptor_address == t.root + 8
    assert step0.descriptor == t.mem[t.root + 8]
    assert step0.output_address == r.steps[1].table_address
    assert r.steps[-1].output_address == 0x4020_0000


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_translation_fault_at_each_level(level: int):
    t = Tables()
    va = 0x0000_0000_4020_3000
    if level > 0:
        t.table_for(va, level)  # tables down to `level`, whose entry stays 0
    f = bad(translate(el2(t), t.read, va, Access.READ), FaultKind.TRANSLATION, level)
    assert len(f.steps) == level + 1
    assert f.steps[-1].kind == "invalid"
    assert f.status_code == 0b000100 | level


def test_reserved_level3_descriptor():
    t = Tables()
    t.put(0x4020_3000, 3, 0x4020_3000 | AF | 0b01)
    f = bad(translate(el2(t), t.read, 0x4020_3000, Access.READ), FaultKind.TRANSLATION, 3)
    assert f.steps[-1].kind == "reserved"
    assert "reserved" in f.describe()


def test_level0_block_is_reserved_with_4k():
    t = Tables()
    t.mem[t.root] = leaf(0, 1)  # a "block" at level 0: no 4K level-0 blocks without LPA2
    f = bad(translate(el2(t), t.read, 0x1000, Access.READ), FaultKind.TRANSLATION, 0)
    assert f.steps[0].kind == "reserved"


def test_access_flag_fault():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2, af=False)
    f = bad(translate(el2(t), t.read, 0x4020_0010, Access.READ), FaultKind.ACCESS_FLAG, 2)
    assert f.status_code == 0b001010


def test_el2_write_to_read_only_page():
    t = Tables()
    t.map(0x4020_3000, 0x4020_3000, 3, extra=AP_RO)
    reg = el2(t)
    r = ok(translate(reg, t.read, 0x4020_3008, Access.READ))
    assert r.readable and not r.writable
    f = bad(translate(reg, t.read, 0x4020_3008, Access.WRITE), FaultKind.PERMISSION, 3)
    assert f.status_code == 0b001111
    assert f.is_write and "AP[2]=1" in f.describe()


def test_el2_ignores_ap1_and_pxn():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2, extra=AP_EL0 | PXN)
    r = ok(translate(el2(t), t.read, 0x4020_0000, Access.FETCH))
    assert r.executable and r.writable


def test_el2_fetch_from_xn():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2, extra=XN)
    reg = el2(t)
    assert ok(translate(reg, t.read, 0x4020_0000, Access.READ)).executable is False
    f = bad(translate(reg, t.read, 0x4020_0000, Access.FETCH), FaultKind.PERMISSION, 2)
    assert "XN=1" in f.reason and not f.is_write


def test_wxn_makes_writable_memory_execute_never():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2)  # RW
    t.map(0x4040_0000, 0x4040_0000, 2, extra=AP_RO)  # RO
    reg = el2(t, sctlr=SCTLR_ON | WXN)
    f = bad(translate(reg, t.read, 0x4020_0000, Access.FETCH), FaultKind.PERMISSION, 2)
    assert "WXN" in f.reason
    assert ok(translate(reg, t.read, 0x4040_0000, Access.FETCH)).executable
    # Without WXN the same RW block is executable.
    assert ok(translate(el2(t), t.read, 0x4020_0000, Access.FETCH)).executable


def test_aptable_read_only_from_table():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2, table_bits={1: AP_TABLE_RO})
    reg = el2(t)
    r = ok(translate(reg, t.read, 0x4020_0000, Access.READ))
    assert not r.writable
    f = bad(translate(reg, t.read, 0x4020_0000, Access.WRITE), FaultKind.PERMISSION, 2)
    assert "APTable" in f.reason


def test_xntable_from_table():
    t = Tables()
    t.map(0x4020_3000, 0x4020_3000, 3, table_bits={0: XN_TABLE})
    f = bad(translate(el2(t), t.read, 0x4020_3000, Access.FETCH), FaultKind.PERMISSION, 3)
    assert "XNTable" in f.reason


def test_address_size_fault_on_output():
    t = Tables()
    t.map(0x4020_0000, 0x1_0000_0000, 2)  # OA needs 33 bits
    reg = el2(t, ps_bits=32)
    f = bad(translate(reg, t.read, 0x4020_0000, Access.READ), FaultKind.ADDRESS_SIZE, 2)
    assert f.status_code == 0b000010
    assert ok(translate(el2(t, ps_bits=36), t.read, 0x4020_0000, Access.READ)).pa == 1 << 32


def test_address_size_fault_on_table_address():
    t = Tables(base=0x4008_0000)
    t.map(0x4020_0000, 0x4020_0000, 2)
    # Point the L1 entry's table at 2^40, beyond a 40-bit PS.
    slot = t.slot(0x4020_0000, 1)
    t.mem[slot] = (1 << 40) | 0b11
    f = bad(translate(el2(t, ps_bits=40), t.read, 0x4020_0000, Access.READ),
            FaultKind.ADDRESS_SIZE, 1)
    assert f.steps[-1].kind == "table"


def test_address_size_fault_on_ttbr():
    t = Tables(base=1 << 36)
    t.map(0x4020_0000, 0x4020_0000, 2)
    f = bad(translate(el2(t, ps_bits=36), t.read, 0x4020_0000, Access.READ),
            FaultKind.ADDRESS_SIZE, 0)
    assert f.steps == ()
    assert ok(translate(el2(t, ps_bits=40), t.read, 0x4020_0000, Access.READ)).pa == 0x4020_0000


def test_output_size_capped_by_implemented_pa():
    t = Tables()
    t.map(0x4020_0000, 1 << 40, 2)
    assert ok(translate(el2(t, pa_bits=44), t.read, 0x4020_0000, Access.READ)).pa == 1 << 40
    bad(translate(el2(t, pa_bits=40), t.read, 0x4020_0000, Access.READ),
        FaultKind.ADDRESS_SIZE, 2)


def test_el2_va_beyond_t0sz_is_level0_translation_fault():
    t = Tables(txsz=25)  # 39-bit VA, start level 1
    t.map(0x4020_0000, 0x4020_0000, 2)
    reg = el2(t)
    assert ok(translate(reg, t.read, 0x4020_0000, Access.READ)).steps[0].level == 1
    f = bad(translate(reg, t.read, 1 << 39, Access.READ), FaultKind.TRANSLATION, 0)
    assert f.steps == ()


def test_el2_tbi_ignores_top_byte():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2)
    tagged = 0xAB00_0000_4020_1234
    assert ok(translate(el2(t, tbi=True), t.read, tagged, Access.READ)).pa == 0x4020_1234
    bad(translate(el2(t), t.read, tagged, Access.READ), FaultKind.TRANSLATION, 0)


def test_big_endian_walk_with_sctlr_ee():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2)
    swapped = {pa: int.from_bytes(d.to_bytes(8, "little"), "big") for pa, d in t.mem.items()}
    reg = el2(t, sctlr=SCTLR_ON | EE)
    r = ok(translate(reg, lambda pa: swapped.get(pa, 0), 0x4020_0040, Access.READ))
    assert r.pa == 0x4020_0040


def test_external_abort_on_walk():
    t = Tables()

    def read(pa: int) -> int:
        if pa != t.root:
            raise WalkReadError("unmapped")
        return t.read(pa)

    t.map(0x4020_0000, 0x4020_0000, 2)
    f = translate(el2(t), read, 0x4020_0000, Access.READ)
    f = bad(f, FaultKind.WALK_EXTERNAL_ABORT, 1)
    assert f.status_code == 0b010101


def test_el0_not_allowed_in_el2_regime():
    t = Tables()
    with pytest.raises(ValueError):
        translate(el2(t), t.read, 0, Access.READ, el0=True)


def test_contiguous_and_shareability_recorded():
    t = Tables()
    t.map(0x4020_3000, 0x4020_3000, 3, extra=CONT | NG, sh=0b01)
    r = ok(translate(el2(t), t.read, 0x4020_3000, Access.READ))
    assert r.contiguous and r.shareability == 0b01
    assert not r.not_global  # nG is RES0 in the non-VHE EL2 regime


# --------------------------------------------------------------------------
# 16 KiB and 64 KiB granules
# --------------------------------------------------------------------------

def test_16k_block_and_page():
    t = Tables(granule=16384, txsz=16)  # 48-bit: start level 0 (2-entry table)
    assert t.start == 0
    t.map(0x0000_8000_0200_0000, 0x8200_0000, 2)  # 32 MiB block, via L0 index 1
    t.map(0x4000_4000, 0x9000_8000, 3)  # 16 KiB page
    reg = el2(t)
    b = ok(translate(reg, t.read, 0x0000_8000_0312_3456, Access.READ))
    assert (b.pa, b.level, b.size) == (0x8312_3456, 2, 32 * MiB)
    assert b.steps[0].index == 1
    p = ok(translate(reg, t.read, 0x4000_7FF8, Access.READ))
    assert (p.pa, p.level, p.size) == (0x9000_BFF8, 3, 16 * KiB)
    assert [s.level for s in p.steps] == [0, 1, 2, 3]


def test_16k_level1_block_is_reserved():
    t = Tables(granule=16384, txsz=17)  # start level 1
    t.put(0x10_0000_0000, 1, leaf(0x10_0000_0000, 1))
    f = bad(translate(el2(t), t.read, 0x10_0000_0000, Access.READ), FaultKind.TRANSLATION, 1)
    assert f.steps[0].kind == "reserved"


def test_64k_block_and_page():
    t = Tables(granule=65536, txsz=16)  # start level 1, 64 entries
    assert t.start == 1
    t.map(0x2000_0000, 0x6000_0000, 2)  # 512 MiB block
    t.map(0x0000_0400_0001_0000, 0x4000_0000, 3)  # 64 KiB page, L1 index 1
    reg = el2(t)
    b = ok(translate(reg, t.read, 0x2abc_def0, Access.READ))
    assert (b.pa, b.level, b.size) == (0x6abc_def0, 2, 512 * MiB)
    p = ok(translate(reg, t.read, 0x0000_0400_0001_FFFF, Access.READ))
    assert (p.pa, p.level, p.size) == (0x4000_FFFF, 3, 64 * KiB)
    assert p.steps[0].index == 1 and len(p.steps) == 3


def test_64k_level1_block_is_reserved():
    t = Tables(granule=65536, txsz=16)
    t.put(0, 1, leaf(0, 1))
    f = bad(translate(el2(t), t.read, 0x1234, Access.READ), FaultKind.TRANSLATION, 1)
    assert f.steps[0].kind == "reserved"


# --------------------------------------------------------------------------
# EL1&0: two VA ranges, EL0 permissions
# --------------------------------------------------------------------------

HIGH = 0xFFFF_8000_0000_0000  # start of the 48-bit TTBR1 range


def el10_pair(**tcr_kw) -> tuple[TranslationRegime, Tables, Tables, dict[int, int]]:
    lo = Tables(base=0x4008_0000)
    hi = Tables(base=0x4010_0000)
    mem = {**lo.mem, **hi.mem}
    reg = TranslationRegime(RegimeName.EL10, SCTLR_ON, tcr_el1(**tcr_kw),
                            lo.root | (0x12 << 48), hi.root | (0x34 << 48), mair=MAIR)
    return reg, lo, hi, mem


def _reader(*tables: Tables):
    def read(pa: int) -> int:
        for t in tables:
            if pa in t.mem:
                return t.mem[pa]
        return 0
    return read


def test_el10_ttbr_selection():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_0000, 0x4020_0000, 2)
    hi.map(HIGH + 0x20_0000, 0x4060_0000, 2)
    read = _reader(lo, hi)
    low = ok(translate(reg, read, 0x4020_0010, Access.READ))
    assert (low.pa, low.ttbr_select) == (0x4020_0010, 0)
    high = ok(translate(reg, read, HIGH + 0x20_0010, Access.READ))
    assert (high.pa, high.ttbr_select) == (0x4060_0010, 1)
    assert high.steps[0].table_address == hi.root  # ASID bits of TTBR1 ignored


def test_el10_va_in_hole_faults_at_level0():
    reg, lo, hi, _ = el10_pair()
    read = _reader(lo, hi)
    for va in (0x0001_0000_0000_0000, 0xFFFF_0000_0000_0000 - 0x1000, 0x0080_0000_0000_0000):
        f = bad(translate(reg, read, va, Access.READ), FaultKind.TRANSLATION, 0)
        assert f.ttbr_select is None and f.status_code == 0b000100


def test_el10_epd1_disables_ttbr1_walks():
    reg, lo, hi, _ = el10_pair(epd1=True)
    lo.map(0x4020_0000, 0x4020_0000, 2)
    hi.map(HIGH, 0x4060_0000, 2)
    read = _reader(lo, hi)
    f = bad(translate(reg, read, HIGH, Access.READ), FaultKind.TRANSLATION, 0)
    assert f.ttbr_select == 1 and "EPD1" in f.reason
    assert ok(translate(reg, read, 0x4020_0000, Access.READ)).pa == 0x4020_0000


def test_el10_epd0_disables_ttbr0_walks():
    reg, lo, hi, _ = el10_pair(epd0=True)
    lo.map(0x4020_0000, 0x4020_0000, 2)
    bad(translate(reg, _reader(lo, hi), 0x4020_0000, Access.READ), FaultKind.TRANSLATION, 0)


def test_el10_different_granules_per_range():
    lo = Tables(granule=65536, txsz=22, base=0x4008_0000)  # 42-bit, start level 2
    hi = Tables(granule=16384, txsz=17, base=0x4040_0000)  # 47-bit, start level 1
    reg = TranslationRegime(RegimeName.EL10, SCTLR_ON,
                            tcr_el1(22, 17, g0=65536, g1=16384), lo.root, hi.root, mair=MAIR)
    hva = 0xFFFF_8000_0000_4000  # in the 47-bit upper range (bits[63:47] all ones)
    lo.map(0x1_0000, 0x5000_0000, 3)
    hi.map(hva, 0x7000_0000, 3)
    read = _reader(lo, hi)
    assert ok(translate(reg, read, 0x1_0004, Access.READ)).size == 64 * KiB
    r = ok(translate(reg, read, hva + 4, Access.READ))
    assert (r.pa, r.size) == (0x7000_0004, 16 * KiB)
    assert [s.level for s in r.steps] == [1, 2, 3]
    assert [s.level for s in ok(translate(reg, read, 0x1_0004, Access.READ)).steps] == [2, 3]
    # Bit 47 clear: below the 47-bit upper range, above the 42-bit lower one.
    bad(translate(reg, read, 0xFFFF_7FFF_FFFF_F000, Access.READ), FaultKind.TRANSLATION, 0)
    bad(translate(reg, read, 1 << 42, Access.READ), FaultKind.TRANSLATION, 0)


def test_el0_access_to_privileged_only_page():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_3000, 0x4020_3000, 3)  # AP=00: EL1 RW, EL0 none
    lo.map(0x4020_4000, 0x4020_4000, 3, extra=AP_EL0 | XN)  # AP=01: EL0 RW
    read = _reader(lo, hi)
    r = ok(translate(reg, read, 0x4020_3000, Access.READ))
    assert r.readable and not r.el0_readable
    f = bad(translate(reg, read, 0x4020_3000, Access.READ, el0=True), FaultKind.PERMISSION, 3)
    assert "EL0" in f.reason and f.el0
    u = ok(translate(reg, read, 0x4020_4000, Access.WRITE, el0=True))
    assert u.el0_writable and u.el0_readable


def test_el10_ap_table_removes_el0_access():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_0000, 0x4020_0000, 2, extra=AP_EL0, table_bits={0: AP_TABLE_NO_EL0})
    f = bad(translate(reg, _reader(lo, hi), 0x4020_0000, Access.READ, el0=True),
            FaultKind.PERMISSION, 2)
    assert "APTable[0]" in f.reason


def test_el10_read_only_for_both_els():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_3000, 0x4020_3000, 3, extra=AP_EL0 | AP_RO)
    read = _reader(lo, hi)
    r = ok(translate(reg, read, 0x4020_3000, Access.READ, el0=True))
    assert r.el0_readable and not r.el0_writable and not r.writable
    bad(translate(reg, read, 0x4020_3000, Access.WRITE, el0=True), FaultKind.PERMISSION, 3)
    bad(translate(reg, read, 0x4020_3000, Access.WRITE), FaultKind.PERMISSION, 3)


def test_el10_pxn_uxn():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_3000, 0x4020_3000, 3, extra=AP_EL0 | AP_RO | PXN)
    lo.map(0x4020_4000, 0x4020_4000, 3, extra=AP_EL0 | AP_RO | XN)
    read = _reader(lo, hi)
    f = bad(translate(reg, read, 0x4020_3000, Access.FETCH), FaultKind.PERMISSION, 3)
    assert "PXN" in f.reason
    assert ok(translate(reg, read, 0x4020_3000, Access.FETCH, el0=True)).el0_executable
    f = bad(translate(reg, read, 0x4020_4000, Access.FETCH, el0=True), FaultKind.PERMISSION, 3)
    assert "UXN" in f.reason
    assert ok(translate(reg, read, 0x4020_4000, Access.FETCH)).executable


def test_el10_el0_writable_is_privileged_execute_never():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_3000, 0x4020_3000, 3, extra=AP_EL0)  # EL0 RW, no XN bits
    read = _reader(lo, hi)
    f = bad(translate(reg, read, 0x4020_3000, Access.FETCH), FaultKind.PERMISSION, 3)
    assert "implicit PXN" in f.reason
    assert ok(translate(reg, read, 0x4020_3000, Access.FETCH, el0=True)).el0_executable


def test_el10_pxntable_and_uxntable():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_0000, 0x4020_0000, 2, table_bits={1: PXN_TABLE}, extra=AP_RO | AP_EL0)
    lo.map(0x8020_0000, 0x8020_0000, 2, table_bits={1: XN_TABLE}, extra=AP_RO | AP_EL0)
    read = _reader(lo, hi)
    bad(translate(reg, read, 0x4020_0000, Access.FETCH), FaultKind.PERMISSION, 2)
    assert ok(translate(reg, read, 0x4020_0000, Access.FETCH, el0=True)).el0_executable
    f = bad(translate(reg, read, 0x8020_0000, Access.FETCH, el0=True), FaultKind.PERMISSION, 2)
    assert "UXNTable" in f.reason
    assert ok(translate(reg, read, 0x8020_0000, Access.FETCH)).executable


def test_el10_not_global_recorded():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_3000, 0x4020_3000, 3, extra=NG)
    assert ok(translate(reg, _reader(lo, hi), 0x4020_3000, Access.READ)).not_global


# --------------------------------------------------------------------------
# MMU off
# --------------------------------------------------------------------------

def test_mmu_off_is_identity():
    t = Tables()
    t.map(0x4020_0000, 0x9000_0000, 2)  # must be ignored
    reg = el2(t, sctlr=C | ICACHE)
    assert regime_translation_disabled(reg)
    r = ok(translate(reg, t.read, 0x4020_1234, Access.READ))
    assert r.identity and r.pa == 0x4020_1234 and r.mmu_off
    assert r.steps == () and r.ttbr_select is None
    assert r.memory_attributes == 0x00  # data: Device-nGnRnE
    fetch = ok(translate(reg, t.read, 0x4020_1234, Access.FETCH))
    assert fetch.memory_attributes == 0xAA and fetch.executable  # Normal WT with SCTLR.I
    nc = ok(translate(el2(t, sctlr=0), t.read, 0x4020_1234, Access.FETCH))
    assert nc.memory_attributes == 0x44


def test_mmu_off_beyond_pa_size_is_address_size_fault():
    t = Tables()
    reg = el2(t, sctlr=0, pa_bits=40)
    f = bad(translate(reg, t.read, 1 << 40, Access.FETCH), FaultKind.ADDRESS_SIZE, 0)
    assert f.status_code == 0
    assert ok(translate(reg, t.read, (1 << 40) - 4, Access.FETCH)).identity


def test_mmu_off_el10_gives_el0_access():
    reg, lo, hi, _ = el10_pair()
    reg = TranslationRegime(RegimeName.EL10, 0, reg.tcr, reg.ttbr0, reg.ttbr1)
    r = ok(translate(reg, _reader(lo, hi), 0x1000, Access.WRITE, el0=True))
    assert r.identity and r.el0_writable


def test_identity_property():
    t = Tables()
    t.map(0x4020_0000, 0x4020_0000, 2)
    t.map(0x8020_0000, 0x4020_0000, 2)
    reg = el2(t)
    assert ok(translate(reg, t.read, 0x4020_0ABC, Access.FETCH)).identity
    assert not ok(translate(reg, t.read, 0x8020_0ABC, Access.FETCH)).identity


# --------------------------------------------------------------------------
# status codes and formatting
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind,level,code", [
    (FaultKind.ADDRESS_SIZE, 0, 0b000000), (FaultKind.ADDRESS_SIZE, 3, 0b000011),
    (FaultKind.TRANSLATION, 1, 0b000101), (FaultKind.TRANSLATION, 3, 0b000111),
    (FaultKind.ACCESS_FLAG, 1, 0b001001), (FaultKind.ACCESS_FLAG, 3, 0b001011),
    (FaultKind.PERMISSION, 2, 0b001110), (FaultKind.PERMISSION, 3, 0b001111),
    (FaultKind.WALK_EXTERNAL_ABORT, 0, 0b010100),
])
def test_status_codes(kind, level, code):
    assert Fault(kind, level, 0, Access.READ, ()).status_code == code


def test_fault_describe():
    f = Fault(FaultKind.TRANSLATION, 2, 0, Access.READ, ())
    assert f.describe() == "translation fault, level 2"
    g = Fault(FaultKind.PERMISSION, 3, 0, Access.WRITE, (), reason="why")
    assert g.describe() == "permission fault, level 3 (why)"


def test_format_walk_names_each_level():
    t = Tables()
    t.map(0x0000_0080_4020_0000, 0x4020_0000, 2, attr=ATTR_WB)
    r = ok(translate(el2(t), t.read, 0x0000_0080_4020_0000, Access.READ))
    lines = format_walk(r)
    assert len(lines) == 4
    assert lines[0] == (f"L0 table {t.root:#x}[1] = {t.mem[t.root + 8]:#x} → table "
                        f"{r.steps[1].table_address:#x}")
    assert lines[1].startswith("L1 table ")
    assert lines[2].startswith("L2 block ") and lines[2].endswith("→ 2 MiB block 0x40200000")
    assert lines[3] == "→ PA 0x40200000 (2 MiB block, RWX, attr 2 Normal WB)"


def test_format_walk_fault_and_mmu_off():
    t = Tables()
    t.table_for(0x4020_3000, 3)
    f = translate(el2(t), t.read, 0x4020_3000, Access.READ)
    lines = format_walk(f)
    assert [line.split()[0] for line in lines] == ["L0", "L1", "L2", "L3", "→"]
    assert lines[3].startswith("L3 invalid")
    assert lines[-1] == "→ translation fault, level 3 (invalid descriptor)"
    off = format_walk(translate(el2(t, sctlr=0), t.read, 0x1000, Access.READ))
    assert off == ["MMU off: VA 0x1000 → PA 0x1000 (flat map, Device-nGnRnE)"]


def test_format_walk_el0_permissions():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_3000, 0x4020_3000, 3, extra=AP_EL0 | AP_RO | PXN, attr=ATTR_NC)
    lines = format_walk(translate(reg, _reader(lo, hi), 0x4020_3000, Access.READ))
    assert lines[-1] == "→ PA 0x40203000 (4 KiB page, R--, EL0 R-X, attr 1 Normal NC)"


# --------------------------------------------------------------------------
# regime helpers
# --------------------------------------------------------------------------

# Stage-1 start level by TxSZ: level 3 resolves VA bits below shift+stride (21, 25,
# 29 bits for 4K/16K/64K), each level above `stride` more (Arm ARM D8 tables;
# TxSZ above 39 needs FEAT_TTST).
START_LEVELS = {
    4096: [(16, 24, 0), (25, 33, 1), (34, 42, 2), (43, 48, 3)],
    16384: [(16, 16, 0), (17, 27, 1), (28, 38, 2), (39, 48, 3)],
    65536: [(16, 21, 1), (22, 34, 2), (35, 47, 3)],
}


@pytest.mark.parametrize("granule", sorted(START_LEVELS))
def test_start_levels(granule: int):
    for lo, hi, level in START_LEVELS[granule]:
        for txsz in range(lo, hi + 1):
            reg = TranslationRegime(RegimeName.EL2, M, tcr_el2(txsz, granule), 0,
                                    small_tables=True)
            assert regime_start_level(reg, 0) == level, (granule, txsz)


def test_txsz_clamped_to_legal_range():
    assert txsz_limits(Granule.K4) == (16, 39)
    assert txsz_limits(Granule.K64, small_tables=True) == (16, 47)
    assert txsz_limits(Granule.K16, small_tables=True) == (16, 48)
    low = TranslationRegime(RegimeName.EL2, M, tcr_el2(t0sz=8), 0)
    assert regime_effective_txsz(low, 0) == 16 and regime_input_size(low, 0) == 48
    high = TranslationRegime(RegimeName.EL2, M, tcr_el2(t0sz=63), 0)
    assert regime_effective_txsz(high, 0) == 39 and regime_start_level(high, 0) == 2
    ttst = TranslationRegime(RegimeName.EL2, M, tcr_el2(t0sz=63, granule=65536), 0,
                             small_tables=True)
    assert regime_effective_txsz(ttst, 0) == 47


def test_clamped_txsz_walk_translates():
    t = Tables(txsz=39)  # 25-bit VA, start level 2
    t.map(0x20_0000, 0x4020_0000, 2)
    reg = TranslationRegime(RegimeName.EL2, SCTLR_ON, tcr_el2(t0sz=45), t.root, mair=MAIR)
    r = ok(translate(reg, t.read, 0x20_0004, Access.READ))
    assert r.pa == 0x4020_0004 and r.steps[0].level == 2


def test_granule_decoding_and_reserved():
    reg = TranslationRegime(RegimeName.EL10, M, tcr_el1(g0=16384, g1=65536), 0)
    assert regime_granule(reg, 0) is Granule.K16
    assert regime_granule(reg, 1) is Granule.K64
    reserved = TranslationRegime(RegimeName.EL10, M, 0b11 << 14, 0)  # TG0=11, TG1=00
    assert regime_granule(reserved, 0) is Granule.K4
    assert regime_granule(reserved, 1) is Granule.K4
    with pytest.raises(ValueError):
        regime_granule(TranslationRegime(RegimeName.EL2, M, 0, 0), 1)


def test_regime_va_range():
    reg = TranslationRegime(RegimeName.EL10, M, tcr_el1(t0sz=25, t1sz=16), 0)
    assert regime_va_range(reg, 0x7F_FFFF_FFFF) == 0
    assert regime_va_range(reg, 0x80_0000_0000) is None
    assert regime_va_range(reg, 0xFFFF_0000_0000_0000) == 1
    assert regime_va_range(reg, 0xFFFE_FFFF_FFFF_FFFF) is None
    tbi1 = TranslationRegime(RegimeName.EL10, M, tcr_el1(tbi1=True), 0)
    assert regime_va_range(tbi1, 0x00FF_8000_0000_0000) == 1
    el2_reg = TranslationRegime(RegimeName.EL2, M, tcr_el2(), 0)
    assert regime_va_range(el2_reg, HIGH) is None


def test_output_size_and_asid():
    reg = TranslationRegime(RegimeName.EL10, M, tcr_el1(ips_bits=40), 0x1234 << 48,
                            0xABCD << 48, pa_bits=44)
    assert regime_output_size(reg) == 40
    assert regime_asid(reg) == 0x34  # 8-bit ASID from TTBR0
    assert regime_asid(TranslationRegime(RegimeName.EL10, M, tcr_el1(a1=True, as16=True),
                                         0x1234 << 48, 0xABCD << 48)) == 0xABCD
    capped = TranslationRegime(RegimeName.EL2, M, tcr_el2(ps_bits=48), 0, pa_bits=40)
    assert regime_output_size(capped) == 40
    assert regime_asid(capped) is None


def test_table_base_masks_cnp_asid_and_alignment():
    reg = TranslationRegime(RegimeName.EL10, M, tcr_el1(), (0x55 << 48) | 0x4008_0000 | 1,
                            0x4009_0000 | 0x10)  # 4K, 48-bit: 4 KiB-aligned tables
    assert regime_ttbr(reg, 0) & 1
    assert regime_table_base(reg, 0) == 0x4008_0000
    assert regime_table_base(reg, 1) == 0x4009_0000
    params = regime_walk_params(reg, 0)
    assert (params.start_level, params.input_size, params.granule) == (0, 48, Granule.K4)


# --------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------

BLOCK_TABLES = Tables()
BLOCK_TABLES.map(0x4020_0000, 0x8060_0000, 2)
BLOCK_REGIME = el2(BLOCK_TABLES)


@given(offset=st.integers(0, 2 * MiB - 1), access=st.sampled_from(list(Access)))
def test_any_va_in_2mib_block_maps_to_base_plus_offset(offset: int, access: Access):
    r = ok(translate(BLOCK_REGIME, BLOCK_TABLES.read, 0x4020_0000 + offset, access))
    assert r.pa == 0x8060_0000 + offset
    assert r.output_base == 0x8060_0000 and r.input_base == 0x4020_0000


@given(offset=st.integers(2 * MiB, 1 * GiB - 1))
def test_va_outside_the_block_faults_at_level2(offset: int):
    va = 0x4000_0000 + (0x4020_0000 - 0x4000_0000 + offset) % GiB
    if 0x4020_0000 <= va < 0x4040_0000:
        return
    bad(translate(BLOCK_REGIME, BLOCK_TABLES.read, va, Access.READ), FaultKind.TRANSLATION, 2)


@given(data=st.data(), granule=st.sampled_from([4096, 16384, 65536]))
def test_page_mapping_any_granule_and_txsz(data: st.DataObject, granule: int):
    txsz = data.draw(st.integers(16, 47 if granule == 65536 else 48), label="txsz")
    t = Tables(granule=granule, txsz=txsz)
    va = data.draw(st.integers(0, (1 << t.input) - 1), label="va")
    pa = data.draw(st.integers(0, (1 << 48) // granule - 1), label="pa page") * granule
    t.map(va & ~(granule - 1), pa, 3)
    reg = el2(t, small_tables=True)
    r = ok(translate(reg, t.read, va, Access.READ))
    assert r.pa == pa | (va & (granule - 1))
    assert [s.level for s in r.steps] == list(range(t.start, 4))


# --------------------------------------------------------------------------
# differential test against QEMU's walker inside Unicorn (UC_TLB_CPU mode)
# --------------------------------------------------------------------------
#
# Code runs at EL3 with the MMU off and issues AT S1E2R/W, S1E1R/W and
# S1E0R/W, which walk random EL2 or EL1&0 tables with QEMU's own walker;
# PAR_EL1 is compared with translate().  Set-up facts found here: SCR_EL3 must
# be NS|HCE|RW and HCR_EL2.RW=1, or QEMU treats EL1 as Secure / AArch32.
#
# The QEMU 5 walker inside Unicorn 2.1.4 departs from the architecture in three
# ways, so the generator avoids them: it has no address-size checks, it takes a
# 0b01 descriptor as a block at levels where blocks do not exist, and it ORs a
# block descriptor's RES0 bits below the block size into the output address.

ORACLE_RAM = 0x4000_0000
ORACLE_RAM_SIZE = 0x100_0000
ORACLE_TABLES = 0x4010_0000
ORACLE_PA_BITS = 44  # Unicorn's "max" CPU reports ID_AA64MMFR0_EL1.PARange = 4
ORACLE_MAIR = 0x00 | (0x44 << 8) | (0xFF << 16) | (0x04 << 24) | (0xBB << 32) | (0x4F << 40)
ORACLE_CODE = "\n".join(
    f"at {op}, x0\nisb\nmrs x{n + 1}, par_el1"
    for n, op in enumerate(["s1e2r", "s1e2w", "s1e1r", "s1e1w", "s1e0r", "s1e0w"])
)
ORACLE_QUERIES = {
    RegimeName.EL2: [(0, Access.READ, False), (1, Access.WRITE, False)],
    RegimeName.EL10: [(2, Access.READ, False), (3, Access.WRITE, False), (4, Access.READ, True),
                      (5, Access.WRITE, True)],
}


class _QemuOracle:
    """A Unicorn CPU at EL3 (MMU off) answering AT queries for the EL2 and EL1&0 regimes."""

    def __init__(self) -> None:
        import keystone
        from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
        from unicorn import arm64_const as a64

        from emu.arch.sysregs import sysreg_encoding

        self.a64 = a64
        self.uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        self.uc.ctl_set_cpu_model(a64.UC_CPU_ARM64_MAX)
        self.uc.mem_map(ORACLE_RAM, ORACLE_RAM_SIZE)
        ks = keystone.Ks(keystone.KS_ARCH_ARM64, keystone.KS_MODE_LITTLE_ENDIAN)
        code, _ = ks.asm(ORACLE_CODE)
        self.code = bytes(code)
        self.uc.mem_write(ORACLE_RAM, self.code)

        def key(name: str) -> tuple[int, int, int, int, int]:
            op0, op1, crn, crm, op2 = sysreg_encoding(name)
            return (crn, crm, op0, op1, op2)

        self.key = key
        self.write("SCR_EL3", 0x501)
        self.uc.reg_write(a64.UC_ARM64_REG_PSTATE, 0x3CD)  # EL3h
        self.write("SCR_EL3", 0x501)  # any CP write rebuilds the cached EL flags
        self.write("HCR_EL2", 1 << 31)  # HCR_EL2.RW: EL1 is AArch64
        self.written: list[int] = []

    def write(self, name: str, value: int) -> None:
        self.uc.reg_write(self.a64.UC_ARM64_REG_CP_REG, self.key(name) + (value,))

    def read(self, pa: int) -> int:
        if ORACLE_RAM <= pa < ORACLE_RAM + ORACLE_RAM_SIZE:
            return int.from_bytes(self.uc.mem_read(pa, 8), "little")
        return 0

    def load(self, descriptors: dict[int, int]) -> None:
        for pa in self.written:
            self.uc.mem_write(pa, bytes(8))
        self.written = list(descriptors)
        for pa, desc in descriptors.items():
            self.uc.mem_write(pa, desc.to_bytes(8, "little"))

    def at(self, regime: TranslationRegime, va: int) -> tuple[int, ...]:
        """PAR_EL1 after AT S1E2R, S1E2W, S1E1R, S1E1W, S1E0R, S1E0W of ``va``."""
        a64 = self.a64
        if regime.name is RegimeName.EL2:
            names = ("SCTLR_EL2", "TCR_EL2", "TTBR0_EL2", "MAIR_EL2")
            values: tuple[int, ...] = (regime.sctlr, regime.tcr, regime.ttbr0, regime.mair)
        else:
            names = ("SCTLR_EL1", "TCR_EL1", "TTBR0_EL1", "TTBR1_EL1", "MAIR_EL1")
            values = (regime.sctlr, regime.tcr, regime.ttbr0, regime.ttbr1, regime.mair)
        for name, value in zip(names, values, strict=True):
            self.write(name, value)
        self.uc.reg_write(a64.UC_ARM64_REG_X0, va)
        self.uc.emu_start(ORACLE_RAM, ORACLE_RAM + len(self.code))
        return tuple(self.uc.reg_read(getattr(a64, f"UC_ARM64_REG_X{n}")) for n in range(1, 7))


_ORACLE: list[_QemuOracle] = []


def _oracle() -> _QemuOracle:
    if not _ORACLE:
        _ORACLE.append(_QemuOracle())
    return _ORACLE[0]


def block_ok(granule: int, level: int) -> bool:
    return level in (1, 2) if granule == 4096 else level == 2


_GRANULES = st.sampled_from([4096, 16384, 65536])
_OUTPUT_SIZES = st.sampled_from([32, 36, 40, 42, 44, 48])


@st.composite
def _random_walk(draw: st.DrawFn) -> tuple[TranslationRegime, int, dict[int, int]]:
    """A random EL2 or EL1&0 configuration and one random walk path for a random VA."""
    name = draw(st.sampled_from([RegimeName.EL2, RegimeName.EL10]))
    sctlr = 0x30D00800 | M | (WXN if draw(st.booleans()) else 0)
    ttbrs = [ORACLE_TABLES, ORACLE_TABLES + 0x40_0000]
    ps = draw(_OUTPUT_SIZES)
    if name is RegimeName.EL2:
        granule, txsz, select = draw(_GRANULES), draw(st.integers(16, 39)), 0
        tcr = tcr_el2(txsz, granule, ps, tbi=draw(st.booleans()))
    else:
        g0, g1 = draw(_GRANULES), draw(_GRANULES)
        t0sz, t1sz = draw(st.integers(16, 39)), draw(st.integers(16, 39))
        tcr = tcr_el1(t0sz, t1sz, g0, g1, ps, epd0=draw(st.integers(0, 3)) == 0,
                      epd1=draw(st.integers(0, 3)) == 0, tbi0=draw(st.booleans()),
                      tbi1=draw(st.booleans()))
        select = draw(st.integers(0, 1))
        granule, txsz = (g0, t0sz) if select == 0 else (g1, t1sz)
    t = Tables(granule=granule, txsz=txsz, base=ttbrs[select])
    va = draw(st.integers(0, (1 << t.input) - 1))
    if select:
        va |= ((1 << 64) - 1) & ~((1 << t.input) - 1)
    if draw(st.integers(0, 9)) == 0:
        va ^= 1 << draw(st.integers(t.input, 63))  # sometimes a VA in a hole / tagged
    table = t.root
    descriptors: dict[int, int] = {}
    for level in range(t.start, 4):
        slot = table + 8 * t.index(va, level)
        kinds = ["table", "invalid"] if level < 3 else ["page", "invalid", "reserved"]
        if level < 3 and block_ok(granule, level):
            kinds.append("block")
        weights = {"table": 6, "page": 8, "block": 4, "invalid": 1, "reserved": 1}
        kind = draw(st.sampled_from([k for k in kinds for _ in range(weights[k])]))
        if kind == "table":
            nxt = t.alloc()
            descriptors[slot] = nxt | 0b11 | (draw(st.integers(0, 15)) << 59)
            table = nxt
            continue
        if kind == "invalid":
            descriptors[slot] = draw(st.integers(0, (1 << 63) - 1)) & ~1
        elif kind == "reserved":
            descriptors[slot] = (draw(st.integers(0, (1 << 47) - 1)) << 2) & ~0b10 | 0b01
        else:
            attrs = draw(st.integers(0, (1 << 10) - 1)) << 2  # bits[11:2]
            attrs = attrs & ~(0b111 << 2) | (draw(st.integers(0, 5)) << 2)  # valid MAIR slot
            if draw(st.integers(0, 4)):
                attrs |= AF
            attrs |= draw(st.integers(0, 7)) << 52  # Contiguous, PXN, XN/UXN
            shift = t.lo_bit(level)
            oa = draw(st.integers(0, (1 << (min(ps, ORACLE_PA_BITS) - shift)) - 1)) << shift
            descriptors[slot] = oa | (0b11 if kind == "page" else 0b01) | attrs
        break
    ttbr1 = ttbrs[1] if name is RegimeName.EL10 else 0
    regime = TranslationRegime(name, sctlr, tcr, ttbrs[0], ttbr1, mair=ORACLE_MAIR,
                               pa_bits=ORACLE_PA_BITS)
    return regime, va, descriptors


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_random_walk())
def test_walker_agrees_with_qemu(case: tuple[TranslationRegime, int, dict[int, int]]):
    regime, va, descriptors = case
    oracle = _oracle()
    oracle.load(descriptors)
    pars = oracle.at(regime, va)
    for n, access, el0 in ORACLE_QUERIES[regime.name]:
        par = pars[n]
        mine = translate(regime, oracle.read, va, access, el0=el0)
        what = f"{access.value}{' EL0' if el0 else ''} of {va:#x}: PAR={par:#x}, mine={mine}"
        if par & 1:
            assert isinstance(mine, Fault), what
            assert mine.status_code == (par >> 1) & 0x3F, what
        else:
            assert isinstance(mine, Translation), what
            assert mine.pa >> 12 == (par >> 12) & ((1 << 36) - 1), what
            assert mine.memory_attributes == par >> 56, what


def test_qemu_oracle_sees_faults_and_translations():
    """The oracle itself works: one mapped page, one unmapped VA (guards the harness)."""
    t = Tables(base=ORACLE_TABLES)
    t.map(0x4020_3000, 0x1234_5000, 3, attr=ATTR_NC)
    oracle = _oracle()
    oracle.load(t.mem)
    regime = TranslationRegime(RegimeName.EL2, 0x30C50830 | M, tcr_el2(), t.root, mair=MAIR,
                               pa_bits=ORACLE_PA_BITS)
    par = oracle.at(regime, 0x4020_3abc)[0]
    assert par & 1 == 0 and (par >> 12) & ((1 << 36) - 1) == 0x12345 and par >> 56 == 0x44
    par = oracle.at(regime, 0x4020_4000)[0]
    assert par & 1 and (par >> 1) & 0x3F == 0b000111  # translation fault, level 3


def test_translation_allows_matches_permissions():
    reg, lo, hi, _ = el10_pair()
    lo.map(0x4020_3000, 0x4020_3000, 3, extra=AP_EL0 | AP_RO | PXN)
    r = ok(translate(reg, _reader(lo, hi), 0x4020_3000, Access.READ))
    assert r.allows(Access.READ) and not r.allows(Access.WRITE) and not r.allows(Access.FETCH)
    assert r.allows(Access.FETCH, el0=True) and not r.allows(Access.WRITE, el0=True)
