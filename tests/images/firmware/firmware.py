"""Build bootemu's test firmware (fw.S) with Debian's aarch64-linux-gnu tools.

``fw.S`` is a boot ROM for QEMU's virt board, linked at 0x0 (``fw.ld``) and
turned into the flat binary QEMU's ``-bios`` loads into the flash:
``gcc -c`` (for the C preprocessor), ``ld -T fw.ld``, ``objcopy -O binary``.
The suite builds it into a temporary directory; nothing built is committed.

Usage: python tests/images/firmware/firmware.py OUT_DIR
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test images' build helpers
from build import CROSS, run_tool  # noqa: E402
from build import toolchain_missing as _missing  # noqa: E402

TOOLS = ("gcc", "ld", "objcopy")
__all__ = ["CROSS", "Firmware", "build_firmware", "toolchain_missing"]


@dataclass(frozen=True)
class Firmware:
    """The built firmware: its ELF (for symbols) and the flat -bios binary."""

    elf: Path
    binary: Path


def toolchain_missing() -> str | None:
    """Why the firmware cannot be built here, or None."""
    return _missing(TOOLS)


def build_firmware(out_dir: Path) -> Firmware:
    """Assemble and link fw.S into ``out_dir``: fw.elf and fw.bin."""
    out_dir.mkdir(parents=True, exist_ok=True)
    obj, elf, binary = out_dir / "fw.o", out_dir / "fw.elf", out_dir / "fw.bin"
    run_tool([CROSS + "gcc", "-c", "-Wa,--fatal-warnings", str(HERE / "fw.S"), "-o", str(obj)],
         out_dir)
    run_tool([CROSS + "ld", "--fatal-warnings", "--build-id=none", "-T", str(HERE / "fw.ld"),
          str(obj), "-o", str(elf)], out_dir)
    run_tool([CROSS + "objcopy", "-O", "binary", str(elf), str(binary)], out_dir)
    return Firmware(elf, binary)


if __name__ == "__main__":
    print(build_firmware(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build")))
