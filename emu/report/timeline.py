"""The MMU timeline as reports show it: the events a reader asked for
(``--events``), with cache-maintenance loops and repeated stretches folded.

A boot runs cache maintenance in loops of tens of thousands (DC ZVA over
BSS, DC CIVAC over page tables) and maps and unmaps one page over and over;
one row per event buries the few that matter.  Outside MMU-transition
windows, the timeline therefore folds:

* a **cache loop**: consecutive executions of one IC/DC instruction (same
  PC, same operation) become one row with the count, the range of addresses
  maintained, and the first and last instruction index;
* a **maintenance stretch**: :data:`MIN_STRETCH` or more consecutive rows
  that are nothing but cache maintenance, TLB invalidation and descriptor
  writes (a hypervisor mapping, scrubbing and cleaning page after page)
  become one row counting each operation.  Descriptor writes join a stretch
  only in the default timeline: a reader who asks for ``--events
  descriptor`` sees each;
* a **repeat**: a stretch of rows that repeats one sequence of instructions
  (same PCs, same kinds, other operands) is shown once, followed by a line
  saying how many more times it came and up to where.

Inside a window every event keeps its row, and so do MMU on/off, TTBR
writes, exceptions, and every event a finding points at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from emu.arch.mmu.tlb import PAGE_MASK
from emu.machine.events import (
    EVENT_CATEGORIES,
    CacheMaintenance,
    DescriptorWrite,
    Event,
    SysRegWrite,
    TlbInvalidate,
    TransitionWindow,
)

ALL_EVENTS = frozenset(EVENT_CATEGORIES)
# Barriers are seen only where the machine watches instructions, so a row for
# them would say more about the watching than about the boot.
DEFAULT_EVENTS = ALL_EVENTS - {"barrier"}
# Categories never folded into a repeat: each is a step of an MMU transition
# or a stop in the boot's flow that a reader looks for.
NEVER_FOLDED = frozenset({"mmu", "ttbr", "exception"})
# The longest sequence of rows recognised as repeating.
MAX_PERIOD = 8
# The fewest consecutive maintenance-only rows folded into one stretch: fewer
# read as well unfolded, and a single page's clean (DC ZVA loop, DC CIVAC
# loop, IC IALLU) stays legible.
MIN_STRETCH = 4
# The categories a stretch is made of, besides descriptor writes (see above).
STRETCH_CATEGORIES = frozenset({"cache", "tlbi"})


class EventsError(ValueError):
    """An ``--events`` value that names no category."""


def parse_events(text: str) -> frozenset[str]:
    """The categories a comma list names: category names (see
    :data:`~emu.machine.events.EVENT_CATEGORIES`), ``all`` or ``default``;
    :class:`EventsError` names a word that is neither."""
    chosen: set[str] = set()
    for word in (part.strip().lower() for part in text.split(",")):
        if word == "all":
            chosen |= ALL_EVENTS
        elif word == "default":
            chosen |= DEFAULT_EVENTS
        elif word in EVENT_CATEGORIES:
            chosen.add(word)
        else:
            what = f"'{word}' is not" if word else "an empty item is not"
            raise EventsError(f"{what} an event category (choose from "
                              f"{', '.join(EVENT_CATEGORIES)}, all, default)")
    return frozenset(chosen)


@dataclass(frozen=True)
class CacheLoop:
    """Consecutive executions of one cache-maintenance instruction, outside
    any MMU-transition window: one timeline row.

    The address range is that of the operands: ``va_first`` and ``va_last``
    are the lowest and highest virtual address given to the instruction,
    ``step`` the smallest distance between two of them, ``runs`` the number
    of stretches of operands ``step`` apart (1: one contiguous range).  Their
    PAs are known where some event of the loop knew the PA of an address in
    the same 4 KiB page (see :class:`~emu.machine.events.CacheMaintenance`).
    """

    events: tuple[CacheMaintenance, ...]

    @property
    def first(self) -> CacheMaintenance:
        return self.events[0]

    @property
    def operation(self) -> str:
        return self.first.operation

    @property
    def count(self) -> int:
        return len(self.events)

    @property
    def first_index(self) -> int:
        return self.first.index

    @property
    def last_index(self) -> int:
        return self.events[-1].index

    def _addresses(self) -> list[int]:
        return sorted({e.address for e in self.events if e.address is not None})

    @property
    def va_first(self) -> int | None:
        addresses = self._addresses()
        return addresses[0] if addresses else None

    @property
    def va_last(self) -> int | None:
        addresses = self._addresses()
        return addresses[-1] if addresses else None

    @property
    def step(self) -> int | None:
        addresses = self._addresses()
        gaps = [b - a for a, b in zip(addresses, addresses[1:], strict=False)]
        return min(gaps) if gaps else None

    @property
    def runs(self) -> int:
        addresses, step = self._addresses(), self.step
        if not addresses:
            return 0
        return 1 + sum(1 for a, b in zip(addresses, addresses[1:], strict=False)
                       if b - a != step)

    def pa_of(self, va: int | None) -> int | None:
        """The PA of operand address ``va``, if the loop's events tell it."""
        if va is None:
            return None
        page = va & PAGE_MASK
        for event in self.events:
            if (event.address is not None and event.data_pa is not None
                    and event.address & PAGE_MASK == page):
                return (event.data_pa & PAGE_MASK) | (va & ~PAGE_MASK)
        return None

    def describe(self) -> str:
        """``DC ZVA x64, VA 0x443000-0x443fc0 step 0x40 (PA ...), #267842-#268094``."""
        text = f"{self.operation} x{self.count}"
        first, last = self.va_first, self.va_last
        if first is not None and last is not None:
            text += f", VA {first:#x}-{last:#x}"
            if self.step is not None:
                text += f" step {self.step:#x}"
            if self.runs > 1:
                text += f" in {self.runs} runs"
            pa_first, pa_last = self.pa_of(first), self.pa_of(last)
            if pa_first is not None and pa_last is not None:
                text += f" (PA {pa_first:#x}-{pa_last:#x})"
        return f"{text}, #{self.first_index}-#{self.last_index}"

    def to_dict(self) -> dict[str, object]:
        first, last = self.va_first, self.va_last
        return {
            "operation": self.operation,
            "count": self.count,
            "first_index": self.first_index,
            "last_index": self.last_index,
            "va_first": first,
            "va_last": last,
            "step": self.step,
            "runs": self.runs,
            "pa_first": self.pa_of(first),
            "pa_last": self.pa_of(last),
        }


@dataclass(frozen=True)
class Repeat:
    """A stretch of rows that repeats one sequence: ``rows`` is its first
    occurrence, which came ``times`` times in all, the last one ending at
    instruction ``last_index``; ``events`` counts every event folded."""

    rows: tuple[Event | CacheLoop | MaintenanceStretch, ...]
    times: int
    last_index: int
    events: int

    def describe(self) -> str:
        what = "row above" if len(self.rows) == 1 else f"{len(self.rows)} rows above"
        return (f"... the {what} came {self.times - 1} more time(s) "
                f"(the same instructions; other operands), up to #{self.last_index}")


@dataclass(frozen=True)
class MaintenanceStretch:
    """Consecutive timeline rows holding only cache maintenance, TLB
    invalidation and (in the default timeline) descriptor writes, outside any
    MMU-transition window: one row.  ``rows`` are the cache loops and single
    events, in order."""

    rows: tuple[Event | CacheLoop, ...]

    @property
    def first_index(self) -> int:
        first = self.rows[0]
        return first.first_index if isinstance(first, CacheLoop) else first.index

    @property
    def last_index(self) -> int:
        return _last_index(self.rows[-1])

    def counts(self) -> dict[str, int]:
        """Instructions executed per operation (``DC ZVA``: 1234), in order of
        first appearance."""
        counts: dict[str, int] = {}
        for row in self.rows:
            operation = row.operation if isinstance(row, CacheLoop) else _operation(row)
            counts[operation] = counts.get(operation, 0) + (
                row.count if isinstance(row, CacheLoop) else 1)
        return counts

    @property
    def events(self) -> int:
        return sum(self.counts().values())

    def live_descriptor_writes(self) -> int:
        """Descriptor writes to entries some live TLB entry was walked through."""
        return sum(1 for row in self.rows
                   if isinstance(row, DescriptorWrite) and row.live_entries)

    def describe(self) -> str:
        """``maintenance in 45 rows: descriptor x12 (3 live), DC ZVA x12345,
        IC IALLUIS x5, #12983452-#13902261``."""
        parts = []
        for operation, count in self.counts().items():
            part = f"{operation} x{count}"
            if operation == "descriptor-write":
                part += f" ({self.live_descriptor_writes()} live)"
            parts.append(part)
        return (f"maintenance in {len(self.rows)} rows: {', '.join(parts)}, "
                f"#{self.first_index}-#{self.last_index}")

    def to_dict(self) -> dict[str, object]:
        return {"rows": len(self.rows), "first_index": self.first_index,
                "last_index": self.last_index, "operations": self.counts(),
                "live_descriptor_writes": self.live_descriptor_writes()}


Row = Event | CacheLoop | MaintenanceStretch | Repeat


def timeline_rows(events: Iterable[Event], windows: Sequence[TransitionWindow],
                  shown: frozenset[str] = DEFAULT_EVENTS,
                  keep: frozenset[int] = frozenset()) -> list[Row]:
    """The timeline of a run: its ``events`` of the ``shown`` categories, cache
    loops and repeats outside ``windows`` folded (see the module docstring).

    ``keep`` holds instruction indices whose events stay rows of their own
    (those a finding points at).
    """
    spans = [(w.opened_by.index, w.closed_by.index if w.closed_by is not None else None)
             for w in windows]

    def in_window(index: int) -> bool:
        return any(start <= index and (end is None or index <= end) for start, end in spans)

    chosen = [e for e in events if e.category in shown]
    loops: list[Event | CacheLoop] = []
    pending: list[CacheMaintenance] = []

    def close_loop() -> None:
        if len(pending) > 1:
            loops.append(CacheLoop(tuple(pending)))
        else:
            loops.extend(pending)
        pending.clear()

    for event in chosen:
        if (isinstance(event, CacheMaintenance) and not in_window(event.index)
                and event.index not in keep):
            if pending and (pending[-1].pc, pending[-1].operation) != (
                    event.pc, event.operation):
                close_loop()
            pending.append(event)
            continue
        close_loop()
        loops.append(event)
    close_loop()

    # Descriptor writes are folded only where the reader did not ask for them.
    folding = STRETCH_CATEGORIES | ({"descriptor"} if shown == DEFAULT_EVENTS else set())
    rows = _fold_stretches(loops, in_window, keep, frozenset(folding))
    keys = [_fold_key(row, in_window, keep) for row in rows]
    return _fold_repeats(rows, keys)


def _operation(event: Event) -> str:
    return event.operation if isinstance(event, TlbInvalidate | CacheMaintenance) else event.kind


def _maintenance_only(row: Event | CacheLoop, in_window: Callable[[int], bool],
                      keep: frozenset[int], folding: frozenset[str]) -> bool:
    """Whether ``row`` is of the ``folding`` categories and a stretch may fold
    it (not in a window, not pointed at by a finding)."""
    if isinstance(row, CacheLoop):
        return True
    return (row.category in folding and not in_window(row.index)
            and row.index not in keep)


def _fold_stretches(rows: list[Event | CacheLoop], in_window: Callable[[int], bool],
                    keep: frozenset[int], folding: frozenset[str],
                    ) -> list[Event | CacheLoop | MaintenanceStretch]:
    """Each run of at least MIN_STRETCH rows of the ``folding`` categories as
    one stretch."""
    out: list[Event | CacheLoop | MaintenanceStretch] = []
    run: list[Event | CacheLoop] = []

    def close_run() -> None:
        if len(run) >= MIN_STRETCH:
            out.append(MaintenanceStretch(tuple(run)))
        else:
            out.extend(run)
        run.clear()

    for row in rows:
        if _maintenance_only(row, in_window, keep, folding):
            run.append(row)
            continue
        close_run()
        out.append(row)
    close_run()
    return out


def _fold_key(row: Event | CacheLoop | MaintenanceStretch, in_window: Callable[[int], bool],
              keep: frozenset[int]) -> tuple | None:
    """What must agree for two rows to count as the same step of a repeat
    (None: the row never folds)."""
    if isinstance(row, CacheLoop):
        return ("cache", row.first.pc, row.operation)
    if isinstance(row, MaintenanceStretch):
        return ("stretch", tuple(row.counts()))
    if row.category in NEVER_FOLDED or in_window(row.index) or row.index in keep:
        return None
    if isinstance(row, SysRegWrite):
        return (row.category, row.pc, row.register)
    if isinstance(row, TlbInvalidate | CacheMaintenance):
        return (row.category, row.pc, row.operation)
    if isinstance(row, DescriptorWrite):
        return (row.category, row.pc)
    return (row.category, row.pc, row.kind)


def _fold_repeats(rows: list[Event | CacheLoop | MaintenanceStretch],
                  keys: list[tuple | None]) -> list[Row]:
    """Greedy, left to right: at each row, the period (up to MAX_PERIOD) whose
    consecutive repetitions cover the most rows, if it repeats at all."""
    out: list[Row] = []
    i, n = 0, len(rows)
    while i < n:
        best_period, best_times = 0, 1
        for period in range(1, MAX_PERIOD + 1):
            if i + period > n or keys[i + period - 1] is None:
                break
            pattern = keys[i:i + period]
            times = 1
            while keys[i + times * period:i + (times + 1) * period] == pattern:
                times += 1
            if times > 1 and times * period > best_times * max(best_period, 1):
                best_period, best_times = period, times
        if best_period == 0:
            out.append(rows[i])
            i += 1
            continue
        first = tuple(rows[i:i + best_period])
        folded = rows[i:i + best_period * best_times]
        out.extend(first)
        out.append(Repeat(first, best_times, _last_index(folded[-1]),
                          sum(_event_count(row) for row in folded)))
        i += best_period * best_times
    return out


def _event_count(row: Event | CacheLoop | MaintenanceStretch) -> int:
    if isinstance(row, CacheLoop):
        return row.count
    if isinstance(row, MaintenanceStretch):
        return row.events
    return 1


def _last_index(row: Event | CacheLoop | MaintenanceStretch) -> int:
    return row.last_index if isinstance(row, CacheLoop | MaintenanceStretch) else row.index
