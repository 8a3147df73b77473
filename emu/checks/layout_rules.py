"""identity-clash and layout-slot0: what the memory layout itself gets wrong.

Both judge the image and its layout (the static virtual regions its sources
declare, see :mod:`emu.image.layout`) rather than an instruction, so they report at
the image's entry, once, when the run ends.
"""

from __future__ import annotations

import weakref

from emu.asm.assembler import Program
from emu.checks.base import Check
from emu.image.boot_image import BootImage
from emu.image.layout import SLOT_SHIFT, Layout, LayoutError, layout_from_macros
from emu.machine.machine import Stop

# Layouts already read, per program (by identity; a Program is not hashable):
# a sweep boots one program thousands of times.
_LAYOUTS: dict[int, tuple[weakref.ref[Program], Layout | None]] = {}


def image_layout(image: BootImage) -> Layout | None:
    """The layout an image's sources declare, or None when they declare none."""
    program = image.program
    if program is None:
        return None
    cached = _LAYOUTS.get(id(program))
    if cached is not None and cached[0]() is program:
        return cached[1]
    try:
        layout: Layout | None = layout_from_macros(program.defines, name=image.name)
    except LayoutError:
        layout = None
    key = id(program)
    _LAYOUTS[key] = (weakref.ref(program, lambda _: _LAYOUTS.pop(key, None)), layout)
    return layout


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

    def finish(self, stop: Stop) -> None:
        image = self.context.image
        layout = image_layout(image)
        if layout is None:
            return
        slots = set(range(image.load_address >> SLOT_SHIFT,
                          ((image.load_address + image.memory_size - 1) >> SLOT_SHIFT) + 1))
        clashing = [region for region in layout.regions if slots & set(region.slots())]
        if clashing:
            self.fire(
                0, image.entry, image.entry,
                f"load address {image.load_address:#x} is in level-0 slot "
                f"{min(slots)}, which {', '.join(r.name for r in clashing)} also use: the "
                f"identity map of the image would clash with them",
                tuple(f"{r.name}: {r.start:#x}..{r.end:#x}, level-0 slots "
                      f"{r.first_slot}-{r.last_slot}" for r in clashing),
            )


class LayoutSlot0(Check):
    rule_id = "layout-slot0"
    title = "Image linked inside the identity area"
    explanation = (
        "The image's virtual start lies in level-0 slot 0 (or, for a layout that keeps the "
        "first N slots free, in one of them), where identity maps of low RAM live. An image "
        "there clashes with the identity map of any RAM loaded in that slot - the situation "
        "Xen's arm64 layout rework removed by moving XEN_VIRT_START to 512 GiB + 2 MiB."
    )

    def finish(self, stop: Stop) -> None:
        image = self.context.image
        layout = image_layout(image)
        if layout is None or image.link_address >= layout.identity_limit:
            return
        self.fire(
            0, image.entry, image.entry,
            f"the image is linked at {image.link_address:#x}, in level-0 slot "
            f"{image.link_address >> SLOT_SHIFT}, inside the identity area (the first "
            f"{layout.identity_slots} slot(s), below {layout.identity_limit:#x})",
        )
