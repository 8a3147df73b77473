"""Build bootemu's test firmware (fw.S) with Debian's aarch64-linux-gnu tools.

``fw.S`` is a boot ROM for QEMU's virt board, linked at 0x0 (``fw.ld``) and
turned into the flat binary QEMU's ``-bios`` loads into the flash:
``gcc -c`` (for the C preprocessor), ``ld -T fw.ld``, ``objcopy -O binary``.
The suite builds it into a temporary directory; nothing built is committed.

Usage: python tests/images/firmware/firmware.py OUT_DIR
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CROSS = "aarch64-linux-gnu-"
TOOLS = ("gcc", "ld", "objcopy")


class BuildError(RuntimeError):
    """The cross toolchain is missing or a build step failed."""


@dataclass(frozen=True)
class Firmware:
    """The built firmware: its ELF (for symbols) and the flat -bios binary."""

    elf: Path
    binary: Path


def toolchain_missing() -> str | None:
    """Why the firmware cannot be built here, or None."""
    for tool in TOOLS:
        if shutil.which(CROSS + tool) is None:
            return f"{CROSS}{tool} not found (Debian: gcc-aarch64-linux-gnu)"
    return None


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)}\n{result.stdout}{result.stderr}")


def build_firmware(out_dir: Path) -> Firmware:
    """Assemble and link fw.S into ``out_dir``: fw.elf and fw.bin."""
    out_dir.mkdir(parents=True, exist_ok=True)
    obj, elf, binary = out_dir / "fw.o", out_dir / "fw.elf", out_dir / "fw.bin"
    _run([CROSS + "gcc", "-c", "-Wa,--fatal-warnings", str(HERE / "fw.S"), "-o", str(obj)],
         out_dir)
    _run([CROSS + "ld", "--fatal-warnings", "--build-id=none", "-T", str(HERE / "fw.ld"),
          str(obj), "-o", str(elf)], out_dir)
    _run([CROSS + "objcopy", "-O", "binary", str(elf), str(binary)], out_dir)
    return Firmware(elf, binary)


if __name__ == "__main__":
    print(build_firmware(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build")))
