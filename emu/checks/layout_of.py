"""The layout an image's sources declare, for the rules that judge the layout itself.

The layout is the static virtual regions the sources declare (see
:mod:`emu.image.layout`).  :mod:`~emu.checks.identity_clash` and
:mod:`~emu.checks.layout_slot0` judge the image against it rather than an
instruction, so they report at the image's entry, once, when the run ends.
"""

from __future__ import annotations

import weakref

from emu.asm.program import Program
from emu.image.boot_image import BootImage
from emu.image.layout import Layout, LayoutError, layout_from_macros

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


def no_layout_reason(image: BootImage) -> str | None:
    """Why a layout rule cannot judge ``image`` (None when the image declares a layout)."""
    if image_layout(image) is not None:
        return None
    if image.program is None:
        what = {"elf": "an ELF file", "image": "an arm64 Image", "raw": "a raw binary"}.get(
            image.kind, f"a {image.kind} file")
        return f"the image is {what}: no sources, so no declared layout of static regions"
    return "the sources declare no layout (no *_VIRT_START regions to judge)"
