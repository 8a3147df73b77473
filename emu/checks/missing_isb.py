"""missing-isb: an instruction fetch or data access under a translation write not yet
synchronized."""

from __future__ import annotations

from emu.checks.base import Check
from emu.machine.events import Event, UnsynchronizedFetch


class MissingIsb(Check):
    rule_id = "missing-isb"
    title = "Translation change used before a context synchronization"
    explanation = (
        "An instruction was fetched, or a load or store made, at an address whose "
        "translation an SCTLR, TTBR, TCR or MAIR write had changed, with no context "
        "synchronization event (ISB, exception entry or return) between the write and the "
        "access. Until one, the PE may still use the old register value, so the access may go "
        "to the old physical address (or fault); the architecture sets no instruction count "
        "after which the write is in force (Arm ARM DDI 0487 D24.1.2.2 'Synchronization "
        "requirements for System registers'). Follow every such write with an ISB before "
        "depending on it."
    )

    def on_event(self, event: Event) -> None:
        if not isinstance(event, UnsynchronizedFetch):
            return
        write = event.write
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"{event.describe()}",
            (f"the write: #{write.index} {write.pc:#x} "
             f"{self.context.symbolize(write.pc, write.pa)}: {write.describe()}",),
        )
