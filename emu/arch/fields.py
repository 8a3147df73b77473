"""AArch64 system-register fields: what SCTLR, TCR, MAIR and ID_AA64MMFR0 say.

Each decoder turns a register value into a small record of the fields that
matter to boot code and translation, and a short human string for reports and
traces (field names as the Arm ARM's register descriptions give them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PARANGE_BITS: tuple[int, ...] = (32, 36, 40, 42, 44, 48, 52)
"""ID_AA64MMFR0_EL1.PARange and TCR_ELx.{PS,IPS} encodings 0..6 → address bits."""


def pa_range_bits(id_aa64mmfr0: int) -> int:
    """Implemented physical address size from ID_AA64MMFR0_EL1.PARange (bits[3:0]).

    Reserved encodings (7..15) raise ValueError: no implementation reports them.
    """
    parange = id_aa64mmfr0 & 0xF
    if parange >= len(PARANGE_BITS):
        raise ValueError(f"reserved ID_AA64MMFR0_EL1.PARange value {parange}")
    return PARANGE_BITS[parange]


def _bit(value: int, n: int) -> int:
    return (value >> n) & 1


def _field(value: int, lo: int, width: int) -> int:
    return (value >> lo) & ((1 << width) - 1)


@dataclass(frozen=True)
class SctlrFields:
    """The SCTLR_EL1/EL2 bits that matter to boot code and translation."""

    m: bool  # bit 0: stage-1 MMU enable
    a: bool  # bit 1: alignment check
    c: bool  # bit 2: data cacheability
    sa: bool  # bit 3: SP alignment check
    i: bool  # bit 12: instruction cacheability
    wxn: bool  # bit 19: writable implies execute-never
    ee: bool  # bit 25: big-endian data and translation table walks


def decode_sctlr(value: int) -> SctlrFields:
    """Split an SCTLR_EL1/EL2 value into its boot-relevant bits."""
    return SctlrFields(
        m=bool(_bit(value, 0)), a=bool(_bit(value, 1)), c=bool(_bit(value, 2)),
        sa=bool(_bit(value, 3)), i=bool(_bit(value, 12)), wxn=bool(_bit(value, 19)),
        ee=bool(_bit(value, 25)),
    )


def describe_sctlr(value: int) -> str:
    """Short string such as ``"M C SA I WXN=0 EE=0"``: set flags, then WXN and EE always."""
    f = decode_sctlr(value)
    flags = [n for n, on in (("M", f.m), ("A", f.a), ("C", f.c), ("SA", f.sa), ("I", f.i)) if on]
    if not f.m:
        flags.insert(0, "M=0")
    flags.append(f"WXN={int(f.wxn)}")
    flags.append(f"EE={int(f.ee)}")
    return " ".join(flags)


GRANULE_TG0: Mapping[int, int] = {0b00: 4096, 0b01: 65536, 0b10: 16384}
"""TCR_ELx.TG0 encoding → granule bytes (0b11 reserved)."""

GRANULE_TG1: Mapping[int, int] = {0b01: 16384, 0b10: 4096, 0b11: 65536}
"""TCR_EL1.TG1 encoding → granule bytes (0b00 reserved) — differs from TG0."""

_CACHEABILITY = ("NC", "WBWA", "WT", "WB")  # TCR IRGNn/ORGNn 0..3
_SHAREABILITY = ("Non", "Reserved", "Outer", "Inner")  # TCR SHn / descriptor SH 0..3


def _granule_str(size: int | None) -> str:
    return "reserved" if size is None else f"{size // 1024}K"


def _ps_str(code: int) -> str:
    return f"{PARANGE_BITS[code]}-bit" if code < len(PARANGE_BITS) else f"reserved({code})"


@dataclass(frozen=True)
class TcrEl2Fields:
    """TCR_EL2 (non-VHE layout) fields."""

    t0sz: int
    irgn0: int
    orgn0: int
    sh0: int
    tg0: int | None  # granule bytes, None for the reserved encoding
    ps: int  # raw PS code (0..7)
    tbi: bool


def decode_tcr_el2(value: int) -> TcrEl2Fields:
    """Split a non-VHE TCR_EL2 value: T0SZ[5:0] IRGN0[9:8] ORGN0[11:10] SH0[13:12]
    TG0[15:14] PS[18:16] TBI[20]."""
    return TcrEl2Fields(
        t0sz=_field(value, 0, 6), irgn0=_field(value, 8, 2), orgn0=_field(value, 10, 2),
        sh0=_field(value, 12, 2), tg0=GRANULE_TG0.get(_field(value, 14, 2)),
        ps=_field(value, 16, 3), tbi=bool(_bit(value, 20)),
    )


def describe_tcr_el2(value: int) -> str:
    """Short string such as ``"T0SZ=16 IRGN0=WBWA ORGN0=WBWA SH0=Inner TG0=4K PS=40-bit"``."""
    f = decode_tcr_el2(value)
    return (
        f"T0SZ={f.t0sz} IRGN0={_CACHEABILITY[f.irgn0]} ORGN0={_CACHEABILITY[f.orgn0]} "
        f"SH0={_SHAREABILITY[f.sh0]} TG0={_granule_str(f.tg0)} PS={_ps_str(f.ps)} "
        f"TBI={int(f.tbi)}"
    )


@dataclass(frozen=True)
class TcrEl1Fields:
    """TCR_EL1 fields used by the EL1&0 stage-1 walk."""

    t0sz: int
    epd0: bool
    irgn0: int
    orgn0: int
    sh0: int
    tg0: int | None
    t1sz: int
    a1: bool
    epd1: bool
    irgn1: int
    orgn1: int
    sh1: int
    tg1: int | None
    ips: int
    as16: bool  # TCR_EL1.AS: 16-bit ASIDs
    tbi0: bool
    tbi1: bool


def decode_tcr_el1(value: int) -> TcrEl1Fields:
    """Split a TCR_EL1 value (T0SZ[5:0] EPD0[7] TG0[15:14] T1SZ[21:16] A1[22] EPD1[23]
    TG1[31:30] IPS[34:32] AS[36] TBI0[37] TBI1[38])."""
    return TcrEl1Fields(
        t0sz=_field(value, 0, 6), epd0=bool(_bit(value, 7)), irgn0=_field(value, 8, 2),
        orgn0=_field(value, 10, 2), sh0=_field(value, 12, 2),
        tg0=GRANULE_TG0.get(_field(value, 14, 2)),
        t1sz=_field(value, 16, 6), a1=bool(_bit(value, 22)), epd1=bool(_bit(value, 23)),
        irgn1=_field(value, 24, 2), orgn1=_field(value, 26, 2), sh1=_field(value, 28, 2),
        tg1=GRANULE_TG1.get(_field(value, 30, 2)), ips=_field(value, 32, 3),
        as16=bool(_bit(value, 36)), tbi0=bool(_bit(value, 37)), tbi1=bool(_bit(value, 38)),
    )


def describe_tcr_el1(value: int) -> str:
    """Short string such as ``"T0SZ=16 T1SZ=16 TG0=4K TG1=4K EPD0=0 EPD1=0 A1=0 IPS=48-bit"``."""
    f = decode_tcr_el1(value)
    return (
        f"T0SZ={f.t0sz} T1SZ={f.t1sz} TG0={_granule_str(f.tg0)} TG1={_granule_str(f.tg1)} "
        f"EPD0={int(f.epd0)} EPD1={int(f.epd1)} A1={int(f.a1)} IPS={_ps_str(f.ips)} "
        f"AS={16 if f.as16 else 8} TBI0={int(f.tbi0)} TBI1={int(f.tbi1)}"
    )


_DEVICE_KINDS = ("nGnRnE", "nGnRE", "nGRE", "GRE")


def _normal_half(nibble: int) -> str:
    """One MAIR Normal-memory nibble (inner or outer policy), per MAIR_ELx.Attr<n>."""
    if nibble == 0b0100:
        return "NC"
    top = nibble >> 2
    # 0b00RW (RW != 00) WT transient, 0b01RW (RW != 00) WB transient,
    # 0b10RW WT non-transient, 0b11RW WB non-transient.
    return {0b00: "WTt", 0b01: "WBt", 0b10: "WT", 0b11: "WB"}[top]


def mair_attr_name(attr: int) -> str:
    """Short name of one MAIR attribute byte: ``"Device-nGnRnE"``, ``"Normal WB"``, ..."""
    attr &= 0xFF
    outer, inner = attr >> 4, attr & 0xF
    if outer == 0:
        # Device memory: Attr<n>[7:4] = 0000, [3:2] = kind, [1:0] must be 00.
        if inner & 0b11:
            return f"reserved(0x{attr:02x})"
        return "Device-" + _DEVICE_KINDS[inner >> 2]
    if inner == 0:
        # 0xF0 is Tagged Normal (FEAT_MTE2); other xxxx0000 encodings are reserved.
        return "Normal WB Tagged" if attr == 0xF0 else f"reserved(0x{attr:02x})"
    o, i = _normal_half(outer), _normal_half(inner)
    return f"Normal {o}" if o == i else f"Normal o:{o} i:{i}"


def decode_mair(value: int) -> tuple[int, ...]:
    """The eight attribute bytes Attr0..Attr7 of a MAIR_ELx value."""
    return tuple((value >> (8 * n)) & 0xFF for n in range(8))


def describe_mair(value: int) -> str:
    """Short string listing each attribute: ``"0:Device-nGnRnE 1:Normal NC 2:Normal WB ..."``."""
    return " ".join(f"{n}:{mair_attr_name(a)}" for n, a in enumerate(decode_mair(value)))
