"""layout-slot0: the image linked inside its layout's identity area (see
:mod:`emu.checks.layout_of`)."""

from __future__ import annotations

from emu.checks.base import Check
from emu.checks.layout_of import image_layout, no_layout_reason
from emu.image.layout import SLOT_SHIFT, Layout
from emu.machine.stop import Stop


class LayoutSlot0(Check):
    rule_id = "layout-slot0"
    layout_wide = True
    title = "Image linked inside the identity area"
    explanation = (
        "The image's virtual start lies in level-0 slot 0 (or, for a layout that keeps the "
        "first N slots free, in one of them), where identity maps of low RAM live. An image "
        "there clashes with the identity map of any RAM loaded in that slot - the situation "
        "Xen's arm64 layout rework removed by moving XEN_VIRT_START to 512 GiB + 2 MiB."
    )

    def not_applicable(self) -> str | None:
        return no_layout_reason(self.context.image)

    def finish(self, stop: Stop) -> None:
        image = self.context.image
        layout = image_layout(image)
        message = None if layout is None else linked_inside(layout, image.link_address)
        if message is not None:
            self.fire(0, image.entry, image.entry, message)


def linked_inside(layout: Layout, link_address: int) -> str | None:
    """What is wrong with an image linked at ``link_address`` inside the
    layout's identity area; None when it is linked above it."""
    if link_address >= layout.identity_limit:
        return None
    return (f"the image is linked at {link_address:#x}, in level-0 slot "
            f"{link_address >> SLOT_SHIFT}, inside the identity area (the first "
            f"{layout.identity_slots} slot(s), below {layout.identity_limit:#x})")
