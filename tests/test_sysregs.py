"""Tests for emu.arch.sysregs (encodings cross-checked against keystone and GNU as),
emu.arch.fields and the ESR decoder of emu.arch.exceptions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import keystone
import pytest
from elftools.elf.elffile import ELFFile

from emu.arch.exceptions import describe_esr, fault_status_name
from emu.arch.fields import (
    decode_mair,
    decode_sctlr,
    decode_tcr_el1,
    decode_tcr_el2,
    describe_mair,
    describe_sctlr,
    describe_tcr_el1,
    describe_tcr_el2,
    mair_attr_name,
    pa_range_bits,
)
from emu.arch.sysregs import (
    SYS_OPS,
    SYSREGS,
    SysOpKind,
    is_tlbi,
    name_of_cpreg,
    sys_op_encoding,
    sys_op_kind,
    sys_op_name,
    sysreg_encoding,
    sysreg_name,
    tlbi_scope,
)

REQUIRED_SYSREGS = [
    "SCTLR_EL1", "SCTLR_EL2", "ACTLR_EL2", "TCR_EL1", "TCR_EL2", "TTBR0_EL1", "TTBR1_EL1",
    "TTBR0_EL2", "MAIR_EL1", "MAIR_EL2", "AMAIR_EL1", "AMAIR_EL2", "VBAR_EL1", "VBAR_EL2",
    "ESR_EL1", "ESR_EL2", "FAR_EL1", "FAR_EL2", "ELR_EL1", "ELR_EL2", "SPSR_EL1", "SPSR_EL2",
    "HCR_EL2", "SCR_EL3", "CPTR_EL2", "CNTHCTL_EL2", "CNTVOFF_EL2", "CNTFRQ_EL0", "CNTPCT_EL0",
    "CNTVCT_EL0", "VTTBR_EL2", "VTCR_EL2", "PAR_EL1", "CONTEXTIDR_EL1", "TPIDR_EL2",
    "CurrentEL", "DAIF", "SPSel", "MIDR_EL1", "MPIDR_EL1", "ID_AA64MMFR0_EL1",
    "ID_AA64MMFR1_EL1", "ID_AA64PFR0_EL1", "ID_AA64ISAR0_EL1", "CLIDR_EL1", "CTR_EL0",
    "CSSELR_EL1", "CCSIDR_EL1", "SP_EL0", "SP_EL1", "MDCR_EL2", "VPIDR_EL2", "VMPIDR_EL2",
]

REQUIRED_SYS_OPS = [
    "TLBI ALLE2", "TLBI VAE2", "TLBI VALE2", "TLBI ALLE2IS", "TLBI VAE2IS", "TLBI VALE2IS",
    "TLBI VMALLE1", "TLBI VMALLE1IS", "TLBI VAE1", "TLBI VAE1IS", "TLBI VALE1", "TLBI VALE1IS",
    "TLBI ASIDE1", "TLBI ASIDE1IS", "TLBI VAAE1", "TLBI VAALE1", "TLBI ALLE1", "TLBI ALLE1IS",
    "TLBI VMALLS12E1", "TLBI VMALLS12E1IS", "IC IALLU", "IC IALLUIS", "IC IVAU", "DC IVAC",
    "DC ISW", "DC CSW", "DC CISW", "DC CVAC", "DC CVAU", "DC CIVAC", "DC ZVA", "AT S1E2R",
    "AT S1E2W", "AT S1E1R", "AT S1E1W", "AT S1E0R", "AT S1E0W",
]

# Names keystone 0.9.2 does not assemble; they are checked against GNU as below.
KEYSTONE_UNKNOWN = {"ID_AA64MMFR2_EL1", "DC CVAP"}

# SYS operations that take no register operand.
_NO_OPERAND = {"ALLE1", "ALLE1IS", "ALLE2", "ALLE2IS", "ALLE3", "ALLE3IS", "VMALLE1",
               "VMALLE1IS", "VMALLS12E1", "VMALLS12E1IS", "IALLU", "IALLUIS"}


def _sys_asm(name: str) -> str:
    op = name.split()[1]
    return name.lower() + ("" if op in _NO_OPERAND else ", x0")


def _mrs_fields(word: int) -> tuple[int, int, int, int, int]:
    """op0 = 2 + bit19 for MRS/MSR (bit 20 is 1); op1/CRn/CRm/op2 at 18:16, 15:12, 11:8, 7:5."""
    return (2 + ((word >> 19) & 1), (word >> 16) & 7, (word >> 12) & 15, (word >> 8) & 15,
            (word >> 5) & 7)


def _sys_fields(word: int) -> tuple[int, int, int, int]:
    assert (word >> 19) & 0b11 == 0b01, "SYS has op0 = 1 in bits[20:19]"
    return ((word >> 16) & 7, (word >> 12) & 15, (word >> 8) & 15, (word >> 5) & 7)


@pytest.fixture(scope="module")
def ks() -> keystone.Ks:
    return keystone.Ks(keystone.KS_ARCH_ARM64, keystone.KS_MODE_LITTLE_ENDIAN)


def _ks_word(ks: keystone.Ks, text: str) -> int | None:
    try:
        data, _ = ks.asm(text)
    except keystone.KsError:
        return None
    if not data:
        return None
    return int.from_bytes(bytes(data), "little")


def test_required_registers_present():
    names = set(SYSREGS.values())
    missing = [n for n in REQUIRED_SYSREGS if n not in names]
    assert not missing


def test_required_sys_ops_present():
    names = set(SYS_OPS.values())
    assert [n for n in REQUIRED_SYS_OPS if n not in names] == []


def test_table_has_no_duplicate_names():
    assert len(set(SYSREGS.values())) == len(SYSREGS)
    assert len(set(SYS_OPS.values())) == len(SYS_OPS)


def test_sysreg_table_matches_keystone(ks):
    checked = 0
    for encoding, name in SYSREGS.items():
        if name in KEYSTONE_UNKNOWN:
            continue
        # Read-only registers assemble with MRS, write-only (OSLAR_EL1) with MSR.
        word = _ks_word(ks, f"mrs x0, {name}") or _ks_word(ks, f"msr {name}, x0")
        assert word is not None, f"keystone does not know {name}; add it to KEYSTONE_UNKNOWN"
        assert _mrs_fields(word) == encoding, name
        checked += 1
    assert checked >= len(REQUIRED_SYSREGS)


def test_sys_op_table_matches_keystone(ks):
    for encoding, name in SYS_OPS.items():
        if name in KEYSTONE_UNKNOWN:
            continue
        word = _ks_word(ks, _sys_asm(name))
        assert word is not None, name
        assert _sys_fields(word) == encoding, name


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-as") is None, reason="GNU as not installed")
def test_tables_match_gnu_as(tmp_path: Path):
    regs = list(SYSREGS.items())
    ops = list(SYS_OPS.items())
    lines = [f"mrs x0, {name}" if name != "OSLAR_EL1" else f"msr {name}, x0" for _, name in regs]
    lines += [_sys_asm(name) for _, name in ops]
    src = tmp_path / "enc.s"
    src.write_text("\n".join(lines) + "\n")
    obj = tmp_path / "enc.o"
    subprocess.run(["aarch64-linux-gnu-as", "-march=armv8.2-a", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    with obj.open("rb") as fh:
        text = ELFFile(fh).get_section_by_name(".text").data()
    words = [int.from_bytes(text[i:i + 4], "little") for i in range(0, len(text), 4)]
    assert len(words) == len(regs) + len(ops)
    for (encoding, name), word in zip(regs, words[:len(regs)], strict=True):
        assert _mrs_fields(word) == encoding, name
    for (encoding, name), word in zip(ops, words[len(regs):], strict=True):
        assert _sys_fields(word) == encoding, name


def test_sysreg_name_and_fallback():
    assert sysreg_name(3, 4, 1, 0, 0) == "SCTLR_EL2"
    assert sysreg_name(3, 0, 4, 2, 2) == "CurrentEL"
    assert sysreg_name(3, 4, 2, 0, 1) == "S3_4_C2_C0_1"


def test_sysreg_encoding_lookup():
    assert sysreg_encoding("tcr_el2") == (3, 4, 2, 0, 2)
    assert sysreg_encoding("CURRENTEL") == (3, 0, 4, 2, 2)
    assert sysreg_encoding("s3_4_c15_c1_7") == (3, 4, 15, 1, 7)
    for name, enc in ((n, e) for e, n in SYSREGS.items()):
        assert sysreg_encoding(name) == enc
        assert sysreg_name(*enc) == name


@pytest.mark.parametrize("bad", ["NOT_A_REG", "S3_4_C16_C0_0", ""])
def test_sysreg_encoding_rejects_unknown(bad):
    with pytest.raises(ValueError, match="unknown system register"):
        sysreg_encoding(bad)


def test_sys_op_names():
    assert sys_op_name(4, 8, 7, 0) == "TLBI ALLE2"
    assert sys_op_name(0, 7, 5, 0) == "IC IALLU"
    assert sys_op_name(2, 9, 3, 4) == "SYS #2, C9, C3, #4"
    assert sys_op_encoding("tlbi  vae2is") == (4, 8, 3, 1)
    with pytest.raises(ValueError):
        sys_op_encoding("TLBI NOPE")


def test_name_of_cpreg_dispatches_on_op0():
    # Argument order follows Unicorn's CpReg: crn, crm, op0, op1, op2.
    assert name_of_cpreg(1, 0, 3, 4, 0) == "SCTLR_EL2"
    assert name_of_cpreg(8, 7, 1, 0, 0) == "TLBI VMALLE1"
    assert name_of_cpreg(1, 0, 2, 0, 4) == "OSLAR_EL1"


def test_sys_op_kinds():
    for enc, name in SYS_OPS.items():
        family = name.split()[0]
        assert sys_op_kind(*enc) is SysOpKind(family), name
        assert is_tlbi(*enc) == (family == "TLBI")
    assert sys_op_kind(0, 11, 0, 0) is SysOpKind.OTHER


def test_tlbi_scope_el2():
    s = tlbi_scope("TLBI VALE2IS")
    assert (s.regime, s.by_va, s.last_level, s.by_asid, s.everything, s.inner_shareable) == (
        "EL2", True, True, False, False, True)
    s = tlbi_scope("alle2")
    assert s.regime == "EL2" and s.everything and not s.by_va and not s.stage2


def test_tlbi_scope_el1():
    assert tlbi_scope("TLBI VAE1").by_asid
    assert not tlbi_scope("TLBI VAAE1").by_asid
    assert tlbi_scope("TLBI VAALE1").last_level
    aside = tlbi_scope("TLBI ASIDE1IS")
    assert aside.by_asid and not aside.by_va and aside.inner_shareable
    vmall = tlbi_scope("TLBI VMALLE1")
    assert vmall.regime == "EL1&0" and vmall.everything and not vmall.all_vmids
    alle1 = tlbi_scope("TLBI ALLE1IS")
    assert alle1.everything and alle1.all_vmids and alle1.stage2
    s12 = tlbi_scope("TLBI VMALLS12E1")
    assert s12.stage1 and s12.stage2 and not s12.all_vmids
    ipa = tlbi_scope("TLBI IPAS2LE1")
    assert ipa.stage2 and not ipa.stage1 and ipa.last_level


def test_tlbi_scope_covers_every_tlbi_and_rejects_others():
    for name in SYS_OPS.values():
        if name.startswith("TLBI"):
            assert tlbi_scope(name).name == name
    with pytest.raises(ValueError):
        tlbi_scope("IC IALLU")
    with pytest.raises(ValueError):
        tlbi_scope("TLBI BOGUS")


def test_describe_sctlr():
    # Typical value after enabling the MMU at EL2: RES1 bits | M C SA I.
    value = 0x30C50830 | 0x1 | 0x4 | 0x8 | 0x1000
    text = describe_sctlr(value)
    assert text.split()[:4] == ["M", "C", "SA", "I"]
    assert text.endswith("WXN=0 EE=0")
    assert describe_sctlr(0).startswith("M=0")
    assert "WXN=1" in describe_sctlr(1 << 19)
    f = decode_sctlr((1 << 25) | 2)
    assert f.ee and f.a and not f.m


def test_describe_tcr_el2():
    # Xen-style TCR_EL2: T0SZ=16, WBWA inner/outer, inner shareable, 4K, PS=40 bits.
    value = 16 | (1 << 8) | (1 << 10) | (3 << 12) | (0 << 14) | (2 << 16) | (1 << 23) | (1 << 31)
    assert describe_tcr_el2(value) == (
        "T0SZ=16 IRGN0=WBWA ORGN0=WBWA SH0=Inner TG0=4K PS=40-bit TBI=0")
    f = decode_tcr_el2((1 << 14) | (1 << 20))
    assert f.tg0 == 65536 and f.tbi
    assert decode_tcr_el2(2 << 14).tg0 == 16384
    assert decode_tcr_el2(3 << 14).tg0 is None


def test_describe_tcr_el1_tg1_encoding_differs():
    value = 25 | (25 << 16) | (0b10 << 30) | (0b101 << 32) | (1 << 23) | (1 << 36)
    text = describe_tcr_el1(value)
    assert "T0SZ=25 T1SZ=25" in text
    assert "TG0=4K TG1=4K" in text
    assert "EPD1=1" in text and "IPS=48-bit" in text and "AS=16" in text
    assert decode_tcr_el1(0b01 << 30).tg1 == 16384
    assert decode_tcr_el1(0b11 << 30).tg1 == 65536
    assert decode_tcr_el1(0).tg1 is None


def test_mair_names():
    assert mair_attr_name(0x00) == "Device-nGnRnE"
    assert mair_attr_name(0x04) == "Device-nGnRE"
    assert mair_attr_name(0x0C) == "Device-GRE"
    assert mair_attr_name(0x44) == "Normal NC"
    assert mair_attr_name(0xFF) == "Normal WB"
    assert mair_attr_name(0xBB) == "Normal WT"
    assert mair_attr_name(0x4F) == "Normal o:NC i:WB"
    assert mair_attr_name(0x01).startswith("reserved")
    mair = 0x00 | (0x04 << 8) | (0x44 << 16) | (0xFF << 24)
    assert decode_mair(mair)[:4] == (0x00, 0x04, 0x44, 0xFF)
    assert describe_mair(mair).startswith("0:Device-nGnRnE 1:Device-nGnRE 2:Normal NC 3:Normal WB")


@pytest.mark.parametrize("parange,bits", [(0, 32), (1, 36), (2, 40), (3, 42), (4, 44), (5, 48),
                                          (6, 52)])
def test_pa_range_bits(parange, bits):
    assert pa_range_bits(0x1120 | parange) == bits


def test_pa_range_bits_reserved():
    with pytest.raises(ValueError):
        pa_range_bits(0xF)


def test_esr_and_fault_status():
    assert fault_status_name(0b000111) == "translation fault, level 3"
    assert fault_status_name(0b001101) == "permission fault, level 1"
    assert fault_status_name(0b100001) == "alignment fault"
    esr = (0x25 << 26) | (1 << 25) | (1 << 6) | 0b000110
    assert describe_esr(esr) == (
        "EC=0x25 data abort from the same EL, translation fault, level 2, WnR=1")
    assert "imm=0x1" in describe_esr((0x16 << 26) | 1)
