"""Instruction traces: every executed instruction, or a window around each MMU event.

:class:`Tracer` makes ``bootemu trace``'s lines without a Python call per
instruction: the machine's native trace log
(:meth:`~emu.machine.machine.Machine.record_instructions`) hands it the
executed instructions in batches (index and VA of each), and it formats a
batch at a time.  What a line says about its instruction - PA, symbol+offset,
encoding, disassembly - is worked out once per (VA, PA) and kept; the PA of
each page once per translation (dropped on every event that may change
translations), as the machine translates fetches.  Lines reach the writer a
batch at a time, at the latest when the run stops, so a run that stops on
an error loses nothing.  Where instructions are left out (outside the
windows), a gap line says how many, so that distant code never reads as
consecutive.

A line is made when the machine hands its instruction over - at the next
event, TLB fill or stop - from the memory as it is then: code the guest
rewrites before that shows its new bytes.  What was worked out is dropped
at every IC instruction, the invalidation the architecture requires before
rewritten code is executed, so code rewritten as the architecture asks is
shown as it ran when executed again.

:class:`PerInstructionTracer` makes the same lines the slow way - a Python
call per instruction (:meth:`~emu.machine.machine.Machine.watch_instructions`),
one :class:`TraceLine` each - and is kept as the reference the fast one is
tested against.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from emu.arch.mmu.regime import regime_for_el
from emu.arch.mmu.tlb import PAGE_MASK
from emu.machine.events import Barrier, CacheMaintenance, Event, SysRegWrite, TlbInvalidate
from emu.machine.machine import Machine, MachineObserver
from emu.machine.tracelog import InstructionBatch
from emu.machine.windows import barrier_name
from emu.report.ending import counted

Layout = Literal["text", "json", "pc"]
LAYOUTS: tuple[Layout, ...] = ("text", "json", "pc")


class Disassembler:
    """Capstone, with a cache: boot code executes the same few words many times."""

    def __init__(self) -> None:
        self._cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
        self._cache: dict[tuple[int, int], str] = {}

    def text(self, word: int, address: int) -> str:
        key = (word, address)
        text = self._cache.get(key)
        if text is None:
            decoded = next(self._cs.disasm_lite(word.to_bytes(4, "little"), address), None)
            text = f"{decoded[2]} {decoded[3]}".strip() if decoded else f".inst {word:#010x}"
            self._cache[key] = text
        return text


@dataclass(frozen=True)
class TraceLine:
    """One executed instruction."""

    index: int
    va: int
    pa: int | None
    symbol: str
    word: int
    text: str
    # What the instruction is or did that the trace names: its barrier
    # (``DSB SY``), then the machine's events at it, ``; ``-separated.
    event: str | None = None

    def format(self) -> str:
        pa = f"{self.pa:#014x}" if self.pa is not None else "      (fault)"
        line = (f"{self.index:>9}  {self.va:#018x}  {pa}  {self.symbol:<30}  "
                f"{self.word:08x}  {self.text}")
        return f"{line}    ; {self.event}" if self.event else line

    def format_pc(self) -> str:
        """The PC-only line: index and VA."""
        return f"{self.index:>9}  {self.va:#018x}"

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "va": self.va, "pa": self.pa, "symbol": self.symbol,
                "encoding": f"{self.word:08x}", "disassembly": self.text, "event": self.event}


@dataclass(frozen=True)
class TraceGap:
    """``count`` executed instructions left out of a trace: those numbered
    between the lines either side (whose indices differ by ``count + 1``), or
    before the first line (from #0), or after the last one (to the stop)."""

    count: int

    def format(self) -> str:
        return f"... {counted(self.count, 'instruction')} left out ..."

    def to_dict(self) -> dict[str, object]:
        return {"gap": self.count}


def _gap_text(count: int, layout: Layout) -> str:
    gap = TraceGap(count)
    return (json.dumps(gap.to_dict()) if layout == "json" else gap.format()) + "\n"


# One line of each layout from (index, body): the body is what follows the
# index (text), or the members after it (JSON, ``"event"`` last), or the VA
# (PC-only).  A barrier's body names it (``    ; DSB SY``, ``"event": "DSB SY"``):
# barriers are annotated wherever they are, from the instruction itself.
_LINE_FORMATS: dict[Layout, str] = {
    "text": "%9d  %s\n",
    "json": '{"index": %d, %s}\n',
    "pc": "%9d  %s\n",
}
# The same, for InstructionBatch.lines: (head, index width, middle, tail).
_LINE_PARTS: dict[Layout, tuple[str, int, str, str]] = {
    "text": ("", 9, "  ", "\n"),
    "json": ('{"index": ', 0, ", ", "}\n"),
    "pc": ("", 9, "  ", "\n"),
}
_TEXT_NOTE = "    ; "  # what separates a text line from its annotation
_JSON_NOTE = ', "event": '  # the last member of a JSON body


def _note_of(body: str, layout: Layout) -> tuple[str, str | None]:
    """A body split into what names the instruction and its annotation (None: none)."""
    if layout == "json":
        plain, _, note = body.rpartition(_JSON_NOTE)
        return plain, json.loads(note)
    if layout == "text":
        plain, separator, note = body.partition(_TEXT_NOTE)
        return plain, note if separator else None
    return body, None


def _annotated(body: str, layout: Layout, notes: list[str]) -> str:
    """``body`` with ``notes`` (the machine's events at its instruction) added to
    its annotation."""
    plain, note = _note_of(body, layout)
    note = "; ".join(([note] if note else []) + notes)
    if layout == "json":
        return f"{plain}{_JSON_NOTE}{json.dumps(note)}"
    if layout == "text":
        return f"{plain}{_TEXT_NOTE}{note}"
    return body


# Events after which a page may translate to another PA.
_TRANSLATION_EVENTS = (SysRegWrite, TlbInvalidate)


class _Pending:
    """The last instruction seen, not written yet: its events may still come,
    or the run may stop in front of it."""

    __slots__ = ("index", "va", "el", "body")

    def __init__(self, index: int, va: int, el: int, body: str) -> None:
        self.index = index
        self.va = va
        self.el = el
        self.body = body


class Tracer(MachineObserver):
    """Writes a trace of the machine's executed instructions, a batch at a time.

    ``write`` receives text made of complete lines (each ending in a newline):
    with ``layout`` ``"text"``, ``TraceLine.format()``'s; ``"json"``,
    ``json.dumps(TraceLine.to_dict())``'s; ``"pc"``, index and VA only
    (``TraceLine.format_pc()``, no event).  With ``window`` None every
    instruction is written.  With ``window=N`` only the N instructions before
    and after each MMU event are: a ring buffer holds the recent past, and a
    countdown the near future; each run of instructions left out, before,
    between or after the windows, is written as a gap line in its place.
    Only events of the ``events`` categories
    (:data:`~emu.machine.events.EVENT_CATEGORIES`; all by default) annotate
    instructions and open windows.  Call :meth:`flush` when the run has ended.
    """

    def __init__(
        self, machine: Machine, write: Callable[[str], None], window: int | None = None,
        events: frozenset[str] | None = None, layout: Layout = "text",
        address_filter: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"no trace layout {layout!r}")
        if window is not None and address_filter:
            raise ValueError("a trace takes a window or an address filter, not both")
        self.machine = machine
        # Only instructions at VAs in these [start, end) ranges have lines
        # (the rest are gaps); None: all.
        self.address_filter = tuple(address_filter) if address_filter else None
        # index -> lines of other logs (add_detail) to follow that instruction's.
        self._details: dict[int, list[str]] = {}
        self.write = write
        self.window = window
        self.events = events
        self.layout = layout
        self._line = _LINE_FORMATS[layout]
        self._parts = _LINE_PARTS[layout]
        # index -> the descriptions of the events at that instruction, until
        # its line is written.  An event may come before the log hands its
        # instruction over (a barrier or a table store is seen as it is about
        # to execute), or after (an abort); either way it annotates that line.
        self._notes: dict[int, list[str]] = {}
        # (index, body) of the recent past, while no window is open.
        self._recent: collections.deque[tuple[int, str]] = collections.deque(maxlen=window or 1)
        self._after = 0
        self._pending: _Pending | None = None
        self._last_emitted = -1  # the index of the last line written
        # Per exception level: page -> its PA, and VA -> body, under the
        # translations in force now (dropped when they may change).
        self._pa_of_page: dict[tuple[int, int], int | None] = {}
        self._bodies: dict[int, dict[int, str]] = {}
        self._barriers: dict[int, set[int]] = {}  # per EL: the VAs of barriers among them
        # (VA, PA) -> body, whatever the translation (dropped when code may change).
        self._described: dict[tuple[int, int | None], tuple[str, bool]] = {}  # body, barrier?
        self._disassembler = Disassembler()
        machine.observers.append(self)
        machine.record_instructions(self.on_instructions)

    # -- what the machine hands over ---------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, _TRANSLATION_EVENTS):
            self._pa_of_page.clear()
            self._bodies.clear()
            self._barriers.clear()
        elif isinstance(event, CacheMaintenance) and event.operation.startswith("IC"):
            # Code may have been rewritten: an instruction cache invalidation
            # is what the architecture asks for before it is executed.
            self._bodies.clear()
            self._barriers.clear()
            self._described.clear()
        if isinstance(event, Barrier) or (self.events is not None
                                          and event.category not in self.events):
            return  # barriers are named from the instructions themselves
        if event.index > self._last_emitted:
            self._notes.setdefault(event.index, []).append(event.describe())

    def on_instructions(self, batch: InstructionBatch) -> None:
        """Called by the machine with the next instructions executed."""
        first, va, last, last_va = batch.ends()
        count = len(batch)
        start = 0  # the first record not seen before
        text = ""
        pending = self._pending
        if pending is not None:
            if first == pending.index and va == pending.va:
                start = 1  # the same instruction again, after a stop in front of it
                if count == 1:
                    return
                first, va = batch.record(1)
            text = self._release(pending)
        released = count - 1 - start  # complete now: all but the last
        lines = ""
        if released:
            if (self.window is None and last - first == released
                    and first == self._last_emitted + 1 and self.address_filter is None
                    and not self._notes_between(first, last)):
                # The usual batch: consecutive instructions, each written, no event among them.
                bodies = None if self.layout == "pc" else self._bodies.setdefault(batch.el, {})
                lines = self._lines(batch, start, count - 1, bodies)
                self._last_emitted = last - 1
            else:
                flat = batch.flat[2 * start:2 * (count - 1)]
                text += "".join(self._release_records(flat, batch.el))
        self._pending = _Pending(last, last_va, batch.el, self._body_of(last_va, batch.el))
        if text:
            self.write(text)
        if lines:
            self.write(lines)  # on its own: it may be megabytes, not worth a copy

    def flush(self) -> None:
        """Write the last instruction; call when the run has ended.

        The run may have stopped in front of the last instruction seen (at its
        target, or on a fault in fetching it): that one never executed.  The
        instructions executed after the last line written (outside any window)
        end the trace as a gap.
        """
        executed = self.machine.executed
        pending, self._pending = self._pending, None
        out: list[str] = []
        if pending is not None and (pending.index < executed or pending.index in self._notes):
            # The instruction the run stopped in front of never completed: its
            # line is written only for what happened at it (an abort).
            out.append(self._release(pending))
        if executed > self._last_emitted + 1:
            out.append(_gap_text(executed - self._last_emitted - 1, self.layout))
            self._last_emitted = executed - 1
        for index in sorted(self._details):  # those of instructions that never completed
            out.append("".join(self._details.pop(index)))
        text = "".join(out)
        if text:
            self.write(text)

    # -- lines -----------------------------------------------------------------

    def add_detail(self, index: int, line: str) -> None:
        """Write ``line`` (a complete line of another log, ``--log``) right after
        the line of the ``index``-th instruction, or where that line would be."""
        self._details.setdefault(index, []).append(line)

    def _notes_between(self, first: int, last: int) -> bool:
        """Whether events or details go with any instruction from ``first`` up to ``last``."""
        return (any(first <= index <= last for index in self._notes)
                or any(index <= last for index in self._details))

    def _take_details(self, upto: int) -> str:
        """The detail lines of the instructions up to ``upto``, in order."""
        if not self._details or min(self._details) > upto:
            return ""
        done = sorted(index for index in self._details if index <= upto)
        return "".join(line for index in done for line in self._details.pop(index))

    def _release(self, pending: _Pending) -> str:
        """The text (maybe none) for the instruction before this batch, now complete."""
        mark = self.window is not None and self._is_barrier(pending.va, pending.el)
        return self._release_record(pending.index, pending.body, mark, pending.va)

    def _filtered_out(self, va: int | None) -> bool:
        ranges = self.address_filter
        return (ranges is not None and va is not None
                and not any(start <= va < end for start, end in ranges))

    def _is_barrier(self, va: int, el: int) -> bool:
        """Whether the instruction at ``va`` is a barrier the trace names (only
        when barriers are asked for)."""
        bodies = self._bodies.setdefault(el, {})
        if va not in bodies:
            bodies[va] = self._body(va, el)
        return va in self._barriers.get(el, ())

    def _release_record(self, index: int, body: str, mark: bool = False,
                        va: int | None = None) -> str:
        text = self._release_line(index, body, mark, va)
        if not self._details:
            return text
        details = self._take_details(index)
        if details and not text and index > self._last_emitted:
            # Its line is left out: the gap up to it comes first, then the details.
            text = _gap_text(index - self._last_emitted, self.layout)
            self._last_emitted = index
        return text + details

    def _release_line(self, index: int, body: str, mark: bool, va: int | None) -> str:
        """The text (maybe none) for an instruction, now complete.

        An instruction with events (or a barrier, when barriers are asked
        for) is always written, and with ``window`` it opens one: the ring
        buffer's instructions before it are written first, and the next
        ``window`` after it."""
        notes = self._notes.pop(index, None) if self._notes else None
        if self._filtered_out(va):
            return ""  # its events go with it; the gap before the next line counts it
        if self._notes and min(self._notes) < index:
            # Events whose instruction never had a line of its own (it faulted
            # before the log saw it): they annotate the next line, saying where.
            for early in sorted(i for i in self._notes if i < index):
                notes = [f"{note} (at #{early})" for note in self._notes.pop(early)] + (
                    notes or [])
        if notes:
            body = _annotated(body, self.layout, notes)
        if self.window is not None:
            if notes or mark:
                out = "".join(self._emit_text(i, b) for i, b in self._recent)
                self._recent.clear()
                self._after = self.window
                return out + self._emit_text(index, body)
            if self._after <= 0:
                self._recent.append((index, body))
                return ""
            self._after -= 1
        return self._emit_text(index, body)

    def _emit_text(self, index: int, body: str) -> str:
        return self._emit(index, self._line % (index, body))

    def _emit(self, index: int, line: str) -> str:
        """``line``, after a gap line for any instructions left out since the last line."""
        last = self._last_emitted
        if index <= last + 1:
            if index > last:
                self._last_emitted = index
            return line
        self._last_emitted = index
        return _gap_text(index - last - 1, self.layout) + line

    def _lines(self, batch: InstructionBatch, start: int, stop: int,
               bodies: dict[int, str] | None) -> str:
        """Records ``start`` to ``stop`` of ``batch``, each written, no event among them."""
        head, width, middle, tail = self._parts
        text = batch.lines(start, stop, bodies, head, width, middle, tail)
        if text is None and bodies is not None:
            # VAs not described yet under the translations in force.
            for va in set(batch.addresses[start:stop]).difference(bodies):
                bodies[va] = self._body(va, batch.el)
            text = batch.lines(start, stop, bodies, head, width, middle, tail)
        if text is None:  # not ASCII: line by line
            flat = batch.flat[2 * start:2 * stop]
            text = "".join(self._line % (index, self._body_of(va, batch.el))
                           for index, va in zip(flat[0::2], flat[1::2], strict=True))
        return text

    def _release_records(self, flat: list[int], el: int) -> list[str]:
        """The text of instructions (index, VA, index, VA, ...), now complete,
        one by one: with gaps before them, events among them, or in a window."""
        out: list[str] = []
        window = self.window
        count = len(flat) // 2
        if window is None:
            for i in range(0, 2 * count, 2):
                out.append(self._release_record(flat[i], self._body_of(flat[i + 1], el),
                                                va=flat[i + 1]))
            return out
        # In a window, what is written is: the instructions with an annotation
        # (the marks), the `window` before each and the `window` after; only
        # the marks are looked for one by one.
        bodies = self._bodies.setdefault(el, {})
        for va in set(flat[1::2]).difference(bodies):
            bodies[va] = self._body(va, el)  # which are barriers
        barriers = self._barriers.get(el, set())
        notes = self._notes
        marks = ([k for k in range(count) if flat[2 * k] in notes or flat[2 * k + 1] in barriers]
                 if notes or barriers else [])
        position = 0

        def release(upto: int) -> None:
            # The records from `position` up to `upto`: those the window still
            # open takes, then the ring buffer's.
            nonlocal position
            taken = min(max(self._after, 0), upto - position)
            for k in range(position, position + taken):
                out.append(self._release_record(flat[2 * k], self._body_of(flat[2 * k + 1], el)))
            self._recent.extend((flat[2 * k], self._body_of(flat[2 * k + 1], el))
                                for k in range(max(position + taken, upto - window), upto))
            position = upto

        for mark in marks:
            release(mark)
            out.append(self._release_record(flat[2 * mark], self._body_of(flat[2 * mark + 1], el),
                                            mark=True))
            position = mark + 1
        release(count)
        return out

    def _body_of(self, va: int, el: int) -> str:
        """The body of the line of the instruction at ``va``, executed at ``el``."""
        if self.layout == "pc":
            return f"{va:#018x}"
        bodies = self._bodies.setdefault(el, {})
        body = bodies.get(va)
        if body is None:
            body = bodies[va] = self._body(va, el)
        return body

    def _body(self, va: int, el: int) -> str:
        """What the line of the instruction at ``va`` says after its index.

        The PA is where the fetch went: through the TLB entry the machine
        holds for the page, stale or not, else through the tables
        (:meth:`~emu.machine.mmu.MmuUnit.executed_pa`)."""
        machine = self.machine
        page = va & PAGE_MASK
        key = (el, page)
        if key not in self._pa_of_page:
            regime = machine.mmu.regime(regime_for_el(el))
            self._pa_of_page[key] = machine.mmu.executed_pa(page, regime)
        base = self._pa_of_page[key]
        pa = None if base is None else base | (va & ~PAGE_MASK)
        described = self._described.get((va, pa))
        if described is None:
            line = self._describe(va, pa)
            if self.layout == "json":
                members = line.to_dict()
                del members["index"]
                body = json.dumps(members)[1:-1]
            elif self.layout == "text":
                body = line.format()[len(f"{0:>9}  "):]
            else:
                body = f"{va:#018x}"
            described = self._described[(va, pa)] = (body, line.event is not None)
        body, barrier = described
        if barrier:
            self._barriers.setdefault(el, set()).add(va)
        return body

    def _describe(self, va: int, pa: int | None) -> TraceLine:
        return describe_instruction(self.machine, self._disassembler, va, pa,
                                    self.events is None or "barrier" in self.events)


def describe_instruction(machine: Machine, disassembler: Disassembler, va: int, pa: int | None,
                         barriers: bool) -> TraceLine:
    """The line (index 0) of the instruction at ``va``, fetched from ``pa``;
    annotated with its barrier when ``barriers``."""
    data = machine.read_physical(pa, 4) if pa is not None else None
    word = int.from_bytes(data, "little") if data is not None else 0
    return TraceLine(index=0, va=va, pa=pa, symbol=machine.symbolize(va, pa), word=word,
                     text=disassembler.text(word, va),
                     event=barrier_name(word) if barriers and data is not None else None)


class PerInstructionTracer(MachineObserver):
    """The reference tracer: a Python call per instruction, a :class:`TraceLine`
    each, handed to ``sink`` with :class:`TraceGap` s where instructions are
    left out.  Makes the lines :class:`Tracer` makes, at a small fraction of
    its speed; ``window`` and ``events`` are :class:`Tracer`'s.

    It keeps every instruction and every event until :meth:`flush`, and only
    then puts them together, so that no question of when an event arrives
    can arise: an event annotates the first line of its instruction's index,
    or, when that instruction has no line (a fetch that faulted), the next
    line, saying where (``(at #N)``).
    """

    def __init__(
        self, machine: Machine, sink: Callable[[TraceLine | TraceGap], None],
        window: int | None = None, events: frozenset[str] | None = None,
    ) -> None:
        self.machine = machine
        self.sink = sink
        self.window = window
        self.events = events
        self._lines: list[TraceLine] = []
        self._notes: dict[int, list[str]] = {}  # index -> its events
        self._pa_of_page: dict[int, int | None] = {}
        self._disassembler = Disassembler()
        machine.observers.append(self)
        machine.watch_instructions(self)

    def on_event(self, event: Event) -> None:
        if isinstance(event, _TRANSLATION_EVENTS):
            self._pa_of_page.clear()
        if isinstance(event, Barrier) or (self.events is not None
                                          and event.category not in self.events):
            return
        self._notes.setdefault(event.index, []).append(event.describe())

    def on_instruction(self, index: int, address: int) -> None:
        """Called by the machine before each instruction."""
        lines = self._lines
        if lines and lines[-1].index == index and lines[-1].va == address:
            return  # the same instruction again, after a stop in front of it
        page = address & PAGE_MASK
        if page not in self._pa_of_page:
            self._pa_of_page[page] = self.machine.mmu.executed_pa(page)
        base = self._pa_of_page[page]
        pa = None if base is None else base | (address & ~PAGE_MASK)
        line = describe_instruction(self.machine, self._disassembler, address, pa,
                                    self.events is None or "barrier" in self.events)
        lines.append(TraceLine(**{**line.__dict__, "index": index}))

    def flush(self) -> None:
        """Hand over the trace; call when the run has ended (see :meth:`Tracer.flush`)."""
        executed = self.machine.executed
        lines = self._lines
        if lines and lines[-1].index >= executed and lines[-1].index not in self._notes:
            lines.pop()  # the instruction the run stopped in front of: never executed
        notes = self._notes
        annotated: list[TraceLine] = []
        for line in lines:
            found = [f"{note} (at #{index})"
                     for index in sorted(i for i in notes if i < line.index)
                     for note in notes.pop(index)] + notes.pop(line.index, [])
            if line.event:
                found.insert(0, line.event)
            annotated.append(TraceLine(**{**line.__dict__, "event": "; ".join(found)})
                             if found else line)
        shown = range(len(annotated))
        if self.window is not None:
            marks = [k for k, line in enumerate(annotated) if line.event]
            shown = sorted({k for mark in marks
                            for k in range(max(0, mark - self.window),
                                           min(len(annotated), mark + self.window + 1))})
        last = -1
        for k in shown:
            line = annotated[k]
            if line.index > last + 1:
                self.sink(TraceGap(line.index - last - 1))
            last = max(last, line.index)
            self.sink(line)
        if executed > last + 1:
            self.sink(TraceGap(executed - last - 1))
        self._lines = []
