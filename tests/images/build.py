"""Build bootemu's test images with Debian's aarch64-linux-gnu-gcc.

Each image is an ELF linked at a virtual address and loaded at a physical
one, plus the same bytes as an arm64 Image (``objcopy -O binary``: the first
64 bytes are our own Image header) and that Image gzip-compressed.  The
suite builds them into temporary directories; nothing built is committed.

Usage: python tests/images/build.py OUT_DIR [el2|el1|el1-live ...]
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CROSS = "aarch64-linux-gnu-"
CFLAGS = [
    "-ffreestanding", "-nostdlib", "-mgeneral-regs-only", "-O2", "-fno-pie", "-fno-pic",
    "-mcmodel=small", "-mstrict-align", "-fno-stack-protector", "-fno-builtin",
    "-fno-tree-loop-distribute-patterns", "-fno-asynchronous-unwind-tables",
    "-mno-outline-atomics", "-Wall", "-Wextra", "-Werror", "-g",
]
LDFLAGS = ["-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,-z,max-page-size=4096",
           "-Wl,--no-warn-rwx-segments"]

# The link and load addresses of each test program.
EL2_VIRT, EL2_LOAD = 0x80_0020_0000, 0x4020_0000      # level-0 slot 1, like Xen
EL1_VIRT, EL1_LOAD = 0xFFFF_8000_0020_0000, 0x4020_0000  # TTBR1's half, like Linux

PROGRAMS: dict[str, tuple[list[str], list[str], int, int]] = {
    "el2": (["el2_boot.S", "el2_main.c", "lib.c"], [], EL2_VIRT, EL2_LOAD),
    "el1": (["el1_boot.S", "el1_main.c", "lib.c"], [], EL1_VIRT, EL1_LOAD),
    "el1-live": (["el1_boot.S", "el1_main.c", "lib.c"], ["-DLIVE_SWAP"], EL1_VIRT, EL1_LOAD),
}


class BuildError(RuntimeError):
    """The cross toolchain is missing or a build step failed."""


@dataclass(frozen=True)
class Built:
    """The files of one built test program."""

    elf: Path
    image: Path
    image_gz: Path


def toolchain_missing(tools: tuple[str, ...] = ("gcc", "objcopy")) -> str | None:
    """Why the images (or what needs ``tools``) cannot be built here, or None."""
    for tool in tools:
        if shutil.which(CROSS + tool) is None:
            return f"{CROSS}{tool} not found (Debian: gcc-aarch64-linux-gnu)"
    return None


def run_tool(command: list[str], cwd: Path) -> None:
    """Run one toolchain step; :class:`BuildError` with its output if it fails."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)}\n{result.stdout}{result.stderr}")


def build(program: str, out_dir: Path, *, extra: list[str] | None = None) -> Built:
    """Compile and link one program into ``out_dir``: ELF, Image and Image.gz."""
    sources, defines, virt, load = PROGRAMS[program]
    out_dir.mkdir(parents=True, exist_ok=True)
    objects = []
    for source in sources:
        obj = out_dir / f"{program}-{Path(source).stem}.o"
        run_tool([CROSS + "gcc", *CFLAGS, *defines, *(extra or []), "-I", str(HERE), "-c",
              str(HERE / source), "-o", str(obj)], out_dir)
        objects.append(str(obj))
    elf = out_dir / f"{program}.elf"
    run_tool([CROSS + "gcc", *LDFLAGS, "-T", str(HERE / "image.ld"),
          f"-Wl,--defsym,VIRT_BASE={virt:#x}", f"-Wl,--defsym,LOAD_BASE={load:#x}",
          *objects, "-o", str(elf)], out_dir)
    image = out_dir / f"{program}.Image"
    run_tool([CROSS + "objcopy", "-O", "binary", str(elf), str(image)], out_dir)
    image_gz = out_dir / f"{program}.Image.gz"
    image_gz.write_bytes(gzip.compress(image.read_bytes(), mtime=0))
    return Built(elf, image, image_gz)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build")
    for name in sys.argv[2:] or list(PROGRAMS):
        print(build(name, target))
