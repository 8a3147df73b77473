"""The architectural TLB model: which TLBI removes which entries."""

from __future__ import annotations

from emu.arch.mmu.tlb import TlbEntry, TlbModel, dsb_completes_stores, dsb_completes_tlbi


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


# -- ASIDs (issue 10 item 4) ----------------------------------------------------

def test_entries_of_two_asids_for_one_va_live_side_by_side() -> None:
    tlb = TlbModel()
    tlb.insert(entry("EL1&0", 0x8000_0000, asid=1))
    tlb.insert(entry("EL1&0", 0x8000_0000, asid=2))
    assert len(tlb.entries("EL1&0")) == 2
    first = tlb.lookup("EL1&0", 0x8000_0123, asid=1)
    assert first is not None and first.asid == 1
    assert tlb.lookup("EL1&0", 0x8000_0000, asid=3) is None  # another ASID's entry: not usable
    tlb.insert(entry("EL1&0", 0x8000_0000))  # a global entry serves every ASID
    global_entry = tlb.lookup("EL1&0", 0x8000_0000, asid=3)
    assert global_entry is not None and global_entry.asid is None


def test_asid_tlbis_reach_only_their_asid_and_by_va_forms_the_global_entries() -> None:
    tlb = TlbModel()
    for asid in (1, 2, None):
        tlb.insert(entry("EL1&0", 0x8000_0000, asid=asid))
    assert tlb.apply_tlbi("TLBI ASIDE1", 1 << 48) == 1  # non-global entries of ASID 1 only
    assert tlb.lookup("EL1&0", 0x8000_0000, asid=1).asid is None  # type: ignore[union-attr]
    # VAE1 with ASID 2: that ASID's entry and the global one (R_XXNPZ, TLBI VAE1).
    assert tlb.apply_tlbi("TLBI VAE1", (2 << 48) | (0x8000_0000 >> 12)) == 2
    assert tlb.entries("EL1&0") == []


def test_live_descriptors_count_only_entries_usable_now() -> None:
    tlb = TlbModel()
    for asid in (1, 2):
        made = TlbEntry(regime="EL1&0", va_page=0x8000_0000, pa_page=0x4000_0000, size=0x1000,
                        select=0, ttbr=0, asid=asid, made_at=0, executable=False,
                        writable=True, descriptors=(0x4010_0000 + 8 * asid,))
        tlb.insert(made)
    live = tlb.entries_by_descriptor(0x4010_0000, {"EL1&0": 2})
    assert list(live) == [0x4010_0010]


# -- DSB completion (issue 10 item 3) ---------------------------------------------

def test_which_dsb_completes_a_tlbi() -> None:
    # D8.17.8: loads and stores (R_PSMWS), and the TLBI's shareability domain.
    assert dsb_completes_tlbi("DSB ISH", "TLBI ALLE2IS")
    assert dsb_completes_tlbi("DSB SY", "TLBI VAE1IS")
    assert not dsb_completes_tlbi("DSB NSH", "TLBI ALLE2IS")
    assert dsb_completes_tlbi("DSB NSH", "TLBI VMALLE1")
    for store_only in ("DSB ISHST", "DSB ST", "DSB NSHST"):
        assert not dsb_completes_tlbi(store_only, "TLBI ALLE2")
    assert not dsb_completes_tlbi("DSB ISHLD", "TLBI ALLE2")


def test_which_dsb_completes_a_table_store() -> None:
    assert dsb_completes_stores("DSB ISHST") and dsb_completes_stores("DSB SY")
    assert not dsb_completes_stores("DSB ISHLD")
    assert not dsb_completes_stores("DMB ISH")
