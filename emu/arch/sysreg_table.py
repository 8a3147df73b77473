"""System registers and SYS operations the assembler knows beyond :mod:`emu.arch.sysregs`.

:mod:`emu.arch.sysregs` holds the registers bootemu's machine models and names
(every one of them known to keystone 0.9.2).  This table adds the names of
later architecture versions (Armv8.1 to Armv9.3) that boot code writes and
keystone does not know, so that ``mrs``/``msr`` and ``tlbi``/``dc``/``at``/
``cfp``/``cpp``/``dvp`` assemble by name as GNU as 2.40 assembles them.

Encodings are ``(op0, op1, CRn, CRm, op2)`` from the Arm ARM (DDI 0487, chapter
D19 "AArch64 System Register Descriptions" and C5.3 / C5.5 for the SYS
operations); ``tests/test_assembler_gnu.py::test_system_forms_equal_gnu``
assembles every entry with GNU as 2.40 and compares the words.

Access: ``"rw"``, ``"r"`` (read-only: MRS only) or ``"w"`` (write-only: MSR
only), as GNU as 2.40 checks it (it warns on the other direction).
"""

from __future__ import annotations

from collections.abc import Mapping

Encoding = tuple[int, int, int, int, int]
SysOpEncoding = tuple[int, int, int, int]

__all__ = ["EXTRA_SYSREGS", "EXTRA_SYS_OPS", "SYS_OP_NO_REGISTER", "SysregEntry"]

SysregEntry = tuple[str, Encoding, str]


_FIXED: tuple[SysregEntry, ...] = (
    # Identification (D19.2), read-only.
    ("ID_PFR0_EL1", (3, 0, 0, 1, 0), "r"),
    ("ID_AFR0_EL1", (3, 0, 0, 1, 3), "r"),
    ("ID_MMFR0_EL1", (3, 0, 0, 1, 4), "r"),
    ("ID_MMFR1_EL1", (3, 0, 0, 1, 5), "r"),
    ("ID_MMFR2_EL1", (3, 0, 0, 1, 6), "r"),
    ("ID_MMFR3_EL1", (3, 0, 0, 1, 7), "r"),
    ("ID_ISAR0_EL1", (3, 0, 0, 2, 0), "r"),
    ("ID_ISAR1_EL1", (3, 0, 0, 2, 1), "r"),
    ("ID_ISAR2_EL1", (3, 0, 0, 2, 2), "r"),
    ("ID_ISAR3_EL1", (3, 0, 0, 2, 3), "r"),
    ("ID_ISAR4_EL1", (3, 0, 0, 2, 4), "r"),
    ("ID_ISAR5_EL1", (3, 0, 0, 2, 5), "r"),
    ("ID_MMFR4_EL1", (3, 0, 0, 2, 6), "r"),
    ("ID_ISAR6_EL1", (3, 0, 0, 2, 7), "r"),
    ("MVFR0_EL1", (3, 0, 0, 3, 0), "r"),
    ("MVFR1_EL1", (3, 0, 0, 3, 1), "r"),
    ("MVFR2_EL1", (3, 0, 0, 3, 2), "r"),
    ("ID_PFR2_EL1", (3, 0, 0, 3, 4), "r"),
    ("ID_DFR1_EL1", (3, 0, 0, 3, 5), "r"),
    ("ID_MMFR5_EL1", (3, 0, 0, 3, 6), "r"),
    ("ID_AA64ZFR0_EL1", (3, 0, 0, 4, 4), "r"),
    ("ID_AA64SMFR0_EL1", (3, 0, 0, 4, 5), "r"),
    ("ID_AA64DFR1_EL1", (3, 0, 0, 5, 1), "r"),
    ("ID_AA64AFR0_EL1", (3, 0, 0, 5, 4), "r"),
    ("ID_AA64AFR1_EL1", (3, 0, 0, 5, 5), "r"),
    ("ID_AA64ISAR2_EL1", (3, 0, 0, 6, 2), "r"),
    ("CCSIDR2_EL1", (3, 1, 0, 0, 2), "r"),
    ("GMID_EL1", (3, 1, 0, 0, 4), "r"),
    ("SMIDR_EL1", (3, 1, 0, 0, 6), "r"),
    ("RVBAR_EL1", (3, 0, 12, 0, 1), "r"),
    ("RVBAR_EL2", (3, 4, 12, 0, 1), "r"),
    ("RVBAR_EL3", (3, 6, 12, 0, 1), "r"),
    ("RMR_EL1", (3, 0, 12, 0, 2), "rw"),
    ("RMR_EL2", (3, 4, 12, 0, 2), "rw"),
    ("RMR_EL3", (3, 6, 12, 0, 2), "rw"),
    # System control, EL2 extensions (HCRX, fine-grained traps), VNCR.
    ("HCRX_EL2", (3, 4, 1, 2, 2), "rw"),
    ("HFGRTR_EL2", (3, 4, 1, 1, 4), "rw"),
    ("HFGWTR_EL2", (3, 4, 1, 1, 5), "rw"),
    ("HFGITR_EL2", (3, 4, 1, 1, 6), "rw"),
    ("HDFGRTR_EL2", (3, 4, 3, 1, 4), "rw"),
    ("HDFGWTR_EL2", (3, 4, 3, 1, 5), "rw"),
    ("HAFGRTR_EL2", (3, 4, 3, 1, 6), "rw"),
    ("VNCR_EL2", (3, 4, 2, 2, 0), "rw"),
    ("SDER32_EL2", (3, 4, 1, 3, 1), "rw"),
    ("SDER32_EL3", (3, 6, 1, 1, 1), "rw"),
    ("TTBR1_EL2", (3, 4, 2, 0, 1), "rw"),
    ("VSTTBR_EL2", (3, 4, 2, 6, 0), "rw"),
    ("VSTCR_EL2", (3, 4, 2, 6, 2), "rw"),
    ("CONTEXTIDR_EL2", (3, 4, 13, 0, 1), "rw"),
    ("AMAIR_EL3", (3, 6, 10, 3, 0), "rw"),
    ("AFSR0_EL3", (3, 6, 5, 1, 0), "rw"),
    ("AFSR1_EL3", (3, 6, 5, 1, 1), "rw"),
    ("DACR32_EL2", (3, 4, 3, 0, 0), "rw"),
    ("IFSR32_EL2", (3, 4, 5, 0, 1), "rw"),
    ("FPEXC32_EL2", (3, 4, 5, 3, 0), "rw"),
    ("SPSR_IRQ", (3, 4, 4, 3, 0), "rw"),
    ("SPSR_ABT", (3, 4, 4, 3, 1), "rw"),
    ("SPSR_UND", (3, 4, 4, 3, 2), "rw"),
    ("SPSR_FIQ", (3, 4, 4, 3, 3), "rw"),
    ("DSPSR_EL0", (3, 3, 4, 5, 0), "rw"),
    ("DLR_EL0", (3, 3, 4, 5, 1), "rw"),
    # PSTATE fields as registers (MRS/MSR register form).
    ("PAN", (3, 0, 4, 2, 3), "rw"),
    ("UAO", (3, 0, 4, 2, 4), "rw"),
    ("ALLINT", (3, 0, 4, 3, 0), "rw"),
    ("SVCR", (3, 3, 4, 2, 2), "rw"),
    ("DIT", (3, 3, 4, 2, 5), "rw"),
    ("SSBS", (3, 3, 4, 2, 6), "rw"),
    ("TCO", (3, 3, 4, 2, 7), "rw"),
    # SVE and SME controls.
    ("ZCR_EL1", (3, 0, 1, 2, 0), "rw"),
    ("ZCR_EL2", (3, 4, 1, 2, 0), "rw"),
    ("ZCR_EL12", (3, 5, 1, 2, 0), "rw"),
    ("ZCR_EL3", (3, 6, 1, 2, 0), "rw"),
    ("SMPRI_EL1", (3, 0, 1, 2, 4), "rw"),
    ("SMPRIMAP_EL2", (3, 4, 1, 2, 5), "rw"),
    ("SMCR_EL1", (3, 0, 1, 2, 6), "rw"),
    ("SMCR_EL2", (3, 4, 1, 2, 6), "rw"),
    ("SMCR_EL12", (3, 5, 1, 2, 6), "rw"),
    ("SMCR_EL3", (3, 6, 1, 2, 6), "rw"),
    ("TPIDR2_EL0", (3, 3, 13, 0, 5), "rw"),
    # Random numbers (FEAT_RNG), read-only.
    ("RNDR", (3, 3, 2, 4, 0), "r"),
    ("RNDRRS", (3, 3, 2, 4, 1), "r"),
    # Self-synchronised counters (FEAT_ECV) and the physical offset.
    ("CNTPCTSS_EL0", (3, 3, 14, 0, 5), "r"),
    ("CNTVCTSS_EL0", (3, 3, 14, 0, 6), "r"),
    ("CNTPOFF_EL2", (3, 4, 14, 0, 6), "rw"),
    # More generic-timer registers (EL2 virtual/secure timers, EL1 secure timer).
    ("CNTHV_TVAL_EL2", (3, 4, 14, 3, 0), "rw"),
    ("CNTHV_CTL_EL2", (3, 4, 14, 3, 1), "rw"),
    ("CNTHV_CVAL_EL2", (3, 4, 14, 3, 2), "rw"),
    ("CNTHVS_TVAL_EL2", (3, 4, 14, 4, 0), "rw"),
    ("CNTHVS_CTL_EL2", (3, 4, 14, 4, 1), "rw"),
    ("CNTHVS_CVAL_EL2", (3, 4, 14, 4, 2), "rw"),
    ("CNTHPS_TVAL_EL2", (3, 4, 14, 5, 0), "rw"),
    ("CNTHPS_CTL_EL2", (3, 4, 14, 5, 1), "rw"),
    ("CNTHPS_CVAL_EL2", (3, 4, 14, 5, 2), "rw"),
    ("CNTPS_TVAL_EL1", (3, 7, 14, 2, 0), "rw"),
    ("CNTPS_CTL_EL1", (3, 7, 14, 2, 1), "rw"),
    ("CNTPS_CVAL_EL1", (3, 7, 14, 2, 2), "rw"),
    # Memory tagging (FEAT_MTE).
    ("RGSR_EL1", (3, 0, 1, 0, 5), "rw"),
    ("GCR_EL1", (3, 0, 1, 0, 6), "rw"),
    ("TFSR_EL1", (3, 0, 5, 6, 0), "rw"),
    ("TFSRE0_EL1", (3, 0, 5, 6, 1), "rw"),
    ("TFSR_EL2", (3, 4, 5, 6, 0), "rw"),
    ("TFSR_EL12", (3, 5, 5, 6, 0), "rw"),
    ("TFSR_EL3", (3, 6, 5, 6, 0), "rw"),
    # Software context numbers (FEAT_CSV2).
    ("SCXTNUM_EL0", (3, 3, 13, 0, 7), "rw"),
    ("SCXTNUM_EL1", (3, 0, 13, 0, 7), "rw"),
    ("SCXTNUM_EL2", (3, 4, 13, 0, 7), "rw"),
    ("SCXTNUM_EL12", (3, 5, 13, 0, 7), "rw"),
    ("SCXTNUM_EL3", (3, 6, 13, 0, 7), "rw"),
    # Pointer authentication keys (FEAT_PAuth).
    ("APIAKEYLO_EL1", (3, 0, 2, 1, 0), "rw"),
    ("APIAKEYHI_EL1", (3, 0, 2, 1, 1), "rw"),
    ("APIBKEYLO_EL1", (3, 0, 2, 1, 2), "rw"),
    ("APIBKEYHI_EL1", (3, 0, 2, 1, 3), "rw"),
    ("APDAKEYLO_EL1", (3, 0, 2, 2, 0), "rw"),
    ("APDAKEYHI_EL1", (3, 0, 2, 2, 1), "rw"),
    ("APDBKEYLO_EL1", (3, 0, 2, 2, 2), "rw"),
    ("APDBKEYHI_EL1", (3, 0, 2, 2, 3), "rw"),
    ("APGAKEYLO_EL1", (3, 0, 2, 3, 0), "rw"),
    ("APGAKEYHI_EL1", (3, 0, 2, 3, 1), "rw"),
    # LS64 accelerator data.
    ("ACCDATA_EL1", (3, 0, 13, 0, 5), "rw"),
    # MPAM.
    ("MPAM1_EL1", (3, 0, 10, 5, 0), "rw"),
    ("MPAM0_EL1", (3, 0, 10, 5, 1), "rw"),
    ("MPAM1_EL12", (3, 5, 10, 5, 0), "rw"),
    ("MPAM2_EL2", (3, 4, 10, 5, 0), "rw"),
    ("MPAM3_EL3", (3, 6, 10, 5, 0), "rw"),
    ("MPAMHCR_EL2", (3, 4, 10, 4, 0), "rw"),
    ("MPAMVPMV_EL2", (3, 4, 10, 4, 1), "rw"),
    ("MPAMIDR_EL1", (3, 0, 10, 4, 4), "r"),
    # Limited ordering regions (FEAT_LOR).
    ("LORSA_EL1", (3, 0, 10, 4, 0), "rw"),
    ("LOREA_EL1", (3, 0, 10, 4, 1), "rw"),
    ("LORN_EL1", (3, 0, 10, 4, 2), "rw"),
    ("LORC_EL1", (3, 0, 10, 4, 3), "rw"),
    ("LORID_EL1", (3, 0, 10, 4, 7), "r"),
    # RAS (FEAT_RAS).
    ("ERRIDR_EL1", (3, 0, 5, 3, 0), "r"),
    ("ERRSELR_EL1", (3, 0, 5, 3, 1), "rw"),
    ("ERXFR_EL1", (3, 0, 5, 4, 0), "r"),
    ("ERXCTLR_EL1", (3, 0, 5, 4, 1), "rw"),
    ("ERXSTATUS_EL1", (3, 0, 5, 4, 2), "rw"),
    ("ERXADDR_EL1", (3, 0, 5, 4, 3), "rw"),
    ("ERXPFGF_EL1", (3, 0, 5, 4, 4), "r"),
    ("ERXPFGCTL_EL1", (3, 0, 5, 4, 5), "rw"),
    ("ERXPFGCDN_EL1", (3, 0, 5, 4, 6), "rw"),
    ("ERXMISC0_EL1", (3, 0, 5, 5, 0), "rw"),
    ("ERXMISC1_EL1", (3, 0, 5, 5, 1), "rw"),
    ("ERXMISC2_EL1", (3, 0, 5, 5, 2), "rw"),
    ("ERXMISC3_EL1", (3, 0, 5, 5, 3), "rw"),
    ("DISR_EL1", (3, 0, 12, 1, 1), "rw"),
    ("VDISR_EL2", (3, 4, 12, 1, 1), "rw"),
    ("VSESR_EL2", (3, 4, 5, 2, 3), "rw"),
    # VHE: EL1 registers reached from EL2 with E2H set (_EL12 / _EL02).
    ("SCTLR_EL12", (3, 5, 1, 0, 0), "rw"),
    ("CPACR_EL12", (3, 5, 1, 0, 2), "rw"),
    ("TTBR0_EL12", (3, 5, 2, 0, 0), "rw"),
    ("TTBR1_EL12", (3, 5, 2, 0, 1), "rw"),
    ("TCR_EL12", (3, 5, 2, 0, 2), "rw"),
    ("SPSR_EL12", (3, 5, 4, 0, 0), "rw"),
    ("ELR_EL12", (3, 5, 4, 0, 1), "rw"),
    ("AFSR0_EL12", (3, 5, 5, 1, 0), "rw"),
    ("AFSR1_EL12", (3, 5, 5, 1, 1), "rw"),
    ("ESR_EL12", (3, 5, 5, 2, 0), "rw"),
    ("FAR_EL12", (3, 5, 6, 0, 0), "rw"),
    ("MAIR_EL12", (3, 5, 10, 2, 0), "rw"),
    ("AMAIR_EL12", (3, 5, 10, 3, 0), "rw"),
    ("VBAR_EL12", (3, 5, 12, 0, 0), "rw"),
    ("CONTEXTIDR_EL12", (3, 5, 13, 0, 1), "rw"),
    ("CNTKCTL_EL12", (3, 5, 14, 1, 0), "rw"),
    ("CNTP_TVAL_EL02", (3, 5, 14, 2, 0), "rw"),
    ("CNTP_CTL_EL02", (3, 5, 14, 2, 1), "rw"),
    ("CNTP_CVAL_EL02", (3, 5, 14, 2, 2), "rw"),
    ("CNTV_TVAL_EL02", (3, 5, 14, 3, 0), "rw"),
    ("CNTV_CTL_EL02", (3, 5, 14, 3, 1), "rw"),
    ("CNTV_CVAL_EL02", (3, 5, 14, 3, 2), "rw"),
    # Trace filter control (FEAT_TRF) and trace buffer (FEAT_TRBE).
    ("TRFCR_EL1", (3, 0, 1, 2, 1), "rw"),
    ("TRFCR_EL2", (3, 4, 1, 2, 1), "rw"),
    ("TRFCR_EL12", (3, 5, 1, 2, 1), "rw"),
    ("TRBLIMITR_EL1", (3, 0, 9, 11, 0), "rw"),
    ("TRBPTR_EL1", (3, 0, 9, 11, 1), "rw"),
    ("TRBBASER_EL1", (3, 0, 9, 11, 2), "rw"),
    ("TRBSR_EL1", (3, 0, 9, 11, 3), "rw"),
    ("TRBMAR_EL1", (3, 0, 9, 11, 4), "rw"),
    ("TRBTRG_EL1", (3, 0, 9, 11, 6), "rw"),
    ("TRBIDR_EL1", (3, 0, 9, 11, 7), "r"),
    # Statistical profiling (FEAT_SPE).
    ("PMSCR_EL1", (3, 0, 9, 9, 0), "rw"),
    ("PMSCR_EL2", (3, 4, 9, 9, 0), "rw"),
    ("PMSCR_EL12", (3, 5, 9, 9, 0), "rw"),
    ("PMSICR_EL1", (3, 0, 9, 9, 2), "rw"),
    ("PMSIRR_EL1", (3, 0, 9, 9, 3), "rw"),
    ("PMSFCR_EL1", (3, 0, 9, 9, 4), "rw"),
    ("PMSEVFR_EL1", (3, 0, 9, 9, 5), "rw"),
    ("PMSLATFR_EL1", (3, 0, 9, 9, 6), "rw"),
    ("PMSIDR_EL1", (3, 0, 9, 9, 7), "r"),
    ("PMBLIMITR_EL1", (3, 0, 9, 10, 0), "rw"),
    ("PMBPTR_EL1", (3, 0, 9, 10, 1), "rw"),
    ("PMBSR_EL1", (3, 0, 9, 10, 3), "rw"),
    ("PMBIDR_EL1", (3, 0, 9, 10, 7), "r"),
    # Performance monitors.
    ("PMCNTENSET_EL0", (3, 3, 9, 12, 1), "rw"),
    ("PMCNTENCLR_EL0", (3, 3, 9, 12, 2), "rw"),
    ("PMOVSCLR_EL0", (3, 3, 9, 12, 3), "rw"),
    ("PMSWINC_EL0", (3, 3, 9, 12, 4), "w"),
    ("PMSELR_EL0", (3, 3, 9, 12, 5), "rw"),
    ("PMCEID0_EL0", (3, 3, 9, 12, 6), "r"),
    ("PMCEID1_EL0", (3, 3, 9, 12, 7), "r"),
    ("PMCCNTR_EL0", (3, 3, 9, 13, 0), "rw"),
    ("PMXEVTYPER_EL0", (3, 3, 9, 13, 1), "rw"),
    ("PMXEVCNTR_EL0", (3, 3, 9, 13, 2), "rw"),
    ("PMINTENSET_EL1", (3, 0, 9, 14, 1), "rw"),
    ("PMINTENCLR_EL1", (3, 0, 9, 14, 2), "rw"),
    ("PMOVSSET_EL0", (3, 3, 9, 14, 3), "rw"),
    ("PMMIR_EL1", (3, 0, 9, 14, 6), "r"),
    ("PMCCFILTR_EL0", (3, 3, 14, 15, 7), "rw"),
    # Activity monitors (FEAT_AMUv1).
    ("AMCR_EL0", (3, 3, 13, 2, 0), "rw"),
    ("AMCFGR_EL0", (3, 3, 13, 2, 1), "r"),
    ("AMCGCR_EL0", (3, 3, 13, 2, 2), "r"),
    ("AMUSERENR_EL0", (3, 3, 13, 2, 3), "rw"),
    ("AMCNTENCLR0_EL0", (3, 3, 13, 2, 4), "rw"),
    ("AMCNTENSET0_EL0", (3, 3, 13, 2, 5), "rw"),
    ("AMCNTENCLR1_EL0", (3, 3, 13, 3, 0), "rw"),
    ("AMCNTENSET1_EL0", (3, 3, 13, 3, 1), "rw"),
    # GICv3 CPU interface.
    ("ICC_PMR_EL1", (3, 0, 4, 6, 0), "rw"),
    ("ICC_IAR0_EL1", (3, 0, 12, 8, 0), "r"),
    ("ICC_EOIR0_EL1", (3, 0, 12, 8, 1), "w"),
    ("ICC_HPPIR0_EL1", (3, 0, 12, 8, 2), "r"),
    ("ICC_BPR0_EL1", (3, 0, 12, 8, 3), "rw"),
    ("ICC_DIR_EL1", (3, 0, 12, 11, 1), "w"),
    ("ICC_RPR_EL1", (3, 0, 12, 11, 3), "r"),
    ("ICC_SGI1R_EL1", (3, 0, 12, 11, 5), "w"),
    ("ICC_ASGI1R_EL1", (3, 0, 12, 11, 6), "w"),
    ("ICC_SGI0R_EL1", (3, 0, 12, 11, 7), "w"),
    ("ICC_IAR1_EL1", (3, 0, 12, 12, 0), "r"),
    ("ICC_EOIR1_EL1", (3, 0, 12, 12, 1), "w"),
    ("ICC_HPPIR1_EL1", (3, 0, 12, 12, 2), "r"),
    ("ICC_BPR1_EL1", (3, 0, 12, 12, 3), "rw"),
    ("ICC_CTLR_EL1", (3, 0, 12, 12, 4), "rw"),
    ("ICC_IGRPEN0_EL1", (3, 0, 12, 12, 6), "rw"),
    ("ICC_IGRPEN1_EL1", (3, 0, 12, 12, 7), "rw"),
    ("ICC_CTLR_EL3", (3, 6, 12, 12, 4), "rw"),
    ("ICC_IGRPEN1_EL3", (3, 6, 12, 12, 7), "rw"),
    ("ICH_VTR_EL2", (3, 4, 12, 11, 1), "r"),
    ("ICH_MISR_EL2", (3, 4, 12, 11, 2), "r"),
    ("ICH_EISR_EL2", (3, 4, 12, 11, 3), "r"),
    ("ICH_ELRSR_EL2", (3, 4, 12, 11, 5), "r"),
    ("ICH_VMCR_EL2", (3, 4, 12, 11, 7), "rw"),
    # Realm management (FEAT_RME), EL3.
    ("GPTBR_EL3", (3, 6, 2, 1, 4), "rw"),
    ("GPCCR_EL3", (3, 6, 2, 1, 6), "rw"),
    ("MFAR_EL3", (3, 6, 6, 0, 5), "rw"),
    # Debug (op0 = 2) beyond the machine's table.
    ("OSDTRRX_EL1", (2, 0, 0, 0, 2), "rw"),
    ("MDCCINT_EL1", (2, 0, 0, 2, 0), "rw"),
    ("OSDTRTX_EL1", (2, 0, 0, 3, 2), "rw"),
    ("OSECCR_EL1", (2, 0, 0, 6, 2), "rw"),
    ("MDRAR_EL1", (2, 0, 1, 0, 0), "r"),
    ("DBGPRCR_EL1", (2, 0, 1, 4, 4), "rw"),
    ("DBGCLAIMSET_EL1", (2, 0, 7, 8, 6), "rw"),
    ("DBGCLAIMCLR_EL1", (2, 0, 7, 9, 6), "rw"),
    ("DBGAUTHSTATUS_EL1", (2, 0, 7, 14, 6), "r"),
    ("MDCCSR_EL0", (2, 3, 0, 1, 0), "r"),
    ("DBGDTR_EL0", (2, 3, 0, 4, 0), "rw"),
    ("DBGDTRRX_EL0", (2, 3, 0, 5, 0), "r"),
    ("DBGDTRTX_EL0", (2, 3, 0, 5, 0), "w"),
    ("DBGVCR32_EL2", (2, 4, 0, 7, 0), "rw"),
)

_NUMBERED: tuple[SysregEntry, ...] = (
    # Breakpoint and watchpoint registers n = 0..15: CRm = n.
    *((f"DBGBVR{n}_EL1", (2, 0, 0, n, 4), "rw") for n in range(16)),
    *((f"DBGBCR{n}_EL1", (2, 0, 0, n, 5), "rw") for n in range(16)),
    *((f"DBGWVR{n}_EL1", (2, 0, 0, n, 6), "rw") for n in range(16)),
    *((f"DBGWCR{n}_EL1", (2, 0, 0, n, 7), "rw") for n in range(16)),
    # PMU event counters n = 0..30: CRm = 8 + n // 8 (12 + for types), op2 = n % 8.
    *((f"PMEVCNTR{n}_EL0", (3, 3, 14, 8 + n // 8, n % 8), "rw") for n in range(31)),
    *((f"PMEVTYPER{n}_EL0", (3, 3, 14, 12 + n // 8, n % 8), "rw") for n in range(31)),
    # Activity monitor counters and types: group 0 (n = 0..3) CRm 4 / 6, group 1
    # (n = 0..15) CRm 12-13 / 14-15.
    *((f"AMEVCNTR0{n}_EL0", (3, 3, 13, 4, n), "rw") for n in range(4)),
    *((f"AMEVTYPER0{n}_EL0", (3, 3, 13, 6, n), "r") for n in range(4)),
    *((f"AMEVCNTR1{n}_EL0", (3, 3, 13, 12 + n // 8, n % 8), "rw") for n in range(16)),
    *((f"AMEVTYPER1{n}_EL0", (3, 3, 13, 14 + n // 8, n % 8), "rw") for n in range(16)),
    # MPAM virtual partition mapping n = 0..7: op2 = n.
    *((f"MPAMVPM{n}_EL2", (3, 4, 10, 6, n), "rw") for n in range(8)),
    # GICv3 active priorities n = 0..3 and list registers n = 0..15.
    *((f"ICC_AP0R{n}_EL1", (3, 0, 12, 8, 4 + n), "rw") for n in range(4)),
    *((f"ICC_AP1R{n}_EL1", (3, 0, 12, 9, n), "rw") for n in range(4)),
    *((f"ICH_AP0R{n}_EL2", (3, 4, 12, 8, n), "rw") for n in range(4)),
    *((f"ICH_AP1R{n}_EL2", (3, 4, 12, 9, n), "rw") for n in range(4)),
    *((f"ICH_LR{n}_EL2", (3, 4, 12, 12 + n // 8, n % 8), "rw") for n in range(16)),
)

EXTRA_SYSREGS: tuple[SysregEntry, ...] = _FIXED + _NUMBERED
"""(name, (op0, op1, CRn, CRm, op2), access) of the registers added for the assembler."""

EXTRA_SYSREG_BY_UPPER: Mapping[str, tuple[Encoding, str]] = {
    name.upper(): (encoding, access) for name, encoding, access in EXTRA_SYSREGS
}


# --------------------------------------------------------------------------
# SYS operations (op0 = 1)


def _tlbi_base() -> tuple[tuple[str, SysOpEncoding], ...]:
    """TLBI operations of Armv8.4 (outer shareable, range) with the Armv8.0 ones."""
    # (name, op1, CRm, op2): CRm 1 = outer shareable, 2 / 5 / 6 = range IS / OS / local,
    # 0 / 4 = IPA (IS / local and OS), 3 = inner shareable, 7 = local.
    table = (
        ("VMALLE1OS", 0, 1, 0), ("VAE1OS", 0, 1, 1), ("ASIDE1OS", 0, 1, 2),
        ("VAAE1OS", 0, 1, 3), ("VALE1OS", 0, 1, 5), ("VAALE1OS", 0, 1, 7),
        ("RVAE1IS", 0, 2, 1), ("RVAAE1IS", 0, 2, 3), ("RVALE1IS", 0, 2, 5),
        ("RVAALE1IS", 0, 2, 7), ("RVAE1OS", 0, 5, 1), ("RVAAE1OS", 0, 5, 3),
        ("RVALE1OS", 0, 5, 5), ("RVAALE1OS", 0, 5, 7), ("RVAE1", 0, 6, 1),
        ("RVAAE1", 0, 6, 3), ("RVALE1", 0, 6, 5), ("RVAALE1", 0, 6, 7),
        ("RIPAS2E1IS", 4, 0, 2), ("RIPAS2LE1IS", 4, 0, 6), ("ALLE2OS", 4, 1, 0),
        ("VAE2OS", 4, 1, 1), ("ALLE1OS", 4, 1, 4), ("VALE2OS", 4, 1, 5),
        ("VMALLS12E1OS", 4, 1, 6), ("RVAE2IS", 4, 2, 1), ("RVALE2IS", 4, 2, 5),
        ("IPAS2E1OS", 4, 4, 0), ("RIPAS2E1", 4, 4, 2), ("RIPAS2E1OS", 4, 4, 3),
        ("IPAS2LE1OS", 4, 4, 4), ("RIPAS2LE1", 4, 4, 6), ("RIPAS2LE1OS", 4, 4, 7),
        ("RVAE2OS", 4, 5, 1), ("RVALE2OS", 4, 5, 5), ("RVAE2", 4, 6, 1),
        ("RVALE2", 4, 6, 5), ("ALLE3OS", 6, 1, 0), ("VAE3OS", 6, 1, 1),
        ("VALE3OS", 6, 1, 5), ("RVAE3IS", 6, 2, 1), ("RVALE3IS", 6, 2, 5),
        ("RVAE3OS", 6, 5, 1), ("RVALE3OS", 6, 5, 5), ("RVAE3", 6, 6, 1),
        ("RVALE3", 6, 6, 5),
    )
    return tuple((f"TLBI {name}", (op1, 8, crm, op2)) for name, op1, crm, op2 in table)


_TLBI_V84 = _tlbi_base()

_OTHER_SYS_OPS: tuple[tuple[str, SysOpEncoding], ...] = (
    # Realm management TLBIs (FEAT_RME).
    ("TLBI PAALLOS", (6, 8, 1, 4)),
    ("TLBI RPAOS", (6, 8, 4, 3)),
    ("TLBI RPALOS", (6, 8, 4, 7)),
    ("TLBI PAALL", (6, 8, 7, 4)),
    # Data cache: persistence (FEAT_DPB2) and allocation tags (FEAT_MTE2).
    ("DC CVADP", (3, 7, 13, 1)),
    ("DC GVA", (3, 7, 4, 3)),
    ("DC GZVA", (3, 7, 4, 4)),
    ("DC IGVAC", (0, 7, 6, 3)),
    ("DC IGSW", (0, 7, 6, 4)),
    ("DC IGDVAC", (0, 7, 6, 5)),
    ("DC IGDSW", (0, 7, 6, 6)),
    ("DC CGSW", (0, 7, 10, 4)),
    ("DC CGDSW", (0, 7, 10, 6)),
    ("DC CIGSW", (0, 7, 14, 4)),
    ("DC CIGDSW", (0, 7, 14, 6)),
    ("DC CGVAC", (3, 7, 10, 3)),
    ("DC CGDVAC", (3, 7, 10, 5)),
    ("DC CGVAP", (3, 7, 12, 3)),
    ("DC CGDVAP", (3, 7, 12, 5)),
    ("DC CGVADP", (3, 7, 13, 3)),
    ("DC CGDVADP", (3, 7, 13, 5)),
    ("DC CIGVAC", (3, 7, 14, 3)),
    ("DC CIGDVAC", (3, 7, 14, 5)),
    ("DC CIPAPA", (6, 7, 14, 1)),
    ("DC CIGDPAPA", (6, 7, 14, 5)),
    # Address translation with PAN (FEAT_PAN2).
    ("AT S1E1RP", (0, 7, 9, 0)),
    ("AT S1E1WP", (0, 7, 9, 1)),
    # Prediction restriction by context (FEAT_SPECRES).
    ("CFP RCTX", (3, 7, 3, 4)),
    ("DVP RCTX", (3, 7, 3, 5)),
    ("CPP RCTX", (3, 7, 3, 7)),
)

EXTRA_SYS_OPS: tuple[tuple[str, SysOpEncoding], ...] = _TLBI_V84 + _OTHER_SYS_OPS
"""(name such as ``"TLBI VAE1OS"``, (op1, CRn, CRm, op2)) added for the assembler."""

SYS_OP_NO_REGISTER: frozenset[str] = frozenset(
    f"TLBI {stem}{suffix}"
    for stem in ("VMALLE1", "ALLE1", "ALLE2", "ALLE3", "VMALLS12E1", "PAALL")
    for suffix in ("", "IS", "OS")
) | {"IC IALLU", "IC IALLUIS"}
"""SYS operations written without a register operand (every other one takes an Xt)."""
