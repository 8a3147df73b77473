"""A real boot nobody here wrote: Debian's Linux 6.1 arm64 kernel, checked.

The kernel comes from Debian's own arm64 package (``linux-image-6.1.*-cloud-arm64``),
fetched once with ``apt-get download`` under a private APT state directory and
cached; the test is skipped, saying why, only when the package registry cannot
be reached.  Linux's early boot is correct code by its maintainers' account and
QEMU's: it builds its page tables, turns the MMU on, remaps the device tree
through the fixmap (a valid -> invalid -> valid replacement with TLB
maintenance between) and rebuilds its tables in ``paging_init``.  No rule may
fire on any of it.

It runs at EL1 with ``nokaslr`` until shortly after ``paging_init`` and
``bootmem_init`` (10 M instructions, about 12 s): far enough for the
``Initmem setup`` line, which ``free_area_init`` prints after the linear map
is in place.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from emu.board.board import Board
from emu.board.spec import load_image
from emu.checks.run import check_image

CACHE = Path(os.environ.get("BOOTEMU_DEB_CACHE", Path.home() / ".cache" / "bootemu" / "debs"))
PACKAGE = re.compile(r"^(linux-image-6\.1\.0-\d+-cloud-arm64) ")
BOOTARGS = "nokaslr earlycon=pl011,0x9000000 console=ttyAMA0"


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    options = ["-oAPT::Architecture=arm64", "-oAPT::Architectures=arm64",
               f"-oDir::State::Lists={CACHE / 'lists'}", f"-oDir::Cache={CACHE / 'cache'}"]
    return subprocess.run([args[0], *options, *args[1:]], cwd=CACHE, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="session")
def linux_image() -> Path:
    """Debian's newest 6.1 cloud arm64 kernel Image, downloaded once and cached."""
    cached = sorted(CACHE.glob("linux/boot/vmlinuz-6.1.0-*-cloud-arm64"))
    if cached:
        return cached[-1]
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("apt-get and dpkg are needed to fetch Debian's arm64 kernel")
    for sub in ("lists/partial", "cache/archives/partial"):
        (CACHE / sub).mkdir(parents=True, exist_ok=True)
    update = _apt("apt-get", "update", "-qq")
    if update.returncode != 0:
        pytest.skip(f"Debian's package registry cannot be reached: {update.stderr.strip()}")
    search = _apt("apt-cache", "search", "^linux-image-6.1.0-.*-cloud-arm64$")
    names = sorted({m.group(1) for line in search.stdout.splitlines()
                    if (m := PACKAGE.match(line))},
                   key=lambda name: int(name.split("-")[3]))
    assert names, f"no linux-image-6.1 cloud arm64 package listed: {search.stdout!r}"
    download = _apt("apt-get", "download", names[-1])
    assert download.returncode == 0, download.stderr
    [deb] = CACHE.glob(f"{names[-1]}_*.deb")
    subprocess.run(["dpkg", "-x", str(deb), str(CACHE / "linux")], check=True, timeout=300)
    deb.unlink()
    [image] = CACHE.glob("linux/boot/vmlinuz-6.1.0-*-cloud-arm64")
    return image


def test_linux_boots_through_paging_init_with_no_finding(linux_image: Path) -> None:
    board = Board(el=1, bootargs=BOOTARGS)
    run = check_image(load_image(linux_image, board=board), until="exit",
                      max_insns=10_000_000, board=board)
    assert "Linux version 6.1" in run.output, run.stop.message
    assert "Initmem setup node 0" in run.output, (run.stop.message, run.output[-2000:])
    assert run.findings == [], [f"[{f.rule}] #{f.index} {f.message}" for f in run.findings]
    assert "ttbr-switch-conflict" in run.rules and "live-descriptor-change" in run.rules
