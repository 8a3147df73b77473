"""fetch-outside-identity: MMU-transition code fetched from a page not identity-mapped."""

from __future__ import annotations

from emu.arch.mmu.walk import Access, Translation
from emu.checks.base import Check, describe_translation
from emu.machine.events import TransitionWindow


class FetchOutsideIdentity(Check):
    rule_id = "fetch-outside-identity"
    title = "MMU-transition code outside the identity map"
    explanation = (
        "Between turning the MMU off (or the first MMU-on) and the first context "
        "synchronization after the MMU is on again, an instruction was fetched from a page "
        "that is not identity-mapped (VA == PA) in the tables being switched to. Such code "
        "works only by accident: any fetch there once the new tables apply, including a "
        "speculative one, goes somewhere else."
    )

    def on_window_closed(self, window: TransitionWindow) -> None:
        target = window.new
        if target is None:
            return
        for page, fetch in window.pages.items():
            result = self.context.translate(fetch.va, target, Access.FETCH)
            identity = isinstance(result, Translation) and result.pa == fetch.va
            if identity and fetch.pa == fetch.va:
                continue
            if fetch.pa != fetch.va:
                problem = f"fetched at VA {fetch.va:#x} from PA {fetch.pa:#x}"
            else:
                problem = (f"page {page:#x} is not identity-mapped in the new tables "
                           f"(VA {fetch.va:#x} -> {describe_translation(result)})")
            self.fire(
                fetch.index,
                fetch.va,
                fetch.pa,
                f"instruction in the MMU transition opened at #{window.opened_by.index} "
                f"{problem}",
            )
