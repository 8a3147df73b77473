"""A debugging session: one boot, every rule watching, run forwards and backwards.

The session owns a :class:`~emu.machine.machine.Machine` with the rule
catalogue attached (so findings and the timeline are there to ask for), the
breakpoints and watchpoints a client set, and the history that makes reverse
execution possible.

Reverse execution is deterministic re-execution: the same image, board and
seed give the same run instruction for instruction, so the state in front of
instruction #N is reached by building the machine again and running exactly
N instructions (``#N`` is exact).  Edits a client made (registers, memory)
are replayed at the instruction count they were made at; going back before
an edit forgets it.  No memory
snapshots: after one, Unicorn 2.1.x makes every later guest store 30-45 us
slower (DESIGN.md, engine facts); for boot code, running again from reset
costs milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from emu.arch.mmu.regime import regime_asid
from emu.arch.mmu.walk import Access, Translation
from emu.board.board import Board
from emu.checks import ALL_CHECKS, Check, CheckContext, Finding
from emu.image.boot_image import BootImage
from emu.machine.debugging import Breakpoint, WatchKind, Watchpoint
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import Stop, StopKind

# Stops after which the guest cannot go on (the client is told it exited).
FINAL_STOPS = frozenset({StopKind.EXIT, StopKind.POWER_OFF, StopKind.RESET})


@dataclass(frozen=True)
class StopReport:
    """Why the guest stopped, for a client: the machine's stop, the watchpoint
    it hit, whether the history's beginning was reached going backwards, and
    a finding that stopped it (``--break-on-finding``)."""

    stop: Stop
    watchpoint: Watchpoint | None = None
    watch_address: int | None = None
    history_begin: bool = False
    finding: Finding | None = None


Edit = Callable[[Machine], None]


class DebugSession:
    """One boot under a debugger (see the module docstring)."""

    def __init__(self, image: BootImage, board: Board, *,
                 max_insns: int = DEFAULT_MAX_INSNS, break_on_finding: bool = False) -> None:
        self.image = image
        self.board = board
        self.max_insns = max_insns
        self.break_on_finding = break_on_finding
        self.physical = False  # memory accesses by PA (QEMU's PhyMemMode)
        self._breakpoints: dict[tuple[int, bool], Breakpoint] = {}
        self._watchpoints: dict[tuple[int, int, WatchKind, bool], Watchpoint] = {}
        # Client edits, by the instruction count they were made at, in order.
        self._edits: list[tuple[int, Edit]] = []
        self._replaying = False
        self._running = False
        self._new_finding: Finding | None = None
        # The machine running now (a resume, a replay, a reverse search), and
        # whether the session is closed (shut_down: every run stops at once).
        self._lock = threading.Lock()
        self._current: Machine | None = None
        self._closed = False
        self.machine, self.rules = self._build()
        self.last = StopReport(Stop(StopKind.ARRIVED, self.machine.pc, 0, "at the entry point"))

    def _build(self) -> tuple[Machine, list[Check]]:
        machine = Machine(self.image, self.board)
        context = CheckContext(machine)
        rules = [cls(context) for cls in ALL_CHECKS]
        machine.observers.extend(rules)
        context.on_finding = self._on_finding
        return machine, rules

    # -- state ---------------------------------------------------------------

    @property
    def index(self) -> int:
        """Instructions executed so far (the #N of the instruction at the PC)."""
        return self.machine.index_now()

    @property
    def findings(self) -> list[Finding]:
        return sorted((f for rule in self.rules for f in rule.findings), key=lambda f: f.index)

    def read_register(self, name: str) -> int:
        return self.machine.reg(name)

    def write_register(self, name: str, value: int) -> None:
        self._edit(lambda machine: machine.write_reg(name, value))

    def read_memory(self, address: int, length: int) -> bytes:
        return self.machine.read_memory(address, length, physical=self.physical)

    def write_memory(self, address: int, data: bytes) -> None:
        physical = self.physical
        self._edit(lambda machine: machine.write_memory(address, data, physical=physical))

    def _edit(self, edit: Edit) -> None:
        edit(self.machine)
        self._edits.append((self.index, edit))

    # -- breakpoints and watchpoints -----------------------------------------

    def add_breakpoint(self, address: int) -> None:
        """A breakpoint at a VA, or at a PA in physical mode."""
        key = (address, self.physical)
        if key not in self._breakpoints:
            self._breakpoints[key] = self.machine.add_breakpoint(address, physical=self.physical)

    def remove_breakpoint(self, address: int) -> None:
        breakpoint = self._breakpoints.pop((address, self.physical), None)
        if breakpoint is not None:
            self.machine.remove_breakpoint(breakpoint)

    def add_watchpoint(self, address: int, length: int, kind: WatchKind) -> None:
        """A watchpoint on VAs, or on PAs in physical mode."""
        key = (address, length, kind, self.physical)
        if key not in self._watchpoints:
            self._watchpoints[key] = self.machine.add_watchpoint(address, length, kind,
                                                                 physical=self.physical)

    def remove_watchpoint(self, address: int, length: int, kind: WatchKind) -> None:
        watchpoint = self._watchpoints.pop((address, length, kind, self.physical), None)
        if watchpoint is not None:
            self.machine.remove_watchpoint(watchpoint)

    def breakpoint_alias(self, pc: int) -> str | None:
        """When the guest stopped at ``pc`` for a breakpoint set at another
        address of the same instruction (its link address or physical alias),
        says which; else None."""
        if (pc, self.physical) in self._breakpoints:
            return None
        image = self.image
        if (image.in_image(pc, physical=True)
                and (image.link(pc), False) in self._breakpoints and image.link(pc) != pc):
            return (f"breakpoint at {image.link(pc):#x} ({image.symbolize(image.link(pc))}) "
                    f"hit at its physical alias {pc:#x}")
        pa = self.machine.mmu.executed_pa(pc)
        if pa is not None and (pa, True) in self._breakpoints and pa != pc:
            return f"breakpoint at PA {pa:#x} hit at VA {pc:#x}"
        return None

    # -- forwards ----------------------------------------------------------------

    def _on_finding(self, finding: Finding) -> None:
        if self.break_on_finding and not self._replaying and self._new_finding is None:
            self._new_finding = finding
            self.machine.interrupt()  # from inside a hook: the run stops soon after

    def interrupt(self) -> None:
        """Stop a running ``resume`` soon (any thread: a client's Ctrl-C); nothing
        when the guest is not running."""
        if self._running:
            self.machine.interrupt()

    def shut_down(self) -> None:
        """Stop the run under way soon, and every later one at its start (any
        thread: the server is closing, on SIGINT or SIGTERM).  Whatever was
        running (a continue, a replay for reverse execution) returns with an
        ``INTERRUPTED`` stop."""
        with self._lock:
            self._closed = True
            if self._current is not None:
                self._current.interrupt()

    @contextmanager
    def _runs(self, machine: Machine) -> Iterator[None]:
        """Around each run of a machine: :meth:`shut_down` can stop it."""
        with self._lock:
            self._current = machine
            if self._closed:
                machine.interrupt()  # the run returns at its start
        try:
            yield
        finally:
            with self._lock:
                self._current = None

    def resume(self, *, step: bool = False) -> StopReport:
        """Continue (or execute one instruction) until a stop; with
        ``break_on_finding``, a rule that fires stops the guest in front of
        the instruction it names."""
        self._new_finding = None
        self._running = True
        try:
            with self._runs(self.machine):
                stop = (self.machine.step() if step
                        else self.machine.run(max_insns=self.max_insns))
        finally:
            self._running = False
        finding, self._new_finding = self._new_finding, None
        if finding is not None and finding.index <= stop.index:
            self._replay_to(finding.index)
            stop = Stop(StopKind.ARRIVED, self.machine.pc, finding.index,
                        f"[{finding.rule}] #{finding.index} {finding.message}")
        return self._report(stop, finding)

    def _report(self, stop: Stop, finding: Finding | None = None) -> StopReport:
        watchpoint = address = None
        if stop.kind is StopKind.WATCHPOINT:
            watched = [w for w in self.machine.watchpoints
                       if stop.detail and stop.detail[0] == f"{w.kind.value} {w.address:#x}"
                                                            f"+{w.length}"]
            watchpoint = watched[0] if watched else None
            address = watchpoint.address if watchpoint else None
        self.last = StopReport(stop, watchpoint, address, finding=finding)
        return self.last

    # -- backwards -------------------------------------------------------------

    def _install_points(self, machine: Machine) -> None:
        """Give ``machine`` the client's breakpoints and watchpoints."""
        for breakpoint in self._breakpoints.values():
            machine.add_breakpoint(breakpoint.address, physical=breakpoint.physical)
        for watchpoint in self._watchpoints.values():
            machine.add_watchpoint(watchpoint.address, watchpoint.length, watchpoint.kind,
                                   physical=watchpoint.physical)

    def _replay(self, machine: Machine, index: int, hits: list[Stop] | None = None) -> Stop:
        """Run a machine built afresh to exactly ``index`` instructions, applying
        the client's edits at the counts they were made at.  With ``hits``, the
        machine has breakpoints or watchpoints: each stop at one before
        ``index`` is appended there and the run goes on."""
        stop = Stop(StopKind.ARRIVED, machine.pc, 0, "at the entry point")
        steps: list[tuple[int, Edit | None]] = [
            *((at, edit) for at, edit in self._edits if at <= index), (index, None)]
        for at, edit in steps:
            while machine.index_now() < at:
                with self._runs(machine):
                    stop = machine.run(f"#{at}", max_insns=at)
                if (hits is None or stop.index >= at
                        or stop.kind not in (StopKind.ARRIVED, StopKind.WATCHPOINT)):
                    break
                hits.append(stop)
            if edit is not None:
                edit(machine)
        return stop

    def _replay_to(self, index: int) -> Stop:
        """Build the machine again and run it to exactly ``index`` instructions,
        replaying the client's edits; breakpoints and watchpoints carry over."""
        self._replaying = True
        try:
            self.machine, self.rules = self._build()
            stop = self._replay(self.machine, index)
        finally:
            self._replaying = False
        self._edits = [(at, edit) for at, edit in self._edits if at <= index]
        self._install_points(self.machine)
        return stop

    def reverse_step(self) -> StopReport:
        """Go back one instruction (to the state in front of the previous one)."""
        now = self.index
        if now == 0:
            return self._begin()
        stop = self._replay_to(now - 1)
        stop = Stop(StopKind.STEPPED, self.machine.pc, now - 1,
                    f"stepped back to #{now - 1}, {self.machine.pc:#x}")
        return self._report(stop)

    def reverse_continue(self) -> StopReport:
        """Go back to the last breakpoint or watchpoint hit before now, or to the
        beginning of the history (the entry point) if there is none."""
        now = self.index
        hits: list[Stop] = []
        self._replaying = True
        try:
            search = Machine(self.image, self.board)
            self._install_points(search)
            self._replay(search, now, hits)
        finally:
            self._replaying = False
        if not hits:
            return self._begin()
        hit = hits[-1]
        self._replay_to(hit.index)
        return self._report(Stop(hit.kind, self.machine.pc, hit.index, hit.message,
                                 detail=hit.detail))

    def _begin(self) -> StopReport:
        self._replay_to(0)
        stop = Stop(StopKind.ARRIVED, self.machine.pc, 0,
                    "the beginning of the history: the entry point")
        self.last = StopReport(stop, history_begin=True)
        return self.last

    def restart(self) -> None:
        """Back to reset, breakpoints kept, edits forgotten (a client's ``kill``)."""
        self._edits.clear()
        self._replay_to(0)
        self.last = StopReport(Stop(StopKind.ARRIVED, self.machine.pc, 0, "at the entry point"))

    # -- what only bootemu knows (monitor commands) ---------------------------

    def walk(self, va: int) -> str:
        """A translation of VA in the current regime, level by level."""
        machine = self.machine
        regime = machine.mmu.regime()
        result = machine.mmu.translate(va, Access.READ, regime)
        lines = [f"walk of {va:#x} in the {regime.name.value} regime "
                 f"(MMU {'on' if regime.mmu_enabled else 'off'})"]
        for step in result.steps:
            out = f" -> {step.output_address:#x}" if step.output_address is not None else ""
            lines.append(f"  level {step.level}: table {step.table_address:#x}[{step.index}] "
                         f"at PA {step.descriptor_address:#x} = {step.descriptor:#018x} "
                         f"{step.kind}{out}")
        if isinstance(result, Translation):
            lines.append(f"  = PA {result.pa:#x} ({result.size:#x} bytes, level {result.level}, "
                         f"{'W' if result.writable else 'RO'}, "
                         f"{'X' if result.executable else 'XN'}, attr {result.attr_index})")
        else:
            lines.append(f"  = fault: {result.describe()}")
        return "\n".join(lines) + "\n"

    def tlb(self) -> str:
        """The architectural TLB's entries in the current regime, stale ones marked
        (a fresh walk now gives another translation)."""
        machine = self.machine
        regime = machine.mmu.regime()
        entries = machine.tlb.entries(regime.name.value)
        if not entries:
            return f"the {regime.name.value} TLB is empty\n"
        lines = [f"{len(entries)} entries in the {regime.name.value} TLB "
                 f"(ASID now {regime_asid(regime)}):"]
        for entry in sorted(entries, key=lambda e: e.va_page):
            fresh = machine.mmu.translate(entry.va_page, Access.READ, regime)
            stale = not isinstance(fresh, Translation) or fresh.pa & ~0xFFF != entry.pa_page
            asid = "global" if entry.asid is None else f"ASID {entry.asid}"
            lines.append(f"  VA {entry.va_page:#x} -> PA {entry.pa_page:#x} size "
                         f"{entry.size:#x} {asid} made at #{entry.made_at}"
                         f"{'  STALE' if stale else ''}")
        return "\n".join(lines) + "\n"

    def timeline(self, count: int = 20) -> str:
        """The last ``count`` MMU events, one line each."""
        events = self.machine.events[-count:]
        if not events:
            return "no events yet\n"
        return "".join(f"#{event.index:>9}  {event.pc:#018x}  {event.describe()}\n"
                       for event in events)

    def regime_text(self) -> str:
        machine = self.machine
        regime = machine.mmu.regime()
        return (f"EL{machine.el}, {regime.name.value} regime, MMU "
                f"{'on' if regime.mmu_enabled else 'off'}: SCTLR {regime.sctlr:#x} "
                f"TCR {regime.tcr:#x} TTBR0 {regime.ttbr0:#x} TTBR1 {regime.ttbr1:#x} "
                f"MAIR {regime.mair:#x}\n")

    def findings_text(self) -> str:
        findings = self.findings
        if not findings:
            return "no findings so far\n"
        return "".join(f"[{f.rule}] #{f.index} {f.pc:#x} ({f.symbol}): {f.message}\n"
                       for f in findings)
