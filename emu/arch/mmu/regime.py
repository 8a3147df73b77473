"""Stage-1 translation regimes: a register snapshot and the walk parameters it implies.

A :class:`TranslationRegime` is the handful of system registers that control
one stage-1 translation (SCTLR, TCR, TTBRn, MAIR) plus the implemented
physical address size.  The pure helper functions below turn it into the
parameters of a table walk, after the Arm ARM's pseudocode
(AArch64.TranslationTableWalk, AArch64.S1Translate and friends): whether
translation is disabled, which TTBR a VA selects, granule, TxSZ, start level,
output size, TBI and ASID.

Only two regimes are modelled: non-VHE EL2 (a single VA range, TTBR0_EL2,
TCR_EL2's EL2 layout, no ASIDs, no EL0) and EL1&0 (two VA ranges, TTBR0/1_EL1,
TCR_EL1).  No 52-bit addressing (FEAT_LVA/LPA/LPA2): VAs and PAs are at most
48 bits, so TxSZ is at least 16 and TCR PS/IPS = 0b110 behaves as 48 bits.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from emu.arch.fields import GRANULE_TG0, GRANULE_TG1, PARANGE_BITS

MAX_VA_BITS = 48
"""Largest VA size modelled (no FEAT_LVA)."""

MAX_PA_BITS = 48
"""Largest PA size modelled (no FEAT_LPA)."""


class RegimeName(enum.StrEnum):
    """A stage-1 translation regime."""

    EL2 = "EL2"
    EL10 = "EL1&0"


class Granule(enum.IntEnum):
    """A translation granule, valued by its size in bytes."""

    K4 = 4096
    K16 = 16384
    K64 = 65536

    @property
    def shift(self) -> int:
        """log2 of the granule size: the page-offset width (12, 14, 16)."""
        return _GRANULE_SHIFT[self]

    @property
    def stride(self) -> int:
        """VA bits resolved per level: one table holds granule/8 descriptors (9, 11, 13)."""
        return _GRANULE_SHIFT[self] - 3

    @property
    def label(self) -> str:
        """Short name used in reports: "4K", "16K", "64K"."""
        return f"{self // 1024}K"


_GRANULE_SHIFT = {4096: 12, 16384: 14, 65536: 16}


@dataclass(frozen=True)
class TranslationRegime:
    """Register snapshot of one stage-1 translation regime.

    ``small_tables`` says FEAT_TTST is implemented (ID_AA64MMFR2_EL1.ST), which
    raises the largest legal TxSZ from 39 to 48 (47 for 64K); it defaults to an
    Armv8.0 CPU such as the Cortex-A72.
    """

    name: RegimeName
    sctlr: int
    tcr: int
    ttbr0: int
    ttbr1: int = 0  # EL1&0 only
    mair: int = 0
    pa_bits: int = 48  # implemented physical address size (ID_AA64MMFR0_EL1.PARange)
    small_tables: bool = False

    @property
    def mmu_enabled(self) -> bool:
        """SCTLR_ELx.M: stage-1 translation enabled."""
        return bool(self.sctlr & 1)

    @property
    def wxn(self) -> bool:
        """SCTLR_ELx.WXN (bit 19): write permission implies execute-never."""
        return bool((self.sctlr >> 19) & 1)

    @property
    def icache_enabled(self) -> bool:
        """SCTLR_ELx.I (bit 12): instruction fetches cacheable (matters with the MMU off)."""
        return bool((self.sctlr >> 12) & 1)

    @property
    def has_el0(self) -> bool:
        """Whether the regime also serves EL0 (EL1&0 does, non-VHE EL2 does not)."""
        return self.name is RegimeName.EL10


def _bits(value: int, lo: int, width: int) -> int:
    return (value >> lo) & ((1 << width) - 1)


def _check_select(regime: TranslationRegime, select: int) -> None:
    if select == 1 and regime.name is RegimeName.EL2:
        raise ValueError("non-VHE EL2 has a single VA range: there is no TTBR1_EL2")
    if select not in (0, 1):
        raise ValueError(f"TTBR select must be 0 or 1, not {select!r}")


def regime_translation_disabled(regime: TranslationRegime) -> bool:
    """True when stage-1 translation is off (SCTLR_ELx.M == 0): VA is used as PA.

    HCR_EL2.{DC,TGE}, which also disable EL1&0 stage 1, are not modelled.
    """
    return not regime.mmu_enabled


def regime_tbi(regime: TranslationRegime, select: int) -> bool:
    """Top Byte Ignore for a VA range: TCR_EL2.TBI[20]; TCR_EL1.TBI0[37] / TBI1[38]."""
    _check_select(regime, select)
    if regime.name is RegimeName.EL2:
        return bool(_bits(regime.tcr, 20, 1))
    return bool(_bits(regime.tcr, 37 + select, 1))


def regime_addr_top(regime: TranslationRegime, select: int) -> int:
    """AddrTop: the highest VA bit that takes part in translation (55 with TBI, else 63).

    FEAT_PAuth's TBID (which would exclude instruction fetches) is not modelled.
    """
    return 55 if regime_tbi(regime, select) else 63


def regime_granule(regime: TranslationRegime, select: int) -> Granule:
    """Translation granule of a VA range from TCR.TG0[15:14] or TCR_EL1.TG1[31:30].

    The two fields encode sizes differently (TG0: 00=4K 01=64K 10=16K; TG1:
    01=16K 10=4K 11=64K).  A reserved encoding is IMPLEMENTATION DEFINED to
    behave as one of the defined sizes; this model picks 4K, as QEMU does.
    """
    _check_select(regime, select)
    if select == 0:
        size = GRANULE_TG0.get(_bits(regime.tcr, 14, 2), 4096)
    else:
        size = GRANULE_TG1.get(_bits(regime.tcr, 30, 2), 4096)
    return Granule(size)


def regime_txsz(regime: TranslationRegime, select: int) -> int:
    """The raw TxSZ field: TCR.T0SZ[5:0] or TCR_EL1.T1SZ[21:16]."""
    _check_select(regime, select)
    return _bits(regime.tcr, 0 if select == 0 else 16, 6)


def txsz_limits(granule: Granule, small_tables: bool = False) -> tuple[int, int]:
    """Legal (minimum, maximum) TxSZ for a granule.

    Minimum 16 (48-bit VA; 12 only with FEAT_LVA/LPA2, not modelled).  Maximum
    39 on Armv8.0 for every granule; with FEAT_TTST 48 for 4K and 16K and 47
    for 64K (the start level may then be 3).
    """
    if small_tables:
        return 16, 47 if granule is Granule.K64 else 48
    return 16, 39


def regime_effective_txsz(regime: TranslationRegime, select: int) -> int:
    """TxSZ as the walk uses it: the raw field clamped to :func:`txsz_limits`.

    An out-of-range TxSZ is IMPLEMENTATION DEFINED to behave either as the
    nearest legal value or as a level-0 translation fault for every VA
    (Arm ARM, D8 "Input address size configuration").  bootemu clamps, which
    is what the QEMU 5 walker inside Unicorn 2.1 does.
    """
    lo, hi = txsz_limits(regime_granule(regime, select), regime.small_tables)
    return min(max(regime_txsz(regime, select), lo), hi)


def regime_input_size(regime: TranslationRegime, select: int) -> int:
    """Input (VA) size in bits of a range: 64 - effective TxSZ."""
    return 64 - regime_effective_txsz(regime, select)


def level_shift(granule: Granule, level: int) -> int:
    """Lowest VA bit indexed at a lookup level; a block/page there is ``1 << shift`` bytes."""
    return granule.shift + (3 - level) * granule.stride


def start_level(granule: Granule, input_size: int) -> int:
    """First lookup level for a stage-1 walk.

    AArch64.S1StartLevel: each level resolves ``stride`` bits above the page
    offset, so the walk needs ceil((input_size - shift) / stride) levels,
    finishing at level 3.
    """
    levels = -(-(input_size - granule.shift) // granule.stride)
    return 4 - levels


def regime_start_level(regime: TranslationRegime, select: int) -> int:
    """First lookup level of a VA range, from its granule and effective TxSZ."""
    return start_level(regime_granule(regime, select), regime_input_size(regime, select))


def regime_epd(regime: TranslationRegime, select: int) -> bool:
    """TCR_EL1.EPD0[7] / EPD1[23]: walks for that range are disabled (TLB miss → fault).

    The EL2 regime has no EPD field (TCR_EL2 bit 7 is RES0 there).
    """
    _check_select(regime, select)
    if regime.name is RegimeName.EL2:
        return False
    return bool(_bits(regime.tcr, 7 if select == 0 else 23, 1))


def regime_ttbr(regime: TranslationRegime, select: int) -> int:
    """The raw TTBR value for a VA range: TTBR0_ELx or TTBR1_EL1."""
    _check_select(regime, select)
    return regime.ttbr0 if select == 0 else regime.ttbr1


def regime_table_base(regime: TranslationRegime, select: int) -> int:
    """Physical address of the start-level table: TTBR.BADDR aligned to the table size.

    TTBR bits[47:1] hold BADDR (bit 0 is CnP, bits[63:48] the ASID).  The
    start-level table holds 2^(input_size - level_shift(start)) descriptors,
    and BADDR bits below that table's size are RES0; AArch64.TranslationTableWalk
    treats them as zero, so they are masked off here.
    """
    granule = regime_granule(regime, select)
    input_size = regime_input_size(regime, select)
    top_shift = level_shift(granule, start_level(granule, input_size))
    table_bytes = (1 << (input_size - top_shift)) * 8
    baddr = regime_ttbr(regime, select) & ((1 << 48) - 1)
    return baddr & ~(table_bytes - 1)


def regime_output_size(regime: TranslationRegime) -> int:
    """Output address size in bits: TCR_EL2.PS[18:16] or TCR_EL1.IPS[34:32].

    A value above the implemented PA size (including 52-bit codes and the
    reserved 0b111) behaves as the implemented size (D8 "Output address
    size configuration"); sizes above 48 bits are not modelled.
    """
    code = _bits(regime.tcr, 16 if regime.name is RegimeName.EL2 else 32, 3)
    limit = min(regime.pa_bits, MAX_PA_BITS)
    bits = PARANGE_BITS[code] if code < len(PARANGE_BITS) else limit
    return min(bits, limit)


def regime_asid(regime: TranslationRegime) -> int | None:
    """Current ASID of the regime, None for non-VHE EL2 (which has no ASIDs).

    TCR_EL1.A1[22] picks TTBR1_EL1.ASID over TTBR0_EL1.ASID; TCR_EL1.AS[36]
    selects 16-bit ASIDs, otherwise only TTBRn[55:48] are used.
    """
    if regime.name is RegimeName.EL2:
        return None
    ttbr = regime.ttbr1 if _bits(regime.tcr, 22, 1) else regime.ttbr0
    asid = (ttbr >> 48) & 0xFFFF
    return asid if _bits(regime.tcr, 36, 1) else asid & 0xFF


def regime_va_range(regime: TranslationRegime, va: int) -> int | None:
    """Which TTBR translates ``va`` (0 or 1), or None when the VA is in neither range.

    AArch64.GetVARange: for EL1&0, VA bit 55 selects TTBR1; the VA is then in
    range only if bits[AddrTop:input_size] all equal that bit (AddrTop is 55
    under TBI, else 63).  The single-range EL2 regime requires those bits zero.
    A VA outside every range is a level-0 translation fault.
    """
    va &= (1 << 64) - 1
    select = 1 if regime.name is RegimeName.EL10 and (va >> 55) & 1 else 0
    params = regime_walk_params(regime, select)
    top = 55 if params.tbi else 63
    width = top - params.input_size + 1
    high = _bits(va, params.input_size, width)
    return select if high == ((1 << width) - 1 if select else 0) else None


@dataclass(frozen=True)
class WalkParams:
    """Everything a stage-1 walk needs for one VA range, resolved from the registers."""

    select: int
    ttbr: int
    table_base: int
    granule: Granule
    txsz: int  # effective (clamped)
    input_size: int
    start_level: int
    output_size: int
    epd: bool
    tbi: bool
    asid: int | None


@functools.lru_cache(maxsize=256)
def regime_walk_params(regime: TranslationRegime, select: int) -> WalkParams:
    """Resolve the walk parameters of one VA range of ``regime``.

    Cached: a regime snapshot is immutable and the TLB-fill hook walks through
    the same few snapshots over and over.
    """
    granule = regime_granule(regime, select)
    input_size = regime_input_size(regime, select)
    return WalkParams(
        select=select,
        ttbr=regime_ttbr(regime, select),
        table_base=regime_table_base(regime, select),
        granule=granule,
        txsz=regime_effective_txsz(regime, select),
        input_size=input_size,
        start_level=start_level(granule, input_size),
        output_size=regime_output_size(regime),
        epd=regime_epd(regime, select),
        tbi=regime_tbi(regime, select),
        asid=regime_asid(regime),
    )


def regime_for_el(el: int) -> RegimeName:
    """The stage-1 regime that translates at an exception level (non-VHE)."""
    return RegimeName.EL2 if el >= 2 else RegimeName.EL10
