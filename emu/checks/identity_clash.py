"""identity-clash: the identity map of the load address clashes with a static region.

Judged from the load address and the layout (:mod:`emu.checks.layout_of`) once the
run has ended, and reported at the image's entry.
"""

from __future__ import annotations

from emu.checks.base import Check
from emu.checks.layout_of import image_layout, no_layout_reason
from emu.image.layout import SLOT_SHIFT
from emu.machine.stop import Stop


class IdentityClash(Check):
    rule_id = "identity-clash"
    title = "Identity map of the load address clashes with a static region"
    explanation = (
        "The identity map of the image (VA == PA, needed to turn the MMU on and off) would "
        "fall in a level-0 slot that a static virtual region of the layout uses. The boot "
        "code cannot give the identity map its own level-0 entry there without unmapping or "
        "aliasing that region; Xen's layout rework keeps level-0 slot 0 (or the first N "
        "slots) free so that RAM loaded there can always be identity-mapped."
    )

    def not_applicable(self) -> str | None:
        return no_layout_reason(self.context.image)

    def finish(self, stop: Stop) -> None:
        image = self.context.image
        layout = image_layout(image)
        if layout is None:
            return
        # The image's level-0 slots and each region's are ranges: compared by
        # their ends, not slot by slot (a region may span 2^25 slots).
        first = image.load_address >> SLOT_SHIFT
        last = (image.load_address + image.memory_size - 1) >> SLOT_SHIFT
        clashing = [region for region in layout.regions
                    if max(first, region.first_slot) <= min(last, region.last_slot)]
        if clashing:
            self.fire(
                0, image.entry, image.entry,
                f"load address {image.load_address:#x} is in level-0 slot "
                f"{first}, which {', '.join(r.name for r in clashing)} also use: the "
                f"identity map of the image would clash with them",
                tuple(f"{r.name}: {r.start:#x}..{r.end:#x}, level-0 slots "
                      f"{r.first_slot}-{r.last_slot}" for r in clashing),
            )
