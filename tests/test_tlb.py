"""The architectural TLB model: which TLBI removes which entries."""

from __future__ import annotations

from emu.arch.mmu.tlb import TlbEntry, TlbModel


def entry(regime: str, va: int, asid: int | None = None) -> TlbEntry:
    return TlbEntry(regime=regime, va_page=va, pa_page=va, size=0x1000, select=0, ttbr=0,
                    asid=asid, made_at=0, executable=True, writable=True)


def model() -> TlbModel:
    tlb = TlbModel()
    for item in (entry("EL2", 0x4000_0000), entry("EL2", 0x4000_1000),
                 entry("EL1&0", 0x1000, asid=1), entry("EL1&0", 0x1000 + 0x10_0000, asid=2),
                 entry("EL1&0", 0xFFFF_0000_0000_0000)):
        tlb.insert(item)
    return tlb


def test_invalidate_all_is_per_regime_and_makes_it_known() -> None:
    tlb = model()
    assert not tlb.is_known("EL2")
    assert tlb.apply_tlbi("TLBI ALLE2IS", 0) == 2
    assert tlb.is_known("EL2") and not tlb.is_known("EL1&0")
    assert len(tlb.entries("EL1&0")) == 3
    assert tlb.apply_tlbi("TLBI VMALLE1", 0) == 3


def test_by_va_forms_match_the_va_and_asid() -> None:
    tlb = model()
    assert tlb.apply_tlbi("TLBI VALE2", 0x4000_1000 >> 12) == 1
    assert tlb.apply_tlbi("TLBI VAE1", (2 << 48) | (0x1000 >> 12)) == 0  # other ASID
    assert tlb.apply_tlbi("TLBI VAE1IS", (1 << 48) | (0x1000 >> 12)) == 1
    # A TTBR1 address: VA[55] set in the operand stands for the all-ones top byte.
    assert tlb.apply_tlbi("TLBI VAAE1", (0xFFFF_0000_0000_0000 >> 12) & ((1 << 44) - 1)) == 1


def test_asid_and_stage2_only_forms() -> None:
    tlb = model()
    assert tlb.apply_tlbi("TLBI ASIDE1", 2 << 48) == 1
    assert tlb.apply_tlbi("TLBI IPAS2E1", 0) == 0
    assert tlb.apply_tlbi("TLBI NOSUCH", 0) == 0
    assert len(tlb.entries("EL1&0")) == 2
