"""AArch64 system-register and system-instruction encodings and names; TLBI reach.

The MRS/MSR space is addressed by ``(op0, op1, CRn, CRm, op2)``; the SYS space
(TLBI, IC, DC, AT) by ``(op1, CRn, CRm, op2)`` with op0 = 1.  Unicorn's
``UC_HOOK_INSN`` callbacks for MSR, MRS and SYS hand over a CpReg carrying those
fields (op0 as the architecture numbers it: 2 or 3 for MRS/MSR, 1 for SYS), so
:func:`name_of_cpreg` turns a hook argument into a name directly.

Every encoding in the tables below is cross-checked against keystone's
assembler in ``tests/test_sysregs.py``; the few names keystone 0.9.2 does not
know are listed there with the Arm ARM section that fixes them.

The register fields (SCTLR, TCR, MAIR, ID_AA64MMFR0) are decoded in
:mod:`emu.arch.fields`; exception syndromes (ESR) in :mod:`emu.arch.exceptions`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from emu.arch.sysreg_table import EXTRA_SYS_OPS, EXTRA_SYSREG_BY_UPPER

Encoding = tuple[int, int, int, int, int]
"""An MRS/MSR system-register encoding ``(op0, op1, CRn, CRm, op2)``."""

SysOpEncoding = tuple[int, int, int, int]
"""A SYS-instruction encoding ``(op1, CRn, CRm, op2)``; op0 is always 1."""

# --------------------------------------------------------------------------
# System registers (MRS/MSR space, op0 = 2 debug, op0 = 3 everything else)
# --------------------------------------------------------------------------

_SYSREG_LIST: tuple[tuple[str, Encoding], ...] = (
    # Identification (read-only; Arm ARM D17 "AArch64 System Register Descriptions").
    ("MIDR_EL1", (3, 0, 0, 0, 0)),
    ("MPIDR_EL1", (3, 0, 0, 0, 5)),
    ("REVIDR_EL1", (3, 0, 0, 0, 6)),
    ("ID_PFR1_EL1", (3, 0, 0, 1, 1)),
    ("ID_DFR0_EL1", (3, 0, 0, 1, 2)),
    ("ID_AA64PFR0_EL1", (3, 0, 0, 4, 0)),
    ("ID_AA64PFR1_EL1", (3, 0, 0, 4, 1)),
    ("ID_AA64DFR0_EL1", (3, 0, 0, 5, 0)),
    ("ID_AA64ISAR0_EL1", (3, 0, 0, 6, 0)),
    ("ID_AA64ISAR1_EL1", (3, 0, 0, 6, 1)),
    ("ID_AA64MMFR0_EL1", (3, 0, 0, 7, 0)),
    ("ID_AA64MMFR1_EL1", (3, 0, 0, 7, 1)),
    ("ID_AA64MMFR2_EL1", (3, 0, 0, 7, 2)),
    ("CCSIDR_EL1", (3, 1, 0, 0, 0)),
    ("CLIDR_EL1", (3, 1, 0, 0, 1)),
    ("AIDR_EL1", (3, 1, 0, 0, 7)),
    ("CSSELR_EL1", (3, 2, 0, 0, 0)),
    ("CTR_EL0", (3, 3, 0, 0, 1)),
    ("DCZID_EL0", (3, 3, 0, 0, 7)),
    ("VPIDR_EL2", (3, 4, 0, 0, 0)),
    ("VMPIDR_EL2", (3, 4, 0, 0, 5)),
    # System control.
    ("SCTLR_EL1", (3, 0, 1, 0, 0)),
    ("ACTLR_EL1", (3, 0, 1, 0, 1)),
    ("CPACR_EL1", (3, 0, 1, 0, 2)),
    ("SCTLR_EL2", (3, 4, 1, 0, 0)),
    ("ACTLR_EL2", (3, 4, 1, 0, 1)),
    ("HCR_EL2", (3, 4, 1, 1, 0)),
    ("MDCR_EL2", (3, 4, 1, 1, 1)),
    ("CPTR_EL2", (3, 4, 1, 1, 2)),
    ("HSTR_EL2", (3, 4, 1, 1, 3)),
    ("HACR_EL2", (3, 4, 1, 1, 7)),
    ("SCTLR_EL3", (3, 6, 1, 0, 0)),
    ("ACTLR_EL3", (3, 6, 1, 0, 1)),
    ("SCR_EL3", (3, 6, 1, 1, 0)),
    ("CPTR_EL3", (3, 6, 1, 1, 2)),
    ("MDCR_EL3", (3, 6, 1, 3, 1)),
    # Translation (D8: VMSAv8-64).
    ("TTBR0_EL1", (3, 0, 2, 0, 0)),
    ("TTBR1_EL1", (3, 0, 2, 0, 1)),
    ("TCR_EL1", (3, 0, 2, 0, 2)),
    ("TTBR0_EL2", (3, 4, 2, 0, 0)),
    ("TCR_EL2", (3, 4, 2, 0, 2)),
    ("VTTBR_EL2", (3, 4, 2, 1, 0)),
    ("VTCR_EL2", (3, 4, 2, 1, 2)),
    ("TTBR0_EL3", (3, 6, 2, 0, 0)),
    ("TCR_EL3", (3, 6, 2, 0, 2)),
    ("MAIR_EL1", (3, 0, 10, 2, 0)),
    ("AMAIR_EL1", (3, 0, 10, 3, 0)),
    ("MAIR_EL2", (3, 4, 10, 2, 0)),
    ("AMAIR_EL2", (3, 4, 10, 3, 0)),
    ("MAIR_EL3", (3, 6, 10, 2, 0)),
    ("PAR_EL1", (3, 0, 7, 4, 0)),
    ("CONTEXTIDR_EL1", (3, 0, 13, 0, 1)),
    # Exception handling.
    ("SPSR_EL1", (3, 0, 4, 0, 0)),
    ("ELR_EL1", (3, 0, 4, 0, 1)),
    ("SP_EL0", (3, 0, 4, 1, 0)),
    ("SPSel", (3, 0, 4, 2, 0)),
    ("CurrentEL", (3, 0, 4, 2, 2)),
    ("NZCV", (3, 3, 4, 2, 0)),
    ("DAIF", (3, 3, 4, 2, 1)),
    ("FPCR", (3, 3, 4, 4, 0)),
    ("FPSR", (3, 3, 4, 4, 1)),
    ("SPSR_EL2", (3, 4, 4, 0, 0)),
    ("ELR_EL2", (3, 4, 4, 0, 1)),
    ("SP_EL1", (3, 4, 4, 1, 0)),
    ("SPSR_EL3", (3, 6, 4, 0, 0)),
    ("ELR_EL3", (3, 6, 4, 0, 1)),
    ("SP_EL2", (3, 6, 4, 1, 0)),
    ("AFSR0_EL1", (3, 0, 5, 1, 0)),
    ("AFSR1_EL1", (3, 0, 5, 1, 1)),
    ("ESR_EL1", (3, 0, 5, 2, 0)),
    ("AFSR0_EL2", (3, 4, 5, 1, 0)),
    ("AFSR1_EL2", (3, 4, 5, 1, 1)),
    ("ESR_EL2", (3, 4, 5, 2, 0)),
    ("ESR_EL3", (3, 6, 5, 2, 0)),
    ("FAR_EL1", (3, 0, 6, 0, 0)),
    ("FAR_EL2", (3, 4, 6, 0, 0)),
    ("HPFAR_EL2", (3, 4, 6, 0, 4)),
    ("FAR_EL3", (3, 6, 6, 0, 0)),
    ("VBAR_EL1", (3, 0, 12, 0, 0)),
    ("ISR_EL1", (3, 0, 12, 1, 0)),
    ("VBAR_EL2", (3, 4, 12, 0, 0)),
    ("VBAR_EL3", (3, 6, 12, 0, 0)),
    # Thread ID.
    ("TPIDR_EL1", (3, 0, 13, 0, 4)),
    ("TPIDR_EL0", (3, 3, 13, 0, 2)),
    ("TPIDRRO_EL0", (3, 3, 13, 0, 3)),
    ("TPIDR_EL2", (3, 4, 13, 0, 2)),
    ("TPIDR_EL3", (3, 6, 13, 0, 2)),
    # Generic timer (D11).
    ("CNTKCTL_EL1", (3, 0, 14, 1, 0)),
    ("CNTFRQ_EL0", (3, 3, 14, 0, 0)),
    ("CNTPCT_EL0", (3, 3, 14, 0, 1)),
    ("CNTVCT_EL0", (3, 3, 14, 0, 2)),
    ("CNTP_TVAL_EL0", (3, 3, 14, 2, 0)),
    ("CNTP_CTL_EL0", (3, 3, 14, 2, 1)),
    ("CNTP_CVAL_EL0", (3, 3, 14, 2, 2)),
    ("CNTV_TVAL_EL0", (3, 3, 14, 3, 0)),
    ("CNTV_CTL_EL0", (3, 3, 14, 3, 1)),
    ("CNTV_CVAL_EL0", (3, 3, 14, 3, 2)),
    ("CNTVOFF_EL2", (3, 4, 14, 0, 3)),
    ("CNTHCTL_EL2", (3, 4, 14, 1, 0)),
    ("CNTHP_TVAL_EL2", (3, 4, 14, 2, 0)),
    ("CNTHP_CTL_EL2", (3, 4, 14, 2, 1)),
    ("CNTHP_CVAL_EL2", (3, 4, 14, 2, 2)),
    # Performance monitors touched by early boot code.
    ("PMCR_EL0", (3, 3, 9, 12, 0)),
    ("PMUSERENR_EL0", (3, 3, 9, 14, 0)),
    # GICv3 system-register interface enables.
    ("ICC_SRE_EL1", (3, 0, 12, 12, 5)),
    ("ICC_SRE_EL2", (3, 4, 12, 9, 5)),
    ("ICC_SRE_EL3", (3, 6, 12, 12, 5)),
    ("ICH_HCR_EL2", (3, 4, 12, 11, 0)),
    # Debug (op0 = 2).
    ("MDSCR_EL1", (2, 0, 0, 2, 2)),
    ("OSLAR_EL1", (2, 0, 1, 0, 4)),
    ("OSLSR_EL1", (2, 0, 1, 1, 4)),
    ("OSDLR_EL1", (2, 0, 1, 3, 4)),
)

SYSREGS: Mapping[Encoding, str] = {enc: name for name, enc in _SYSREG_LIST}
"""Encoding ``(op0, op1, CRn, CRm, op2)`` → canonical register name."""

_SYSREG_BY_UPPER: Mapping[str, Encoding] = {name.upper(): enc for name, enc in _SYSREG_LIST}

_GENERIC_SYSREG = re.compile(r"^S([0-3])_([0-7])_C(\d{1,2})_C(\d{1,2})_([0-7])$", re.IGNORECASE)


def sysreg_name(op0: int, op1: int, crn: int, crm: int, op2: int) -> str:
    """The canonical name of a system register, or its generic ``S3_4_C2_C0_0`` form."""
    name = SYSREGS.get((op0, op1, crn, crm, op2))
    if name is not None:
        return name
    return f"S{op0}_{op1}_C{crn}_C{crm}_{op2}"


def sysreg_encoding(name: str) -> Encoding:
    """The ``(op0, op1, CRn, CRm, op2)`` of a register name (any case, or ``S3_4_C2_C0_0``).

    Names of the machine's table come first, then the assembler's wider table of
    :mod:`emu.arch.sysreg_table`.  Raises ValueError for a name that is in
    neither table and is not a valid generic form.
    """
    key = name.strip().upper()
    enc = _SYSREG_BY_UPPER.get(key)
    if enc is not None:
        return enc
    extra = EXTRA_SYSREG_BY_UPPER.get(key)
    if extra is not None:
        return extra[0]
    match = _GENERIC_SYSREG.match(name.strip())
    if match:
        op0, op1, crn, crm, op2 = (int(g) for g in match.groups())
        if crn <= 15 and crm <= 15:
            return (op0, op1, crn, crm, op2)
    raise ValueError(
        f"unknown system register {name!r}: not in bootemu's table and not of the "
        "generic form S<op0>_<op1>_C<n>_C<m>_<op2>"
    )


# --------------------------------------------------------------------------
# SYS instructions (op0 = 1): TLBI, IC, DC, AT
# --------------------------------------------------------------------------

_SYS_OP_LIST: tuple[tuple[str, SysOpEncoding], ...] = (
    # TLB maintenance, EL1&0 regime (CRn = 8; CRm 3 = Inner Shareable, 7 = local PE).
    ("TLBI VMALLE1IS", (0, 8, 3, 0)),
    ("TLBI VAE1IS", (0, 8, 3, 1)),
    ("TLBI ASIDE1IS", (0, 8, 3, 2)),
    ("TLBI VAAE1IS", (0, 8, 3, 3)),
    ("TLBI VALE1IS", (0, 8, 3, 5)),
    ("TLBI VAALE1IS", (0, 8, 3, 7)),
    ("TLBI VMALLE1", (0, 8, 7, 0)),
    ("TLBI VAE1", (0, 8, 7, 1)),
    ("TLBI ASIDE1", (0, 8, 7, 2)),
    ("TLBI VAAE1", (0, 8, 7, 3)),
    ("TLBI VALE1", (0, 8, 7, 5)),
    ("TLBI VAALE1", (0, 8, 7, 7)),
    # TLB maintenance issued from EL2 (op1 = 4): EL2 regime, stage 2 and all-of-EL1.
    ("TLBI IPAS2E1IS", (4, 8, 0, 1)),
    ("TLBI IPAS2LE1IS", (4, 8, 0, 5)),
    ("TLBI ALLE2IS", (4, 8, 3, 0)),
    ("TLBI VAE2IS", (4, 8, 3, 1)),
    ("TLBI ALLE1IS", (4, 8, 3, 4)),
    ("TLBI VALE2IS", (4, 8, 3, 5)),
    ("TLBI VMALLS12E1IS", (4, 8, 3, 6)),
    ("TLBI IPAS2E1", (4, 8, 4, 1)),
    ("TLBI IPAS2LE1", (4, 8, 4, 5)),
    ("TLBI ALLE2", (4, 8, 7, 0)),
    ("TLBI VAE2", (4, 8, 7, 1)),
    ("TLBI ALLE1", (4, 8, 7, 4)),
    ("TLBI VALE2", (4, 8, 7, 5)),
    ("TLBI VMALLS12E1", (4, 8, 7, 6)),
    # TLB maintenance issued from EL3 (op1 = 6).
    ("TLBI ALLE3IS", (6, 8, 3, 0)),
    ("TLBI VAE3IS", (6, 8, 3, 1)),
    ("TLBI VALE3IS", (6, 8, 3, 5)),
    ("TLBI ALLE3", (6, 8, 7, 0)),
    ("TLBI VAE3", (6, 8, 7, 1)),
    ("TLBI VALE3", (6, 8, 7, 5)),
    # Instruction-cache maintenance (CRn = 7).
    ("IC IALLUIS", (0, 7, 1, 0)),
    ("IC IALLU", (0, 7, 5, 0)),
    ("IC IVAU", (3, 7, 5, 1)),
    # Data-cache maintenance.
    ("DC IVAC", (0, 7, 6, 1)),
    ("DC ISW", (0, 7, 6, 2)),
    ("DC CSW", (0, 7, 10, 2)),
    ("DC CISW", (0, 7, 14, 2)),
    ("DC ZVA", (3, 7, 4, 1)),
    ("DC CVAC", (3, 7, 10, 1)),
    ("DC CVAU", (3, 7, 11, 1)),
    ("DC CVAP", (3, 7, 12, 1)),
    ("DC CIVAC", (3, 7, 14, 1)),
    # Address translation (CRn = 7, CRm = 8).
    ("AT S1E1R", (0, 7, 8, 0)),
    ("AT S1E1W", (0, 7, 8, 1)),
    ("AT S1E0R", (0, 7, 8, 2)),
    ("AT S1E0W", (0, 7, 8, 3)),
    ("AT S1E2R", (4, 7, 8, 0)),
    ("AT S1E2W", (4, 7, 8, 1)),
    ("AT S12E1R", (4, 7, 8, 4)),
    ("AT S12E1W", (4, 7, 8, 5)),
    ("AT S12E0R", (4, 7, 8, 6)),
    ("AT S12E0W", (4, 7, 8, 7)),
    ("AT S1E3R", (6, 7, 8, 0)),
    ("AT S1E3W", (6, 7, 8, 1)),
)

SYS_OPS: Mapping[SysOpEncoding, str] = {enc: name for name, enc in _SYS_OP_LIST}
"""SYS encoding ``(op1, CRn, CRm, op2)`` → name such as ``"TLBI VAE2IS"``."""

_SYS_OP_BY_UPPER: Mapping[str, SysOpEncoding] = {
    " ".join(name.split()): enc for name, enc in _SYS_OP_LIST
}
# What the assembler also accepts (emu.arch.sysreg_table): outer-shareable and
# range TLBIs, MTE and persistence DC operations, ...  The machine's names,
# TLBI scopes and SYS_OPS stay those of the table above.
_ANY_SYS_OP_BY_UPPER: Mapping[str, SysOpEncoding] = {
    **{name: enc for name, enc in EXTRA_SYS_OPS}, **_SYS_OP_BY_UPPER
}


def sys_op_name(op1: int, crn: int, crm: int, op2: int) -> str:
    """The name of a SYS operation (``"TLBI ALLE2"``) or its generic ``SYS`` form."""
    name = SYS_OPS.get((op1, crn, crm, op2))
    if name is not None:
        return name
    return f"SYS #{op1}, C{crn}, C{crm}, #{op2}"


def sys_op_encoding(name: str) -> SysOpEncoding:
    """The ``(op1, CRn, CRm, op2)`` of a SYS operation name such as ``"tlbi vae2is"``.

    Knows the names of both tables (this module's and :mod:`emu.arch.sysreg_table`).
    """
    key = " ".join(name.upper().split())
    enc = _ANY_SYS_OP_BY_UPPER.get(key)
    if enc is None:
        raise ValueError(f"unknown SYS operation {name!r}")
    return enc


def name_of_cpreg(crn: int, crm: int, op0: int, op1: int, op2: int) -> str:
    """Name for the fields of a Unicorn CpReg (argument order as in ``uc_arm64_cp_reg``).

    op0 = 1 is the SYS space (TLBI/IC/DC/AT), anything else a system register.
    """
    if op0 == 1:
        return sys_op_name(op1, crn, crm, op2)
    return sysreg_name(op0, op1, crn, crm, op2)


class SysOpKind(enum.StrEnum):
    """Which family a SYS-space operation belongs to."""

    TLBI = "TLBI"
    IC = "IC"
    DC = "DC"
    AT = "AT"
    OTHER = "SYS"


def sys_op_kind(op1: int, crn: int, crm: int, op2: int) -> SysOpKind:
    """Classify a SYS encoding: CRn = 8 is TLB maintenance; CRn = 7 splits by CRm."""
    if crn == 8:
        return SysOpKind.TLBI
    if crn == 7:
        if crm in (1, 5):
            return SysOpKind.IC
        if crm in (8, 9):
            return SysOpKind.AT
        if crm in (4, 6, 10, 11, 12, 13, 14):
            return SysOpKind.DC
    return SysOpKind.OTHER


def is_tlbi(op1: int, crn: int, crm: int, op2: int) -> bool:
    """True when the SYS encoding is a TLB maintenance instruction (CRn = 8)."""
    return sys_op_kind(op1, crn, crm, op2) is SysOpKind.TLBI


@dataclass(frozen=True)
class TlbiScope:
    """Which TLB entries a TLBI operation invalidates.

    ``regime`` is "EL2", "EL1&0" or "EL3".  ``by_va`` ops take a VA in Xt (and,
    for EL1&0 non-VAA forms, an ASID in Xt[63:48]); ``last_level`` ops need only
    remove entries from the final level of the walk; ``by_asid`` ops leave
    entries of other ASIDs alone (global entries still match a by-VA op);
    ``everything`` ops drop all stage-1 entries of the regime.  ``stage2`` says
    stage-2 (IPA → PA) entries are covered too and ``stage1`` whether stage-1
    entries are.  ``all_vmids`` ops ignore the current VMID.
    """

    name: str
    regime: str
    by_va: bool = False
    last_level: bool = False
    by_asid: bool = False
    everything: bool = False
    inner_shareable: bool = False
    stage1: bool = True
    stage2: bool = False
    all_vmids: bool = False


def tlbi_scope(name: str) -> TlbiScope:
    """Describe the reach of a TLBI operation given by name (``"TLBI VAE2IS"`` or ``"vae2is"``).

    Raises ValueError for a name that is not a known TLBI operation.
    """
    key = " ".join(name.upper().split())
    if not key.startswith("TLBI "):
        key = "TLBI " + key
    if key not in _SYS_OP_BY_UPPER:
        raise ValueError(f"unknown TLBI operation {name!r}")
    op = key.removeprefix("TLBI ")
    shareable = op.endswith("IS")
    base = op.removesuffix("IS")
    regime = {"E1": "EL1&0", "E2": "EL2", "E3": "EL3"}[base[-2:]]
    stem = base[:-2]
    if stem == "ALL":
        # ALLE1 drops every EL1&0 entry for every VMID (stage 1 and 2); ALLE2/3 the whole regime.
        both = regime == "EL1&0"
        return TlbiScope(key, regime, everything=True, inner_shareable=shareable,
                         stage2=both, all_vmids=both)
    if stem == "VMALL":
        # VMALLE1: all stage-1 entries of the current VMID, any ASID.
        return TlbiScope(key, regime, everything=True, inner_shareable=shareable)
    if stem == "VMALLS12":
        return TlbiScope(key, regime, everything=True, inner_shareable=shareable, stage2=True)
    if stem == "ASID":
        return TlbiScope(key, regime, by_asid=True, inner_shareable=shareable)
    if stem in ("IPAS2", "IPAS2L"):
        # By IPA, stage 2 only: stage-1 entries stay (the ARM ARM requires a
        # following VMALLE1 to remove combined entries).
        return TlbiScope(key, regime, by_va=True, last_level=stem == "IPAS2L",
                         inner_shareable=shareable, stage1=False, stage2=True)
    last_level = stem.endswith("L")
    va_stem = stem.removesuffix("L")
    # VAE1/VALE1 match the ASID in Xt[63:48]; VAAE1/VAALE1 and the EL2/EL3 forms
    # (regimes without ASIDs) match any.
    by_asid = va_stem == "VA" and regime == "EL1&0"
    return TlbiScope(key, regime, by_va=True, last_level=last_level, by_asid=by_asid,
                     inner_shareable=shareable)
