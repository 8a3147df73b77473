"""mmu-toggle-off-identity: SCTLR.M changed where VA != PA."""

from __future__ import annotations

from emu.arch.mmu.regime import regime_for_el
from emu.arch.mmu.walk import Access, Translation
from emu.checks.base import Check, describe_translation
from emu.machine.events import Event, MmuDisable, MmuEnable


class MmuToggleOffIdentity(Check):
    rule_id = "mmu-toggle-off-identity"
    title = "MMU turned on or off outside the identity map"
    explanation = (
        "SCTLR.M was changed by an instruction whose next fetch lands on a different physical "
        "address than the one after it in memory: the translation that applies after the "
        "change does not give VA == PA for the next instruction. Turning the MMU on or off is "
        "only safe from code that is identity-mapped, because the very next fetch already "
        "uses the new translation (or none)."
    )

    def on_event(self, event: Event) -> None:
        if not isinstance(event, MmuEnable | MmuDisable) or event.pa is None:
            return
        if event.after.name is not regime_for_el(event.el):
            return  # another EL's MMU: the next fetch here does not use it
        next_va = event.pc + 4
        expected_pa = event.pa + 4
        after = self.context.translate(next_va, event.after, Access.FETCH)
        if isinstance(after, Translation) and after.pa == expected_pa:
            return
        action = "on" if isinstance(event, MmuEnable) else "off"
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"MMU turned {action} at VA {event.pc:#x} (PA {event.pa:#x}); the next fetch, VA "
            f"{next_va:#x}, goes to {describe_translation(after)} instead of PA "
            f"{expected_pa:#x}",
        )
