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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from emu.arch.mmu.regime import regime_for_el
from emu.arch.mmu.tlb import PAGE_MASK
from emu.machine.events import CacheMaintenance, Event, SysRegWrite, TlbInvalidate
from emu.machine.machine import Machine, MachineObserver
from emu.machine.tracelog import InstructionBatch
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
    event: str | None = None  # the MMU event this instruction caused, if any

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
# index (text), or the members after it (JSON), or the VA (PC-only).
_LINE_FORMATS: dict[Layout, str] = {
    "text": "%9d  %s\n",
    "json": '{"index": %d, %s, "event": null}\n',
    "pc": "%9d  %s\n",
}
# The same, for InstructionBatch.lines: (head, index width, middle, tail).
_LINE_PARTS: dict[Layout, tuple[str, int, str, str]] = {
    "text": ("", 9, "  ", "\n"),
    "json": ('{"index": ', 0, ", ", ', "event": null}\n'),
    "pc": ("", 9, "  ", "\n"),
}
_ANNOTATED: dict[Layout, str] = {
    "text": "%9d  %s    ; %s\n",
    "json": '{"index": %d, %s, "event": %s}\n',
}


# Events after which a page may translate to another PA.
_TRANSLATION_EVENTS = (SysRegWrite, TlbInvalidate)


class _Pending:
    """The last instruction seen, not written yet: its event may still come,
    or the run may stop in front of it."""

    __slots__ = ("index", "va", "body", "event")

    def __init__(self, index: int, va: int, body: str) -> None:
        self.index = index
        self.va = va
        self.body = body
        self.event: str | None = None


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
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"no trace layout {layout!r}")
        self.machine = machine
        self.write = write
        self.window = window
        self.events = events
        self.layout = layout
        self._line = _LINE_FORMATS[layout]
        self._parts = _LINE_PARTS[layout]
        self._annotated = _ANNOTATED.get(layout, "")
        # (index, body) of the recent past, while no window is open.
        self._recent: collections.deque[tuple[int, str]] = collections.deque(maxlen=window or 1)
        self._after = 0
        self._pending: _Pending | None = None
        self._last_emitted = -1  # the index of the last line written
        # Per exception level: page -> its PA, and VA -> body, under the
        # translations in force now (dropped when they may change).
        self._pa_of_page: dict[tuple[int, int], int | None] = {}
        self._bodies: dict[int, dict[int, str]] = {}
        # (VA, PA) -> body, whatever the translation (dropped when code may change).
        self._described: dict[tuple[int, int | None], str] = {}
        self._disassembler = Disassembler()
        machine.observers.append(self)
        machine.record_instructions(self.on_instructions)

    # -- what the machine hands over ---------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, _TRANSLATION_EVENTS):
            self._pa_of_page.clear()
            self._bodies.clear()
        elif isinstance(event, CacheMaintenance) and event.operation.startswith("IC"):
            # Code may have been rewritten: an instruction cache invalidation
            # is what the architecture asks for before it is executed.
            self._bodies.clear()
            self._described.clear()
        if self.events is not None and event.category not in self.events:
            return
        pending = self._pending
        if pending is not None and pending.index == event.index:
            pending.event = event.describe()
            if self.window is not None:
                out = [self._emit_text(index, body) for index, body in self._recent]
                self._recent.clear()
                self._after = self.window
                self.write("".join(out))

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
                    and first == self._last_emitted + 1):
                # The usual batch: consecutive instructions, each written, no event among them.
                bodies = None if self.layout == "pc" else self._bodies.setdefault(batch.el, {})
                lines = self._lines(batch, start, count - 1, bodies)
                self._last_emitted = last - 1
            else:
                flat = batch.flat[2 * start:2 * (count - 1)]
                text += "".join(self._release_records(flat, batch.el))
        self._pending = _Pending(last, last_va, self._body_of(last_va, batch.el))
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
        if pending is not None and pending.index < executed:
            out.append(self._release(pending))
        if executed > self._last_emitted + 1:
            out.append(_gap_text(executed - self._last_emitted - 1, self.layout))
            self._last_emitted = executed - 1
        text = "".join(out)
        if text:
            self.write(text)

    # -- lines -----------------------------------------------------------------

    def _release(self, pending: _Pending) -> str:
        """The text (maybe none) for the instruction before this batch, now complete."""
        index = pending.index
        if pending.event is None:
            if self.window is not None:
                return self._release_record(index, pending.body)
            line = self._line % (index, pending.body)
        elif self.layout == "pc":  # the line of an event, which PC-only lines do not name
            line = self._line % (index, pending.body)
        else:
            note = json.dumps(pending.event) if self.layout == "json" else pending.event
            line = self._annotated % (index, pending.body, note)
        return self._emit(index, line)

    def _release_record(self, index: int, body: str) -> str:
        """The text (maybe none) for an instruction with no event, now complete."""
        if self.window is not None:
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
        """The text of instructions (index, VA, index, VA, ...) with no event,
        now complete, one by one: with gaps before them, or in a window."""
        out: list[str] = []
        window = self.window
        if window is None:
            for i in range(0, len(flat), 2):
                out.append(self._emit_text(flat[i], self._body_of(flat[i + 1], el)))
            return out
        # While a window is open the first ones are written; of the rest, only
        # the ring buffer's last few matter.
        count = len(flat) // 2
        written = min(max(self._after, 0), count)
        for i in range(0, 2 * written, 2):
            out.append(self._release_record(flat[i], self._body_of(flat[i + 1], el)))
        kept = max(written, count - window)
        self._recent.extend((flat[i], self._body_of(flat[i + 1], el))
                            for i in range(2 * kept, 2 * count, 2))
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
        """What the line of the instruction at ``va`` says after its index."""
        machine = self.machine
        page = va & PAGE_MASK
        key = (el, page)
        if key not in self._pa_of_page:
            regime = machine.mmu.regime(regime_for_el(el))
            self._pa_of_page[key] = machine.mmu.fetch_pa(page, regime)
        base = self._pa_of_page[key]
        pa = None if base is None else base | (va & ~PAGE_MASK)
        body = self._described.get((va, pa))
        if body is None:
            line = self._describe(va, pa)
            if self.layout == "json":
                members = line.to_dict()
                del members["index"], members["event"]
                body = json.dumps(members)[1:-1]
            else:
                body = line.format()[len(f"{0:>9}  "):]
            self._described[(va, pa)] = body
        return body

    def _describe(self, va: int, pa: int | None) -> TraceLine:
        machine = self.machine
        data = machine.read_physical(pa, 4) if pa is not None else None
        word = int.from_bytes(data, "little") if data is not None else 0
        return TraceLine(index=0, va=va, pa=pa, symbol=machine.symbolize(va, pa), word=word,
                         text=self._disassembler.text(word, va))


class PerInstructionTracer(MachineObserver):
    """The reference tracer: a Python call per instruction, a :class:`TraceLine`
    each, handed to ``sink`` with :class:`TraceGap` s where instructions are
    left out.  Makes the lines :class:`Tracer` makes, at a small fraction of
    its speed; ``window`` and ``events`` are :class:`Tracer`'s.
    """

    def __init__(
        self, machine: Machine, sink: Callable[[TraceLine | TraceGap], None],
        window: int | None = None, events: frozenset[str] | None = None,
    ) -> None:
        self.machine = machine
        self.sink = sink
        self.window = window
        self.events = events
        self._recent: collections.deque[TraceLine] = collections.deque(maxlen=window or 1)
        self._after = 0
        self._pending: TraceLine | None = None
        self._last_emitted = -1  # the index of the last line handed to the sink
        self._pa_of_page: dict[int, int | None] = {}
        self._disassembler = Disassembler()
        machine.observers.append(self)
        machine.watch_instructions(self)

    def on_event(self, event: Event) -> None:
        if isinstance(event, _TRANSLATION_EVENTS):
            self._pa_of_page.clear()
        if self.events is not None and event.category not in self.events:
            return
        if self._pending is not None and self._pending.index == event.index:
            note = event.describe()
            self._pending = TraceLine(**{**self._pending.__dict__, "event": note})
            if self.window is not None:
                for line in self._recent:
                    self._emit(line)
                self._recent.clear()
                self._after = self.window

    def on_instruction(self, index: int, address: int) -> None:
        """Called by the machine before each instruction."""
        pending = self._pending
        if pending is not None and pending.index == index and pending.va == address:
            return  # the same instruction again, after a stop in front of it
        self._release()
        page = address & PAGE_MASK
        if page not in self._pa_of_page:
            self._pa_of_page[page] = self.machine.mmu.fetch_pa(page)
        base = self._pa_of_page[page]
        pa = None if base is None else base | (address & ~PAGE_MASK)
        data = self.machine.read_physical(pa, 4) if pa is not None else None
        word = int.from_bytes(data, "little") if data is not None else 0
        self._pending = TraceLine(
            index=index,
            va=address,
            pa=pa,
            symbol=self.machine.symbolize(address, pa),
            word=word,
            text=self._disassembler.text(word, address),
        )

    def _release(self) -> None:
        """Hand the previous instruction (now complete, with its event) to the sink."""
        line, self._pending = self._pending, None
        if line is None:
            return
        if self.window is None or line.event is not None:
            self._emit(line)
        elif self._after > 0:
            self._after -= 1
            self._emit(line)
        else:
            self._recent.append(line)

    def _emit(self, line: TraceLine) -> None:
        """Hand ``line`` to the sink, after a gap marker for any instructions
        left out since the last line."""
        if line.index > self._last_emitted + 1:
            self.sink(TraceGap(line.index - self._last_emitted - 1))
        self._last_emitted = max(self._last_emitted, line.index)
        self.sink(line)

    def flush(self) -> None:
        """Emit the last instruction; call when the run has ended (see :meth:`Tracer.flush`)."""
        executed = self.machine.executed
        if self._pending is not None and self._pending.index >= executed:
            self._pending = None
        self._release()
        if executed > self._last_emitted + 1:
            self.sink(TraceGap(executed - self._last_emitted - 1))
            self._last_emitted = executed - 1
