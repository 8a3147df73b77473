"""live-descriptor-change: a live descriptor replaced without break-before-make."""

from __future__ import annotations

from emu.checks.base import Check
from emu.machine.events import DescriptorWrite, Event

VALID = 1
# Bits that make two valid descriptors different translations: the output
# address [47:12] and the attributes (lower [11:2], upper [63:50]).
_TRANSLATION_BITS = ((1 << 48) - 1) & ~0x3 | (0x3FFF << 50)


class LiveDescriptorChange(Check):
    rule_id = "live-descriptor-change"
    title = "Live descriptor replaced without break-before-make"
    explanation = (
        "A store replaced a valid descriptor that live translations were walked through "
        "(entries made since the last TLB invalidation) by a different valid descriptor "
        "(another output address, size or attributes) with no invalid step and TLB "
        "invalidation in between. The architecture requires break-before-make: write an "
        "invalid descriptor, invalidate the TLB (with the DSBs around it), then write the new "
        "one; otherwise the TLB may hold both translations at once."
    )

    def on_event(self, event: Event) -> None:
        if not isinstance(event, DescriptorWrite) or not event.live_entries:
            return
        if not (event.old & VALID and event.new & VALID):
            return  # a break (valid -> invalid) or a make from invalid: both compliant
        if (event.old ^ event.new) & _TRANSLATION_BITS == 0:
            return  # e.g. only software-reserved bits changed
        entries = event.live_entries
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"store at VA {event.va:#x} replaces live descriptor at PA "
            f"{event.descriptor_address:#x} ({event.old:#x} -> {event.new:#x}) without "
            f"break-before-make",
            tuple(f"live: VA {e.va_page:#x} -> PA {e.pa_page:#x} (made at #{e.made_at})"
                  for e in entries[:3]),
        )
