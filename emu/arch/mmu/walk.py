"""The stage-1 translation table walker: a pure function of regime, memory, VA and access.

:func:`translate` follows the structure of the Arm ARM's translation
pseudocode (AArch64.S1Translate / AArch64.TranslationTableWalk /
AArch64.CheckPermission), and its helpers are named after those steps:

1. ``regime_translation_disabled`` → :func:`_s1_disabled`: flat map VA == PA.
2. ``regime_va_range``: pick TTBR0 or TTBR1 by the VA's top bits, or fault.
3. ``regime_walk_params``: granule, TxSZ, start level, output size, EPDn.
4. :func:`_walk`: one descriptor fetch per level (:func:`_descriptor_kind`),
   table → next level, accumulating the hierarchical table attributes; block
   or page → output address, then the address-size and access-flag checks.
5. :func:`_s1_permissions` / :func:`_permission_fault_reason`: AP, XN/PXN,
   APTable/XNTable/PXNTable, SCTLR.WXN, and the access is checked against them.

Faults are reported in the architecture's priority order: translation,
address size, access flag, permission.  The result is either a
:class:`Translation` or a :class:`Fault`; nothing is cached here (the TLB is
modelled elsewhere).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from emu.arch.fields import mair_attr_name
from emu.arch.mmu.regime import (
    MAX_PA_BITS,
    Granule,
    RegimeName,
    TranslationRegime,
    WalkParams,
    level_shift,
    regime_addr_top,
    regime_translation_disabled,
    regime_va_range,
    regime_walk_params,
)

MASK64 = (1 << 64) - 1

PhysicalReader = Callable[[int], int]
"""Reads the 64-bit little-endian descriptor at a physical address.

It may raise :class:`WalkReadError` when nothing backs the address; the walk
then reports a synchronous external abort on the translation table walk.
"""


class WalkReadError(Exception):
    """Raised by a :data:`PhysicalReader` when no memory backs a descriptor address."""


class Access(enum.StrEnum):
    """Kind of memory access being translated."""

    FETCH = "fetch"
    READ = "read"
    WRITE = "write"


class FaultKind(enum.StrEnum):
    """Stage-1 MMU fault classes, with their DFSC/IFSC group (status_code >> 2)."""

    ADDRESS_SIZE = "address-size"
    TRANSLATION = "translation"
    ACCESS_FLAG = "access-flag"
    PERMISSION = "permission"
    WALK_EXTERNAL_ABORT = "external-abort-on-walk"


_FSC_GROUP = {
    FaultKind.ADDRESS_SIZE: 0b0000,
    FaultKind.TRANSLATION: 0b0001,
    FaultKind.ACCESS_FLAG: 0b0010,
    FaultKind.PERMISSION: 0b0011,
    FaultKind.WALK_EXTERNAL_ABORT: 0b0101,
}

# Descriptor fields (D8.3 "Translation table descriptor formats", VMSAv8-64).
_VALID = 1 << 0
_TABLE_OR_PAGE = 1 << 1
_ATTR_INDX_SHIFT = 2  # AttrIndx[4:2]
_AP1 = 1 << 6  # AP[1]: EL0 access (EL1&0 only; RES1 in the EL2 regime)
_AP2 = 1 << 7  # AP[2]: read-only
_SH_SHIFT = 8  # SH[9:8]
_AF = 1 << 10
_NG = 1 << 11
_CONTIGUOUS = 1 << 52
_PXN = 1 << 53
_XN = 1 << 54  # XN (EL2) / UXN (EL1&0)
_PXN_TABLE = 1 << 59
_XN_TABLE = 1 << 60  # XNTable (EL2) / UXNTable (EL1&0)
_AP_TABLE0 = 1 << 61  # APTable[0]: no EL0 access below (EL1&0 only)
_AP_TABLE1 = 1 << 62  # APTable[1]: no write access below

_OA_MASK = (1 << 48) - 1  # no 52-bit OA: descriptor bits [47:shift] hold the address


@dataclass(frozen=True)
class WalkStep:
    """One descriptor read during the walk.

    ``output_address`` is the next-level table address for a table descriptor,
    the block/page base for a leaf, None for an invalid or reserved one.
    """

    level: int
    table_address: int
    index: int
    descriptor_address: int
    descriptor: int
    kind: str  # "table" | "block" | "page" | "invalid" | "reserved"
    output_address: int | None = None


@dataclass(frozen=True)
class Translation:
    """A successful stage-1 translation.

    With the MMU off (``ttbr_select`` None) there are no steps, ``level`` is 0,
    ``size`` is one 4 KiB page, ``attr_index`` is -1 (no MAIR slot) and
    ``memory_attributes`` the architecture's fixed attributes for that case.
    """

    va: int
    pa: int
    level: int
    size: int  # size of the block/page mapping in bytes
    steps: tuple[WalkStep, ...]
    readable: bool  # for the regime's privileged EL
    writable: bool
    executable: bool
    el0_readable: bool  # EL1&0 only (False for EL2)
    el0_writable: bool
    el0_executable: bool
    attr_index: int
    memory_attributes: int  # MAIR byte
    shareability: int
    access_flag: bool
    not_global: bool
    contiguous: bool
    ttbr_select: int | None  # 0/1, None when the MMU is off

    @property
    def identity(self) -> bool:
        """True when the VA maps to the same PA."""
        return self.va == self.pa

    @property
    def mmu_off(self) -> bool:
        """True when this is the flat map of a regime with translation disabled."""
        return self.ttbr_select is None

    @property
    def output_base(self) -> int:
        """Physical base of the block or page holding the PA."""
        return self.pa & ~(self.size - 1)

    @property
    def input_base(self) -> int:
        """Virtual base of the block or page holding the VA."""
        return self.va & ~(self.size - 1)

    def allows(self, access: Access, *, el0: bool = False) -> bool:
        """Whether ``access`` (from EL0 if ``el0``) is permitted by this translation."""
        if el0:
            r, w, x = self.el0_readable, self.el0_writable, self.el0_executable
        else:
            r, w, x = self.readable, self.writable, self.executable
        return {Access.READ: r, Access.WRITE: w, Access.FETCH: x}[access]


@dataclass(frozen=True)
class Fault:
    """A stage-1 MMU fault: what kind, at which lookup level, and the walk that led to it."""

    kind: FaultKind
    level: int
    va: int
    access: Access
    steps: tuple[WalkStep, ...]
    reason: str = ""
    ttbr_select: int | None = None
    el0: bool = False

    @property
    def status_code(self) -> int:
        """DFSC/IFSC: 0b0000LL address size, 0b0001LL translation, 0b0010LL access
        flag, 0b0011LL permission, 0b0101LL external abort on walk (LL = level)."""
        return (_FSC_GROUP[self.kind] << 2) | (self.level & 0b11)

    @property
    def is_write(self) -> bool:
        """ESR ISS.WnR for a data abort."""
        return self.access is Access.WRITE

    def describe(self) -> str:
        """Human description, e.g. ``"translation fault, level 2 (invalid descriptor)"``."""
        kind = {
            FaultKind.ADDRESS_SIZE: "address size fault",
            FaultKind.TRANSLATION: "translation fault",
            FaultKind.ACCESS_FLAG: "access flag fault",
            FaultKind.PERMISSION: "permission fault",
            FaultKind.WALK_EXTERNAL_ABORT: "synchronous external abort on translation table walk",
        }[self.kind]
        text = f"{kind}, level {self.level}"
        return f"{text} ({self.reason})" if self.reason else text


# --------------------------------------------------------------------------
# Step 1: translation disabled
# --------------------------------------------------------------------------

# With stage 1 off, data accesses are Device-nGnRnE and instruction fetches are
# Normal, Outer Shareable, Inner/Outer Write-Through Read-Allocate when SCTLR.I
# is set, else Non-cacheable (Arm ARM D8, "The effects of disabling a stage of
# address translation").
_S1_OFF_DATA_ATTR = 0x00
_S1_OFF_FETCH_ATTR_CACHED = 0xAA
_S1_OFF_FETCH_ATTR_NC = 0x44
_OUTER_SHAREABLE = 0b10
_S1_OFF_SIZE = 4096


def _s1_disabled(regime: TranslationRegime, va: int, access: Access, el0: bool
                 ) -> Translation | Fault:
    """AArch64.S1DisabledOutput: VA == PA, with an address-size fault when VA ≥ 2^PAMax."""
    select = 1 if regime.name is RegimeName.EL10 and (va >> 55) & 1 else 0
    top = regime_addr_top(regime, select)
    pamax = min(regime.pa_bits, MAX_PA_BITS)
    if (va & ((1 << (top + 1)) - 1)) >> pamax:
        return Fault(FaultKind.ADDRESS_SIZE, 0, va, access, (),
                     reason=f"MMU off and VA beyond the {pamax}-bit physical address space",
                     el0=el0)
    if access is Access.FETCH:
        attrs = _S1_OFF_FETCH_ATTR_CACHED if regime.icache_enabled else _S1_OFF_FETCH_ATTR_NC
    else:
        attrs = _S1_OFF_DATA_ATTR
    el0_ok = regime.has_el0
    return Translation(
        va=va, pa=va & ((1 << pamax) - 1), level=0, size=_S1_OFF_SIZE, steps=(),
        readable=True, writable=True, executable=True,
        el0_readable=el0_ok, el0_writable=el0_ok, el0_executable=el0_ok,
        attr_index=-1, memory_attributes=attrs, shareability=_OUTER_SHAREABLE,
        access_flag=True, not_global=False, contiguous=False, ttbr_select=None,
    )


# --------------------------------------------------------------------------
# Step 4: descriptors
# --------------------------------------------------------------------------

def block_allowed(granule: Granule, level: int) -> bool:
    """Whether a block descriptor is legal at ``level`` (no 52-bit addressing).

    D8.3: 4K blocks at levels 1 and 2; 16K and 64K blocks only at level 2
    (their level-1 blocks, and 4K level-0 blocks, need FEAT_LPA/LPA2).
    """
    if granule is Granule.K4:
        return level in (1, 2)
    return level == 2


def _descriptor_kind(descriptor: int, level: int, granule: Granule) -> str:
    """Classify a descriptor: bit 0 valid; bit 1 table (levels 0-2) or page (level 3).

    bits[1:0] = 0b01 is a block where blocks are allowed, otherwise reserved
    (at level 3 it is always reserved), and reserved descriptors fault like
    invalid ones.
    """
    if not descriptor & _VALID:
        return "invalid"
    if level == 3:
        return "page" if descriptor & _TABLE_OR_PAGE else "reserved"
    if descriptor & _TABLE_OR_PAGE:
        return "table"
    return "block" if block_allowed(granule, level) else "reserved"


def address_field(descriptor: int, shift: int) -> int:
    """Descriptor bits[47:shift]: a table address (shift = granule) or a block/page OA."""
    return descriptor & _OA_MASK & ~((1 << shift) - 1)


@dataclass(frozen=True)
class _TableAttrs:
    """Hierarchical attributes accumulated from the table descriptors walked through."""

    ap_table0: bool = False  # APTable[0]: EL0 access removed
    ap_table1: bool = False  # APTable[1]: write access removed
    xn_table: bool = False  # XNTable / UXNTable
    pxn_table: bool = False  # PXNTable

    def merge(self, descriptor: int, el10: bool) -> _TableAttrs:
        """Add one table descriptor's limits (hierarchical attributes only ever restrict).

        In the EL2 regime APTable[0] and PXNTable are RES0 and ignored.
        """
        return _TableAttrs(
            ap_table0=self.ap_table0 or (el10 and bool(descriptor & _AP_TABLE0)),
            ap_table1=self.ap_table1 or bool(descriptor & _AP_TABLE1),
            xn_table=self.xn_table or bool(descriptor & _XN_TABLE),
            pxn_table=self.pxn_table or (el10 and bool(descriptor & _PXN_TABLE)),
        )


# --------------------------------------------------------------------------
# Step 5: permissions
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Permissions:
    r: bool
    w: bool
    x: bool
    ur: bool
    uw: bool
    ux: bool


def _s1_permissions(regime: TranslationRegime, descriptor: int, table: _TableAttrs
                    ) -> _Permissions:
    """AArch64.CheckPermission (stage 1, no PAN/EPAN/HPD): the permissions of a leaf.

    APTable[1] forces AP[2] (read-only), APTable[0] clears AP[1] (no EL0);
    XNTable/PXNTable are ORed into XN/PXN.  SCTLR.WXN makes writable memory
    execute-never, and in EL1&0 memory writable from EL0 is never executable
    at EL1 (implicit PXN).
    """
    wxn = regime.wxn
    ap2 = bool(descriptor & _AP2) or table.ap_table1
    if regime.name is RegimeName.EL2:
        # Single-privilege regime: AP[1] is RES1 and ignored; XN is bit 54.
        w = not ap2
        xn = bool(descriptor & _XN) or table.xn_table
        return _Permissions(r=True, w=w, x=not xn and not (wxn and w),
                            ur=False, uw=False, ux=False)
    ap1 = bool(descriptor & _AP1) and not table.ap_table0
    pw = not ap2
    ur = ap1
    uw = ap1 and not ap2
    uxn = bool(descriptor & _XN) or table.xn_table
    pxn = bool(descriptor & _PXN) or table.pxn_table
    return _Permissions(
        r=True, w=pw, x=not pxn and not (wxn and pw) and not uw,
        ur=ur, uw=uw, ux=not uxn and not (wxn and uw),
    )


def _permission_fault_reason(regime: TranslationRegime, perms: _Permissions, descriptor: int,
                             table: _TableAttrs, access: Access, el0: bool) -> str | None:
    """Why ``access`` is refused by ``perms``, or None when it is allowed."""
    el10 = regime.name is RegimeName.EL10
    if el0:
        allowed = {Access.READ: perms.ur, Access.WRITE: perms.uw, Access.FETCH: perms.ux}
    else:
        allowed = {Access.READ: perms.r, Access.WRITE: perms.w, Access.FETCH: perms.x}
    if allowed[access]:
        return None
    if el0 and access is not Access.FETCH and not perms.ur:
        if table.ap_table0:
            return "EL0 access below a table with APTable[0]=1"
        return "EL0 access to privileged-only memory (AP[1]=0)"
    if access is Access.WRITE:
        if descriptor & _AP2:
            return "write to read-only memory (AP[2]=1)"
        return "write to memory made read-only by APTable[1]=1"
    # Instruction fetch.
    if el0:
        xn_bit, xn_name, table_xn, table_name = _XN, "UXN", table.xn_table, "UXNTable"
    elif el10:
        xn_bit, xn_name, table_xn, table_name = _PXN, "PXN", table.pxn_table, "PXNTable"
    else:
        xn_bit, xn_name, table_xn, table_name = _XN, "XN", table.xn_table, "XNTable"
    if descriptor & xn_bit:
        return f"fetch from execute-never memory ({xn_name}=1)"
    if table_xn:
        return f"fetch below a table with {table_name}=1"
    if regime.wxn and (perms.uw if el0 else perms.w):
        return "fetch from writable memory with SCTLR.WXN=1"
    return "EL1 fetch from EL0-writable memory (implicit PXN)"


# --------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------

def _read_descriptor(regime: TranslationRegime, read: PhysicalReader, address: int) -> int:
    """Fetch one descriptor; SCTLR.EE=1 makes walks big-endian (reverse the bytes)."""
    value = read(address) & MASK64
    if (regime.sctlr >> 25) & 1:
        value = int.from_bytes(value.to_bytes(8, "little"), "big")
    return value


def _walk(regime: TranslationRegime, params: WalkParams, read: PhysicalReader, va: int,
          access: Access, el0: bool) -> Translation | Fault:
    """AArch64.TranslationTableWalk from the start level down to a leaf or a fault."""
    granule = params.granule
    el10 = regime.name is RegimeName.EL10
    table_address = params.table_base
    table = _TableAttrs()
    steps: list[WalkStep] = []
    level = params.start_level

    def fault(kind: FaultKind, reason: str) -> Fault:
        return Fault(kind, level, va, access, tuple(steps), reason=reason,
                     ttbr_select=params.select, el0=el0)

    stride = granule.stride
    while True:
        shift = level_shift(granule, level)
        # The start-level table indexes VA[input_size-1:shift]; later ones `stride` bits.
        width = params.input_size - shift if level == params.start_level else stride
        index = (va >> shift) & ((1 << width) - 1)
        descriptor_address = table_address | (index * 8)
        try:
            descriptor = _read_descriptor(regime, read, descriptor_address)
        except WalkReadError as exc:
            return fault(FaultKind.WALK_EXTERNAL_ABORT,
                         f"no memory at descriptor address {descriptor_address:#x}: {exc}")
        kind = _descriptor_kind(descriptor, level, granule)
        if kind == "table":
            output: int | None = address_field(descriptor, granule.shift)
        elif kind in ("block", "page"):
            output = address_field(descriptor, shift)
        else:
            output = None
        steps.append(WalkStep(level, table_address, index, descriptor_address, descriptor,
                              kind, output))

        if kind == "invalid":
            return fault(FaultKind.TRANSLATION, "invalid descriptor")
        if kind == "reserved":
            if level == 3:
                return fault(FaultKind.TRANSLATION, "reserved level-3 descriptor (0b01)")
            return fault(FaultKind.TRANSLATION,
                         f"block descriptor not allowed at level {level} "
                         f"with the {granule.label} granule")
        assert output is not None
        # Address size fault when the next table or the output address has bits
        # set above TCR.{PS,IPS} (reported at the level of this descriptor).
        if output >> params.output_size:
            what = "next-level table" if kind == "table" else "output"
            return fault(FaultKind.ADDRESS_SIZE,
                         f"{what} address {output:#x} beyond the "
                         f"{params.output_size}-bit output size")
        if kind == "table":
            table = table.merge(descriptor, el10)
            table_address = output
            level += 1
            continue

        # Leaf: block or page.
        if not descriptor & _AF:
            # No hardware AF update (FEAT_HAFDBS) is modelled: AF=0 faults.
            return fault(FaultKind.ACCESS_FLAG, "access flag (AF) is 0")
        perms = _s1_permissions(regime, descriptor, table)
        reason = _permission_fault_reason(regime, perms, descriptor, table, access, el0)
        if reason is not None:
            return fault(FaultKind.PERMISSION, reason)
        attr_index = (descriptor >> _ATTR_INDX_SHIFT) & 0b111
        return Translation(
            va=va,
            pa=output | (va & ((1 << shift) - 1)),
            level=level,
            size=1 << shift,
            steps=tuple(steps),
            readable=perms.r, writable=perms.w, executable=perms.x,
            el0_readable=perms.ur, el0_writable=perms.uw, el0_executable=perms.ux,
            attr_index=attr_index,
            memory_attributes=(regime.mair >> (8 * attr_index)) & 0xFF,
            shareability=(descriptor >> _SH_SHIFT) & 0b11,
            access_flag=True,
            # nG is RES0 in the (ASID-less) non-VHE EL2 regime.
            not_global=el10 and bool(descriptor & _NG),
            contiguous=bool(descriptor & _CONTIGUOUS),
            ttbr_select=params.select,
        )


def translate(regime: TranslationRegime, read: PhysicalReader, va: int, access: Access, *,
              el0: bool = False) -> Translation | Fault:
    """Translate ``va`` for ``access`` through ``regime``'s stage-1 tables in memory ``read``.

    ``el0`` asks for an unprivileged access (EL1&0 only; ValueError for EL2).
    Returns a :class:`Translation` or the :class:`Fault` the access would take.
    """
    if el0 and not regime.has_el0:
        raise ValueError("the non-VHE EL2 regime has no EL0 accesses")
    va &= MASK64
    if regime_translation_disabled(regime):
        return _s1_disabled(regime, va, access, el0)
    select = regime_va_range(regime, va)
    if select is None:
        return Fault(FaultKind.TRANSLATION, 0, va, access, (),
                     reason="VA outside the range of every TTBR", el0=el0)
    params = regime_walk_params(regime, select)
    if params.epd:
        return Fault(FaultKind.TRANSLATION, 0, va, access, (),
                     reason=f"walks through TTBR{select} disabled by EPD{select}=1",
                     ttbr_select=select, el0=el0)
    if params.table_base >> params.output_size:
        return Fault(FaultKind.ADDRESS_SIZE, 0, va, access, (),
                     reason=f"TTBR{select} base {params.table_base:#x} beyond the "
                            f"{params.output_size}-bit output size",
                     ttbr_select=select, el0=el0)
    return _walk(regime, params, read, va, access, el0)


# --------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------

def format_size(size: int) -> str:
    """``2097152`` → ``"2 MiB"``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def _perm_string(r: bool, w: bool, x: bool) -> str:
    return ("R" if r else "-") + ("W" if w else "-") + ("X" if x else "-")


def format_step(step: WalkStep, *, leaf_size: int | None = None) -> str:
    """One walk line: ``"L0 table 0x40080000[1] = 0x40081003 → table 0x40081000"``."""
    head = (f"L{step.level} {step.kind} {step.table_address:#x}[{step.index}] = "
            f"{step.descriptor:#x}")
    if step.kind == "table":
        return f"{head} → table {step.output_address:#x}"
    if step.kind in ("block", "page"):
        size = f"{format_size(leaf_size)} " if leaf_size else ""
        return f"{head} → {size}{step.kind} {step.output_address:#x}"
    return head


def format_walk(result: Translation | Fault) -> list[str]:
    """Human-readable lines for a walk: one per level, then the outcome."""
    if isinstance(result, Fault):
        lines = [format_step(s) for s in result.steps]
        lines.append(f"→ {result.describe()}")
        return lines
    if result.mmu_off:
        return [f"MMU off: VA {result.va:#x} → PA {result.pa:#x} "
                f"(flat map, {mair_attr_name(result.memory_attributes)})"]
    lines = [format_step(s, leaf_size=result.size) for s in result.steps]
    kind = "page" if result.level == 3 else "block"
    perms = _perm_string(result.readable, result.writable, result.executable)
    if result.el0_readable or result.el0_writable or result.el0_executable:
        perms += ", EL0 " + _perm_string(result.el0_readable, result.el0_writable,
                                         result.el0_executable)
    lines.append(
        f"→ PA {result.pa:#x} ({format_size(result.size)} {kind}, {perms}, "
        f"attr {result.attr_index} {mair_attr_name(result.memory_attributes)})"
    )
    return lines
