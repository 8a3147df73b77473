"""An architectural TLB model: what the hardware may still hold.

Unicorn's softmmu TLB is a cache the emulator flushes whenever it likes; the
architecture's TLB is not.  Entries made by a walk stay usable, tagged by
translation regime (and ASID where the regime has one), across page-table and
TTBR changes until a TLBI that covers them.  After reset the contents are
UNKNOWN, so a regime counts as *unknown* until its first invalidate-all.

The checks ask this model which translations are *live* (made since the last
invalidation that covers them) when tables are replaced.

Entries are keyed by (regime, ASID, VA page): a non-global entry belongs to
one ASID and can only translate while that ASID is current (DDI 0487
D8.16.3.1, R_XXNPZ), so the entries of two ASIDs for one VA live side by side
and neither replaces the other.  A global entry (ASID None) serves every ASID.

The module also says which DSB completes what (:func:`dsb_completes_tlbi`,
:func:`dsb_completes_stores`): a TLBI, or a store to a translation table, is
only guaranteed to have taken effect after a DSB of the right kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from emu.arch.sysregs import tlbi_scope

PAGE_MASK = ~0xFFF

# An entry's key: (regime, ASID or None for a global entry, VA page).
_Key = tuple[str, int | None, int]


@dataclass(frozen=True)
class TlbEntry:
    """One cached translation of a 4 KiB page (the unit Unicorn fills in)."""

    regime: str
    va_page: int
    pa_page: int
    size: int
    select: int  # which TTBR's tables gave it (0, or 1 in the EL1&0 upper range)
    ttbr: int  # that TTBR's value when the walk was made
    asid: int | None  # None for a global entry (and in regimes without ASIDs)
    made_at: int
    executable: bool
    writable: bool
    perms: int = 0  # the softmmu permissions (UC_PROT_*) the translation granted
    descriptors: tuple[int, ...] = ()  # physical addresses of the descriptors walked
    memory_attributes: int = -1  # the MAIR byte the walk gave (-1: not recorded)
    shareability: int = -1  # SH[1:0] of the leaf descriptor (-1: not recorded)
    level: int = -1  # level of the leaf descriptor (-1: not recorded)

    def usable_with(self, asid: int | None) -> bool:
        """Whether the CPU may use this entry while ``asid`` is current."""
        return self.asid is None or self.asid == asid


class TlbModel:
    """Per-regime sets of cached translations and whether each set is known."""

    def __init__(self) -> None:
        self._entries: dict[_Key, TlbEntry] = {}
        self._known: set[str] = set()
        # 4 KiB pages holding descriptors that live entries were walked from,
        # with the entries walked through each: a store to a table page, and a
        # TLBI by VA, then look at a few entries rather than at all of them
        # (a kernel's TLB model holds tens of thousands).
        self._by_table_page: dict[int, set[_Key]] = {}
        # (regime, block size, block base) -> the entries of that block.
        self._by_block: dict[tuple[str, int, int], set[_Key]] = {}
        self._sizes: dict[str, set[int]] = {}
        # Insertion order, so the indexes give entries in the order they were made.
        self._order: dict[_Key, int] = {}
        self._next = 0
        # Told of every entry as it is made (``bootemu trace --log mmu``).
        self.on_insert: Callable[[TlbEntry], None] | None = None

    def is_table_page(self, pa: int) -> bool:
        """Whether a physical page holds descriptors some live entry was walked from."""
        return bool(self._by_table_page.get(pa & PAGE_MASK))

    def entries_by_descriptor(
        self, page: int, asids: dict[str, int | None] | None = None
    ) -> dict[int, tuple[TlbEntry, ...]]:
        """For each descriptor address in a 4 KiB page, the live entries walked through it.

        With ``asids`` (regime name -> current ASID), only the entries usable
        now count: a non-global entry of another ASID is not live for the
        current context (R_XXNPZ).
        """
        found: dict[int, list[TlbEntry]] = {}
        keys = sorted(self._by_table_page.get(page, ()), key=self._order.__getitem__)
        for entry in (self._entries[key] for key in keys):
            if asids is not None and not entry.usable_with(asids.get(entry.regime)):
                continue
            for address in entry.descriptors:
                if address & PAGE_MASK == page:
                    found.setdefault(address, []).append(entry)
        return {address: tuple(entries) for address, entries in found.items()}

    def _index(self, key: _Key, entry: TlbEntry) -> None:
        for page in {address & PAGE_MASK for address in entry.descriptors}:
            self._by_table_page.setdefault(page, set()).add(key)
        block = (entry.regime, entry.size, entry.va_page & ~(entry.size - 1))
        self._by_block.setdefault(block, set()).add(key)
        self._sizes.setdefault(entry.regime, set()).add(entry.size)
        self._order[key] = self._next
        self._next += 1

    def _unindex(self, key: _Key, entry: TlbEntry) -> None:
        for page in {address & PAGE_MASK for address in entry.descriptors}:
            keys = self._by_table_page[page]
            keys.discard(key)
            if not keys:
                del self._by_table_page[page]
        block = (entry.regime, entry.size, entry.va_page & ~(entry.size - 1))
        keys = self._by_block[block]
        keys.discard(key)
        if not keys:
            del self._by_block[block]
        del self._order[key]

    def _drop(self, keys: list[_Key]) -> int:
        for key in keys:
            self._unindex(key, self._entries.pop(key))
        return len(keys)

    def is_known(self, regime: str) -> bool:
        """True once an invalidate-all has cleared whatever reset left behind."""
        return regime in self._known

    def insert(self, entry: TlbEntry) -> None:
        """Add an entry; it replaces only an entry of the same regime, ASID and page."""
        key = (entry.regime, entry.asid, entry.va_page)
        if key in self._entries:
            self._drop([key])
        self._entries[key] = entry
        self._index(key, entry)
        if self.on_insert is not None:
            self.on_insert(entry)

    def entries(self, regime: str) -> list[TlbEntry]:
        return [e for (r, _, _), e in self._entries.items() if r == regime]

    def lookup(self, regime: str, va: int, asid: int | None = None) -> TlbEntry | None:
        """The entry the PE may use for VA while ``asid`` is current: one of that
        ASID, else a global one (None when there is neither)."""
        page = va & PAGE_MASK
        if asid is not None:
            entry = self._entries.get((regime, asid, page))
            if entry is not None:
                return entry
        return self._entries.get((regime, None, page))

    def invalidate_all(self, regime: str) -> int:
        """TLBI ALLE2 / VMALLE1 and friends: drop every entry of the regime."""
        doomed = [key for key in self._entries if key[0] == regime]
        self._known.add(regime)
        return self._drop(doomed)

    def invalidate_va(self, regime: str, va: int, asid: int | None = None) -> int:
        """TLBI VAE2 / VAE1 and friends: drop the entries that cover VA.

        Last-level-only forms (VALE*) are treated like their full forms: the
        model caches leaf translations only, so both remove the same entries.
        """
        doomed = [
            key
            for size in sorted(self._sizes.get(regime, ()))
            for key in sorted(self._by_block.get((regime, size, va & ~(size - 1)), ()),
                              key=self._order.__getitem__)
            if asid is None or key[1] is None or key[1] == asid
        ]
        return self._drop(doomed)

    def invalidate_asid(self, regime: str, asid: int) -> int:
        """TLBI ASIDE1: drop the non-global entries of one ASID."""
        doomed = [
            key for key, e in self._entries.items() if e.regime == regime and e.asid == asid
        ]
        return self._drop(doomed)

    def apply_tlbi(self, operation: str, operand: int) -> int:
        """Carry out a TLBI by name (``"TLBI ALLE2IS"``) on the model; returns entries dropped.

        Its reach comes from :func:`emu.arch.sysregs.tlbi_scope`.  The inner-shareable
        forms act like the local ones: the model has one PE.  Operand layout for
        the by-VA forms: VA[55:12] in bits [43:0], ASID in [63:48].
        """
        try:
            scope = tlbi_scope(operation)
        except ValueError:
            return 0
        if not scope.stage1:
            return 0  # stage-2 only (IPAS2*): the model holds stage-1 entries
        asid = (operand >> 48) & 0xFFFF
        if scope.everything:
            return self.invalidate_all(scope.regime)
        if scope.by_va:
            va = (operand & ((1 << 44) - 1)) << 12
            if va & (1 << 55):
                va |= 0xFF00_0000_0000_0000  # a TTBR1 address: bits above 55 copy bit 55
            return self.invalidate_va(scope.regime, va, asid if scope.by_asid else None)
        if scope.by_asid:
            return self.invalidate_asid(scope.regime, asid)
        return 0


# DSB option names as the disassembly spells them (``DSB ISH``), by domain and type.
_DSB_DOMAIN = {"SY": 3, "OSH": 2, "ISH": 1, "NSH": 0}


def _dsb_parts(operation: str) -> tuple[int, str] | None:
    """(domain rank, access type "" / "ST" / "LD") of ``"DSB ISHST"``; None if not a DSB."""
    words = operation.upper().split()
    if len(words) != 2 or words[0] != "DSB":
        return None
    option = words[1]
    kind = ""
    for suffix in ("ST", "LD"):
        if option.endswith(suffix) and option != "SY":
            option, kind = option[: -len(suffix)], suffix
            break
    if option == "":  # "DSB ST", "DSB LD": full system, one access type
        option = "SY"
    if option not in _DSB_DOMAIN:
        return None
    return _DSB_DOMAIN[option], kind


def dsb_completes_tlbi(dsb: str, tlbi: str) -> bool:
    """Whether barrier ``dsb`` (``"DSB ISH"``) completes TLB maintenance ``tlbi``.

    DDI 0487 D8.17.8 "Ordering and completion of TLB maintenance instructions":
    a TLBI is complete only after a DSB that applies to both loads and stores
    (R_PSMWS: DSB ISHST or ISHLD does not do), in a shareability domain that
    covers the TLBI's - any domain, NSH included, for a TLBI of this PE
    only; Inner Shareable or wider (ISH, OSH, SY) for the ``...IS`` forms,
    which reach every PE of the Inner Shareable domain.
    """
    parts = _dsb_parts(dsb)
    if parts is None:
        return False
    domain, kind = parts
    if kind:
        return False
    try:
        inner_shareable = tlbi_scope(tlbi).inner_shareable
    except ValueError:
        inner_shareable = tlbi.upper().endswith("IS")
    return domain >= _DSB_DOMAIN["ISH"] if inner_shareable else True


def dsb_completes_stores(dsb: str) -> bool:
    """Whether barrier ``dsb`` makes earlier stores (translation table updates) visible
    to translation table walks.

    A store to a translation table is guaranteed visible to the walker only
    after a DSB (DDI 0487 D8.17.1, R_DDMVT step 6; K11.5.3 "Ensuring the
    visibility of updates to translation tables"); a store-only DSB (Linux's
    ``dsb(ishst)`` after a table update) waits for stores, a load-only one
    (``...LD``) does not.
    """
    parts = _dsb_parts(dsb)
    return parts is not None and parts[1] != "LD"
