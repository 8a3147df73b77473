"""An image from an assembled program: its code placed at a physical load address.

Takes from the :class:`~emu.asm.program.Program` its code (up to
``__bss_start``), link base, symbols and entry symbol, and from the headers
beside its source (``include/`` and the ``-I`` directories) the ``BOOT_ERR_*``
codes its failure routine leaves in x0.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from emu.image.boot_image import BootImage, ImageError, failure_codes_in

if TYPE_CHECKING:
    from emu.asm.program import Program


def image_from_program(
    program: Program,
    load_address: int,
    *,
    include_dirs: list[Path] | None = None,
    entry_symbol: str = "_start",
) -> BootImage:
    """Place an assembled program at a physical load address.

    Bytes from ``__bss_start`` on are not copied: a loader does not promise
    they are zero, and the boot code must clear them itself.
    """
    if load_address % 4:
        raise ImageError(f"load address {load_address:#x} is not 4-byte aligned")
    code = program.code
    bss: tuple[int, int] | None = None
    payload_size = len(code)
    start, end = program.symbols.get("__bss_start"), program.symbols.get("__bss_end")
    if start is not None and end is not None and program.base <= start <= end:
        payload_size = start - program.base
        bss = (load_address + payload_size, load_address + (end - program.base))
    source = Path(program.source)
    headers = [source]
    for directory in [source.parent / "include", *(include_dirs or [])]:
        headers.extend(sorted(Path(directory).glob("*.h")))
    return BootImage(
        name=source.name,
        payload=code[:payload_size],
        load_address=load_address,
        link_address=program.base,
        memory_size=max(len(code), (bss[1] - load_address) if bss else 0),
        entry_link=program.symbols.get(entry_symbol, program.base),
        symbols=dict(program.symbols),
        bss=bss,
        program=program,
        failure_codes=failure_codes_in(headers),
    )
