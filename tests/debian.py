"""Debian bookworm arm64 packages for the tests: fetched once, cached, unpacked.

:func:`debian_file` gives a file of the newest arm64 package whose name
matches a regular expression.  The package is downloaded with ``apt-get
download`` under a private APT state directory (``-oAPT::Architecture=arm64
-oAPT::Architectures=arm64``, lists and archives under ``CACHE/apt``), so the
host's own APT state is neither read for arm64 nor changed, and unpacked with
``dpkg -x`` into ``CACHE/x-PACKAGE/``; nothing is installed.  ``CACHE`` is
``$BOOTEMU_DEB_CACHE``, or ``~/.cache/bootemu/debs``.

Once a matching package is unpacked there, it is used without asking the
registry again (delete its directory to fetch a newer one).  A test using it
is skipped, saying why, only when apt-get or dpkg is missing or Debian's
registry cannot be reached; any other failure (no such package, no such file
in it) fails the test.  Fetches are serialised with a lock file, so parallel
workers (xdist) share one download.

The fixtures below give the images bootemu is tried on (DESIGN.md §5):
Debian's generic and cloud Linux 6.1 arm64 kernels and Xen 4.17's arm64
hypervisor.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("BOOTEMU_DEB_CACHE", Path.home() / ".cache" / "bootemu" / "debs"))
APT_DIR = CACHE / "apt"
VERSION_FILE = ".bootemu-deb"  # in each unpacked tree: "PACKAGE VERSION"
APT_TIMEOUT = 900

# Signs that apt could not reach the registry (as opposed to a wrong request).
_UNREACHABLE = re.compile(
    r"Failed to fetch|Temporary failure resolving|Could not resolve|Could not connect"
    r"|Connection failed|Connection timed out|Network is unreachable|No route to host"
    r"|Unable to connect|Some index files failed to download")

GENERIC_LINUX = r"linux-image-6\.1\.0-\d+-arm64"
CLOUD_LINUX = r"linux-image-6\.1\.0-\d+-cloud-arm64"
XEN = r"xen-hypervisor-4\.17-arm64"
U_BOOT = r"u-boot-qemu"


def _apt_options() -> list[str]:
    return ["-oAPT::Architecture=arm64", "-oAPT::Architectures=arm64",
            f"-oDir::State={APT_DIR / 'state'}", f"-oDir::Cache={APT_DIR / 'cache'}"]


def _apt(tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run an APT command with the private arm64 state."""
    return subprocess.run([tool, *_apt_options(), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=APT_TIMEOUT)


def _natural(text: str) -> list[tuple[int, str]]:
    """Sort key that orders the numbers in a name by value (…-9-arm64 < …-57-arm64)."""
    return [(int(part), "") if part.isdigit() else (-1, part)
            for part in re.split(r"(\d+)", text)]


def _version_order(left: str, right: str) -> int:
    """Compare two Debian versions as dpkg does (-1, 0, 1)."""
    if left == right:
        return 0
    newer = subprocess.run(["dpkg", "--compare-versions", left, "gt", right],
                           capture_output=True, timeout=60).returncode == 0
    return 1 if newer else -1


@contextmanager
def _locked() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _unreachable(process: subprocess.CompletedProcess[str], what: str) -> None:
    """Skip the test if ``process`` failed to reach the registry."""
    if _UNREACHABLE.search(process.stdout + process.stderr):
        pytest.skip(f"Debian's package registry cannot be reached ({what}): "
                    f"{process.stderr.strip().splitlines()[-1:]}")


def _cached(package: re.Pattern[str], wanted: str) -> Path | None:
    """The wanted file from the newest already unpacked matching package."""
    trees = [tree for tree in CACHE.glob("x-*")
             if tree.is_dir() and package.fullmatch(tree.name[2:])]
    for tree in sorted(trees, key=lambda tree: _natural(tree.name), reverse=True):
        found = sorted(tree.glob(wanted), key=lambda path: _natural(str(path)))
        if found:
            return found[-1]
    return None


def _candidates(package: re.Pattern[str]) -> dict[str, str]:
    """Package name -> candidate version, of the arm64 packages matching ``package``."""
    prefix = re.match(r"[A-Za-z0-9+-]*", package.pattern)
    names = _apt("apt-cache", "pkgnames", prefix.group(0) if prefix else "")
    found = [name for name in names.stdout.split() if package.fullmatch(name)]
    if not found:
        return {}
    shown = _apt("apt-cache", "show", "--no-all-versions", *found)
    versions: dict[str, str] = {}
    for stanza in shown.stdout.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version): (\S+)$", stanza, re.MULTILINE))
        if "Package" in fields and "Version" in fields:
            versions[fields["Package"]] = fields["Version"]
    return versions


def _fetch(package: re.Pattern[str]) -> Path:
    """Download and unpack the newest package matching ``package``; its tree."""
    for sub in ("state/lists/partial", "cache/archives/partial"):
        (APT_DIR / sub).mkdir(parents=True, exist_ok=True)
    update = _apt("apt-get", "update", "-qq")
    _unreachable(update, "apt-get update")
    if update.returncode != 0:
        raise RuntimeError(f"apt-get update failed: {update.stderr.strip()}")
    versions = _candidates(package)
    if not versions:
        raise LookupError(f"no Debian arm64 package named like {package.pattern!r}")
    order = functools.cmp_to_key(_version_order)
    name, version = max(versions.items(), key=lambda item: (order(item[1]), _natural(item[0])))
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".fetch-") as scratch:
        download = _apt("apt-get", "download", f"{name}={version}", cwd=Path(scratch))
        _unreachable(download, f"apt-get download {name}")
        if download.returncode != 0:
            raise RuntimeError(f"apt-get download {name}={version} failed: "
                               f"{download.stderr.strip()}")
        [deb] = Path(scratch).glob("*.deb")
        unpacked = Path(scratch) / "x"
        subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True,
                       capture_output=True, timeout=APT_TIMEOUT)
        (unpacked / VERSION_FILE).write_text(f"{name} {version}\n")
        tree = CACHE / f"x-{name}"
        if tree.exists():
            shutil.rmtree(tree)
        unpacked.rename(tree)
    return tree


def debian_file(package: str, wanted: str) -> Path:
    """A file of Debian's newest bookworm arm64 package named like ``package``.

    ``package``: a regular expression the whole package name must match, e.g.
    ``r"linux-image-6\\.1\\.0-\\d+-arm64"``; the newest version of the matching
    packages wins (dpkg's ordering).  ``wanted``: a glob relative to the
    unpacked package, e.g. ``"boot/vmlinuz-*"``; of several matches, the last
    in natural order.  Skips the calling test when apt-get or dpkg is missing
    or the registry cannot be reached.
    """
    pattern = re.compile(package)
    found = _cached(pattern, wanted)
    if found is not None:
        return found
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip(f"apt-get and dpkg are needed to fetch Debian's {package} package")
    with _locked():
        found = _cached(pattern, wanted)  # another worker may have fetched it
        if found is not None:
            return found
        tree = _fetch(pattern)
    matches = sorted(tree.glob(wanted), key=lambda path: _natural(str(path)))
    if not matches:
        raise FileNotFoundError(f"{tree.name[2:]} holds no {wanted!r}")
    return matches[-1]


@pytest.fixture(scope="session")
def generic_linux_image() -> Path:
    """Debian's newest generic Linux 6.1 arm64 kernel (``linux-image-6.1.0-*-arm64``):
    its ``vmlinuz``, an EFI-stub arm64 Image, gzip-compressed."""
    return debian_file(GENERIC_LINUX, "boot/vmlinuz-6.1.0-*-arm64")


@pytest.fixture(scope="session")
def cloud_linux_image() -> Path:
    """Debian's newest cloud Linux 6.1 arm64 kernel (``linux-image-6.1.0-*-cloud-arm64``):
    its ``vmlinuz``."""
    return debian_file(CLOUD_LINUX, "boot/vmlinuz-6.1.0-*-cloud-arm64")


@pytest.fixture(scope="session")
def xen_image() -> Path:
    """Xen 4.17's arm64 hypervisor (``xen-hypervisor-4.17-arm64``):
    ``/boot/xen-4.17-arm64``, an arm64 Image."""
    return debian_file(XEN, "boot/xen-4.17-arm64")


@pytest.fixture(scope="session")
def u_boot_image() -> Path:
    """Debian's U-Boot for QEMU's arm64 virt board (``u-boot-qemu``, 2023.01 in
    bookworm): ``/usr/lib/u-boot/qemu_arm64/u-boot.bin``, a raw image for ``-bios``."""
    return debian_file(U_BOOT, "usr/lib/u-boot/qemu_arm64/u-boot.bin")
