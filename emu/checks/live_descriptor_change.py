"""live-descriptor-change: a descriptor that translation may use changed in a
field that requires break-before-make, without it."""

from __future__ import annotations

from dataclasses import dataclass

from emu.arch.fields import mair_attr_name
from emu.arch.mmu.regime import (
    Granule,
    RegimeName,
    TranslationRegime,
    level_shift,
    regime_for_el,
    regime_walk_params,
)
from emu.arch.mmu.tables import DescriptorLimit, table_pages
from emu.arch.mmu.walk import block_allowed, format_size
from emu.arch.sysregs import tlbi_scope
from emu.checks.base import Check, CheckContext
from emu.machine.events import (
    Barrier,
    DescriptorWrite,
    Event,
    MmuDisable,
    MmuEnable,
    SysRegWrite,
    TlbInvalidate,
)

_VALID = 1
_TABLE = 2
_OA_MASK = (1 << 48) - 1
_NG = 1 << 11
_CONTIGUOUS = 1 << 52
MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Place:
    """Where a descriptor sits in the tables of a regime: its lookup level and the
    VA range its entry translates."""

    regime: TranslationRegime
    level: int
    granule: Granule
    va: int
    size: int


def _kind(descriptor: int, place: Place) -> str:
    """``invalid``, ``table`` or ``leaf`` (a reserved encoding faults like an invalid one)."""
    if not descriptor & _VALID:
        return "invalid"
    if place.level == 3:
        return "leaf" if descriptor & _TABLE else "invalid"
    if descriptor & _TABLE:
        return "table"
    return "leaf" if block_allowed(place.granule, place.level) else "invalid"


def _is_device(attr: int) -> bool:
    return attr & 0xF0 == 0


def bbm_fields(old: int, new: int, place: Place) -> list[str]:
    """The fields whose change from ``old`` to ``new`` (both valid) requires
    break-before-make (DDI 0487 D8.17.1 R_WHZWS; Linux's pgattr_change_is_safe
    agrees): output address, size (a block replaced by a table or the reverse),
    memory type, cacheability, shareability, the contiguous hint, and nG from 1
    to 0.  Permissions (AP, XN/PXN), AF, DBM, nG from 0 to 1 and the software
    bits need TLB maintenance only.  For a table descriptor: its next-level
    table address (the table attributes are permission limits)."""
    kind_old, kind_new = _kind(old, place), _kind(new, place)
    if "invalid" in (kind_old, kind_new):
        return []
    if kind_old != kind_new:
        return ["size"]
    if kind_old == "table":
        shift = place.granule.shift
        mask = _OA_MASK & ~((1 << shift) - 1)
        return ["next-level table address"] if (old ^ new) & mask else []
    fields = []
    shift = level_shift(place.granule, place.level)
    if (old ^ new) & _OA_MASK & ~((1 << shift) - 1):
        fields.append("output address")
    mair = place.regime.mair
    attr_old = (mair >> (8 * ((old >> 2) & 7))) & 0xFF
    attr_new = (mair >> (8 * ((new >> 2) & 7))) & 0xFF
    if attr_old != attr_new:
        fields.append("memory type" if _is_device(attr_old) or _is_device(attr_new)
                      else "cacheability")
    elif (old ^ new) & (0b11 << 8) and not _is_device(attr_old):
        fields.append("shareability")  # ignored for Device memory
    if (old ^ new) & _CONTIGUOUS:
        fields.append("contiguous")
    if place.regime.name is RegimeName.EL10 and old & ~new & _NG:
        fields.append("nG")  # global replacing non-global; nG is RES0 in EL2
    return fields


@dataclass
class Break:
    """A valid descriptor made invalid, on its way through break-before-make:
    invalid store -> DSB -> TLBI covering its VA -> DSB -> new valid store."""

    old: int
    index: int
    place: Place
    stage: int = 0  # 0: awaits the DSB; 1: the TLBI; 2: the DSB after it; 3: done


def _completes_tlbi(operation: str) -> bool:
    """A DSB waits for TLB maintenance only if it orders loads and stores: the
    -ST and -LD forms do not (D8.17.8 "Ordering and completion of TLB maintenance")."""
    return operation.startswith("DSB") and not operation.endswith(("ST", "LD"))


class LiveDescriptorChange(Check):
    rule_id = "live-descriptor-change"
    title = "Live descriptor changed without break-before-make"
    explanation = (
        "A store changed a valid descriptor that translation may use - one in a table "
        "reachable from a TTBR of the regime translating with the MMU on, whether or not a "
        "TLB entry was made through it, since walks may happen at any time, speculative ones "
        "too (Arm ARM D8.16) - into another valid descriptor differing in a field that "
        "requires break-before-make (D8.17.1, R_WHZWS): output address, size (block/table), "
        "memory type, cacheability, shareability, contiguous hint, or nG from 1 to 0. "
        "Break-before-make is: store an invalid descriptor, DSB, TLBI covering the VA, DSB, "
        "then store the new one (R_DDMVT); a missing step is reported at the new store. "
        "Not reported: permission (AP, XN/PXN), AF, DBM, software-bit or nG 0 -> 1 changes, "
        "which need TLB maintenance, not break-before-make; changes made with the MMU off, or "
        "to tables no TTBR of the translating regime reaches."
    )

    def __init__(self, context: CheckContext) -> None:
        super().__init__(context)
        self._reach: dict[int, list[tuple[int, int, int]]] | None = None
        self._reach_of: TranslationRegime | None = None
        self._breaks: dict[int, Break] = {}

    # -- which descriptors translation may use --------------------------------

    def _place(self, address: int, el: int) -> Place | None:
        """Where ``address`` sits in the translating regime's tables, or None when
        the MMU is off or no TTBR of that regime reaches it."""
        regime = self.context.regime(regime_for_el(el))
        if not regime.mmu_enabled:
            return None
        if self._reach is None or self._reach_of != regime:
            try:
                self._reach = table_pages(regime, self.context.read_physical)
            except DescriptorLimit:
                self._reach = {}
            self._reach_of = regime
        granules = {regime_walk_params(regime, select).granule
                    for select in ((0, 1) if regime.name is RegimeName.EL10 else (0,))}
        for granule in granules:
            table = address & ~(granule - 1)
            places = self._reach.get(table)
            if not places:
                continue
            level, select, va = places[0]
            shift = level_shift(granule, level)
            index = (address - table) // 8
            return Place(regime, level, granule, (va + (index << shift)) & MASK64, 1 << shift)
        return None

    # -- events ---------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, DescriptorWrite):
            self._on_store(event)
        elif isinstance(event, Barrier):
            self._on_barrier(event)
        elif isinstance(event, TlbInvalidate):
            self._on_tlbi(event)
        elif isinstance(event, (MmuEnable, MmuDisable)) or (
                isinstance(event, SysRegWrite) and event.register.startswith(("TTBR", "TCR"))):
            self._reach = None  # what the tables reach changed with the registers

    def _on_store(self, event: DescriptorWrite) -> None:
        place = self._place(event.descriptor_address, event.el)
        old, new = event.old, event.new
        if place is not None and "table" in (_kind(old, place), _kind(new, place)):
            self._reach = None  # a table descriptor changed: reachability may change
        if place is None:
            self._breaks.pop(event.descriptor_address, None)
            return
        kind_old, kind_new = _kind(old, place), _kind(new, place)
        if kind_old != "invalid" and kind_new == "invalid":
            self._breaks[event.descriptor_address] = Break(old, event.index, place)
            return
        if kind_old == "invalid" and kind_new != "invalid":
            pending = self._breaks.pop(event.descriptor_address, None)
            if pending is None or pending.stage == 3:
                return  # a make from invalid, or a completed break-before-make
            fields = bbm_fields(pending.old, new, place)
            if fields:
                missing = ("the DSB after the invalid store", "a TLBI covering the VA",
                           "the DSB after the TLBI")[pending.stage]
                self._fire(event, place, pending.old, new, fields,
                           f"after the invalid store at #{pending.index}, {missing} is "
                           f"missing")
            return
        if kind_old == "invalid":
            return
        fields = bbm_fields(old, new, place)
        if fields:
            self._fire(event, place, old, new, fields, "no invalid step in between")

    def _on_barrier(self, event: Barrier) -> None:
        for pending in self._breaks.values():
            if pending.stage == 0 and event.operation.startswith("DSB"):
                pending.stage = 1  # the invalid descriptor is visible to walks
            elif pending.stage == 2 and _completes_tlbi(event.operation):
                pending.stage = 3

    def _on_tlbi(self, event: TlbInvalidate) -> None:
        try:
            scope = tlbi_scope(event.operation)
        except ValueError:
            return
        if not scope.stage1:
            return
        for pending in self._breaks.values():
            if pending.stage != 1 or scope.regime != pending.place.regime.name.value:
                continue
            if scope.everything or scope.by_asid and not scope.by_va:
                pending.stage = 2
                continue
            va = (event.operand & ((1 << 44) - 1)) << 12
            if va & (1 << 55):
                va |= 0xFF00_0000_0000_0000
            if pending.place.va <= va < pending.place.va + pending.place.size:
                pending.stage = 2

    def _fire(self, event: DescriptorWrite, place: Place, old: int, new: int,
              fields: list[str], why: str) -> None:
        what = ", ".join(fields)
        level = f"level-{place.level} descriptor for VA {place.va:#x} " \
                f"(+{format_size(place.size)})"
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"store at VA {event.va:#x} changes the {what} of the live {level} at PA "
            f"{event.descriptor_address:#x} ({old:#x} -> {new:#x}) without break-before-make: "
            f"{why}",
            (self._describe(old, new, place),
             *(f"TLB entry: VA {e.va_page:#x} -> PA {e.pa_page:#x} (made at #{e.made_at})"
               for e in event.live_entries[:2])),
        )

    @staticmethod
    def _describe(old: int, new: int, place: Place) -> str:
        mair = place.regime.mair
        shift = level_shift(place.granule, place.level)

        def one(value: int) -> str:
            if _kind(value, place) == "table":
                return f"table {value & _OA_MASK & ~((1 << place.granule.shift) - 1):#x}"
            attr = (mair >> (8 * ((value >> 2) & 7))) & 0xFF
            return (f"PA {value & _OA_MASK & ~((1 << shift) - 1):#x} "
                    f"{format_size(1 << shift)} {mair_attr_name(attr)} SH={(value >> 8) & 3}"
                    f"{' nG' if value & _NG else ''}{' contiguous' if value & _CONTIGUOUS else ''}")
        return (f"VA {place.va:#x} (+{format_size(place.size)}): old {one(old)}; "
                f"new {one(new)}")
