"""An architectural TLB model: what the hardware may still hold.

Unicorn's softmmu TLB is a cache the emulator flushes whenever it likes; the
architecture's TLB is not.  Entries made by a walk stay usable, tagged by
translation regime (and ASID where the regime has one), across page-table and
TTBR changes until a TLBI that covers them.  After reset the contents are
UNKNOWN, so a regime counts as *unknown* until its first invalidate-all.

The checks ask this model which translations are *live* (made since the last
invalidation that covers them) when tables are replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.arch.sysregs import tlbi_scope

PAGE_MASK = ~0xFFF


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

    def usable_with(self, asid: int | None) -> bool:
        """Whether the CPU may use this entry while ``asid`` is current."""
        return self.asid is None or self.asid == asid


class TlbModel:
    """Per-regime sets of cached translations and whether each set is known."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], TlbEntry] = {}
        self._known: set[str] = set()
        # 4 KiB pages holding descriptors that live entries were walked from,
        # with how many entries depend on each.
        self._table_pages: dict[int, int] = {}

    def is_table_page(self, pa: int) -> bool:
        """Whether a physical page holds descriptors some live entry was walked from."""
        return self._table_pages.get(pa & PAGE_MASK, 0) > 0

    def entries_by_descriptor(self, page: int) -> dict[int, tuple[TlbEntry, ...]]:
        """For each descriptor address in a 4 KiB page, the live entries walked through it."""
        found: dict[int, list[TlbEntry]] = {}
        for entry in self._entries.values():
            for address in entry.descriptors:
                if address & PAGE_MASK == page:
                    found.setdefault(address, []).append(entry)
        return {address: tuple(entries) for address, entries in found.items()}

    def _count_tables(self, entry: TlbEntry, delta: int) -> None:
        for page in {address & PAGE_MASK for address in entry.descriptors}:
            self._table_pages[page] = self._table_pages.get(page, 0) + delta

    def _drop(self, keys: list[tuple[str, int]]) -> int:
        for key in keys:
            self._count_tables(self._entries.pop(key), -1)
        return len(keys)

    def is_known(self, regime: str) -> bool:
        """True once an invalidate-all has cleared whatever reset left behind."""
        return regime in self._known

    def insert(self, entry: TlbEntry) -> None:
        key = (entry.regime, entry.va_page)
        if key in self._entries:
            self._drop([key])
        self._entries[key] = entry
        self._count_tables(entry, +1)

    def entries(self, regime: str) -> list[TlbEntry]:
        return [e for (r, _), e in self._entries.items() if r == regime]

    def lookup(self, regime: str, va: int) -> TlbEntry | None:
        return self._entries.get((regime, va & PAGE_MASK))

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
            for key, e in self._entries.items()
            if e.regime == regime
            and (e.va_page & ~(e.size - 1)) <= va < (e.va_page & ~(e.size - 1)) + e.size
            and (asid is None or e.asid is None or e.asid == asid)
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
