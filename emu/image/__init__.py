"""Boot images: :class:`~emu.image.boot_image.BootImage` (what goes where in
physical memory, and its symbols), one module per file format, and the memory
layout an image's sources declare."""
