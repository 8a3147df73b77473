"""How a run ended, in words every report shares: where the PC was (VA, PA,
symbol), why the run stopped, and what was proved up to there."""

from __future__ import annotations

from dataclasses import dataclass

from emu.image.boot_image import BootImage
from emu.machine.stop import Stop, StopKind

# Why a run stopped, by kind; ARRIVED and EXIT are worded with their target
# and status (see :func:`stop_reason`).
STOP_REASONS: dict[StopKind, str] = {
    StopKind.ARRIVED: "it arrived at its target",
    StopKind.BUDGET: "the instruction budget was spent",
    StopKind.EXCEPTION: "the guest took an exception the run cannot continue past",
    StopKind.UNMAPPED: "the guest accessed physical memory that does not exist",
    StopKind.EXIT: "the program exited",
    StopKind.POWER_OFF: "the guest powered off (PSCI SYSTEM_OFF)",
    StopKind.RESET: "the guest asked for a reset (PSCI SYSTEM_RESET)",
    StopKind.IDLE: "the guest idles (WFI) waiting for an interrupt that cannot come",
    StopKind.STEPPED: "it was stepped as far as asked",
    StopKind.WATCHPOINT: "an access hit a watchpoint",
    StopKind.INTERRUPTED: "it was interrupted",
}


def counted(count: int, noun: str) -> str:
    """``1 instruction``, ``2 instructions``: a count with its noun agreeing."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def stop_reason(stop: Stop, target: str | None = None) -> str:
    """Why ``stop`` ended its run, in a few words: ``the guest powered off
    (PSCI SYSTEM_OFF)``, ``it arrived at start_c``, ...."""
    if stop.kind is StopKind.ARRIVED and target:
        return f"it arrived at {target}"
    if stop.kind is StopKind.EXIT:
        return f"the program exited with status {stop.status}"
    return STOP_REASONS.get(stop.kind, stop.message)


@dataclass(frozen=True)
class RunEnd:
    """Where a run ended and why: the stop, the PA the instruction at its PC
    is fetched from (None: unknown, or that fetch faults), and the target the
    run aimed at."""

    stop: Stop
    pa: int | None
    symbol: str
    target: str | None = None

    @classmethod
    def of(cls, stop: Stop, image: BootImage, pa: int | None,
           target: str | None = None) -> RunEnd:
        return cls(stop, pa, image.symbolize(stop.pc, pa), target)

    @property
    def reason(self) -> str:
        return stop_reason(self.stop, self.target)

    def where(self) -> str:
        """``#20000000, PC 0x2b1234 (xen+0xb1234), PA 0x400b1234``: the VA, its
        symbol, the PA."""
        pa = f"PA {self.pa:#x}" if self.pa is not None else "PA unknown"
        return f"#{self.stop.index}, PC {self.stop.pc:#x} ({self.symbol}), {pa}"

    @property
    def detail(self) -> str | None:
        """The stop's own message where it says more than :attr:`reason` (which
        exception, which address, ...); None for an arrival, a spent budget
        or an exit, whose reason says it all."""
        if self.stop.kind in (StopKind.ARRIVED, StopKind.BUDGET, StopKind.EXIT):
            return None
        if not self.stop.message or self.stop.message == self.reason:
            return None
        return self.stop.message

    def describe(self) -> str:
        """``stopped at #N, PC ... (symbol), PA ...: why``, then the stop's detail."""
        text = f"stopped at {self.where()}: {self.reason}"
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.stop.kind.value, "index": self.stop.index, "pc": self.stop.pc,
                "pa": self.pa, "symbol": self.symbol, "reason": self.reason,
                "message": self.stop.message}
