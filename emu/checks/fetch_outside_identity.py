"""fetch-outside-identity: a fetch that may be translated during an MMU
transition, from a page that is not identity-mapped."""

from __future__ import annotations

from emu.arch.mmu.regime import TranslationRegime
from emu.arch.mmu.tlb import PAGE_MASK
from emu.arch.mmu.walk import Access, Translation
from emu.checks.base import Check, describe_translation
from emu.machine.events import MmuDisable, TransitionWindow, WindowFetch

_ISB = 0xD5033FDF
_ERET = 0xD69F03E0


class FetchOutsideIdentity(Check):
    rule_id = "fetch-outside-identity"
    title = "MMU-transition code outside the identity map"
    explanation = (
        "During an MMU transition, an instruction that may be fetched with a translation in "
        "force came from a page that is not identity-mapped (VA == PA) by that translation. "
        "Two stretches are judged: from an MMU-off write up to its ISB, where the PE may "
        "still translate with the old tables (Arm ARM D24.1.2.2: a system-register write "
        "applies only after a context synchronization event); and from the MMU-on write "
        "until the code has left the transition (the ISB after it), where fetches go through "
        "the new tables. Such code works only by accident. Fetches made with the MMU off "
        "(after the ISB that follows the MMU-off) are physical and need no mapping: a helper "
        "called there is harmless, and a hand-off that turns the MMU off for good is not "
        "judged against tables nothing uses any more."
    )

    def on_window_closed(self, window: TransitionWindow) -> None:
        fetches = window.fetches[1:]  # the opening write is mmu-toggle-off-identity's
        judged: list[tuple[WindowFetch, TranslationRegime, str]] = []
        if isinstance(window.opened_by, MmuDisable) and window.old is not None:
            # Up to (and including) the ISB that makes the MMU-off apply.
            for fetch in fetches:
                if window.mmu_on_index is not None and fetch.index >= window.mmu_on_index:
                    break
                judged.append((fetch, window.old, "old"))
                if fetch.word in (_ISB, _ERET):
                    break
        if window.mmu_on_index is not None and window.new is not None:
            # The fetch right after the MMU-on write is mmu-toggle-off-identity's
            # question; those that follow it until the ISB are this rule's.
            judged.extend((fetch, window.new, "new") for fetch in fetches
                          if fetch.index > window.mmu_on_index)
        seen: set[tuple[int, str]] = set()
        for fetch, regime, which in judged:
            page = fetch.va & PAGE_MASK
            if (page, which) in seen:
                continue
            seen.add((page, which))
            result = self.context.translate(fetch.va, regime, Access.FETCH)
            if isinstance(result, Translation) and result.pa == fetch.va:
                continue
            stretch = ("after the MMU-on write, under the new tables" if which == "new"
                       else "after the MMU-off write and before its ISB, under the old tables")
            self.fire(
                fetch.index,
                fetch.va,
                fetch.pa if fetch.pa >= 0 else None,
                f"instruction fetched {stretch} (transition opened at "
                f"#{window.opened_by.index}), from page {page:#x}, which they do not "
                f"identity-map (VA {fetch.va:#x} -> {describe_translation(result)})",
            )
