"""Debian's U-Boot for QEMU virt as firmware (``-bios``), on QEMU then on bootemu.

The firmware is ``/usr/lib/u-boot/qemu_arm64/u-boot.bin`` of bookworm's
``u-boot-qemu`` package (U-Boot 2023.01, fetched and cached by tests/debian.py).
QEMU is the truth: ``-M virt,virtualization=on,gic-version=2 -cpu cortex-a72
-m 128 -bios u-boot.bin`` must print U-Boot's banner and get to the autoboot
prompt; then bootemu boots the same file with ``run --bios`` (flash at 0, RAM
at 1 GiB, the device tree at the start of RAM) until the same prompt, which it
reaches in some 22 M instructions (a few seconds).

The milestone, with bootemu's own device tree, is the ``DRAM:  128 MiB`` line:
every line up to it is QEMU's, and it is the last one that can be.  The next
line, ``Core:  N devices, M uclasses``, counts the driver-model devices U-Boot
bound from the device tree: QEMU's tree describes 47 (32 virtio-mmio
transports, the PCIe host, the CFI flash, fw-cfg, the PL031 and PL061, ...),
bootemu's only the CPU, PSCI, the GIC, the timer, the UART and its clock.  The
``Flash:`` line sizes the CFI flash the tree names, and bootemu's names none
(``0 Bytes`` against QEMU's ``64 MiB``).  Those two lines say what the tree
describes, not how the board behaves, so past the milestone the test only
requires that they are the *only* lines that differ up to the autoboot prompt
(environment, stdio and network lines included).

bootemu can also be given QEMU's own tree (dumped with ``dumpdtb``, passed with
``--dtb``): then the ``Core:`` line is QEMU's too, U-Boot probes the CFI flash
with commands (``Flash: 64 MiB``) and reads its environment from it, as on
QEMU.  That run's milestone is the environment line: next, U-Boot reads the
PCIe host's configuration space (ECAM at 0x4010000000), which bootemu's board
does not model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from qemu import QemuRun, console_lines, qemu_missing, run_qemu

pytest_plugins = ["debian"]  # its fixture: u_boot_image

MACHINE = "virt,virtualization=on,gic-version=2"
CPU = "cortex-a72"
BOOTEMU = [sys.executable, "-m", "emu.cli.main"]
PROMPT = "Hit any key to stop autoboot"
BANNER = "U-Boot 2023.01"
# Lines whose text depends on what the device tree describes (see the docstring).
TREE_LINES = ("Core:", "Flash:")

pytestmark = pytest.mark.skipif(qemu_missing() is not None, reason=qemu_missing() or "")


@pytest.fixture(scope="module")
def on_qemu(u_boot_image: Path) -> QemuRun:
    """U-Boot on QEMU virt (EL2, GICv2, 128 MiB), stopped at its autoboot prompt."""
    return run_qemu(machine=MACHINE, cpu=CPU, memory="128", bios=u_boot_image,
                    until=PROMPT, timeout=60)


@pytest.fixture(scope="module")
def reference(on_qemu: QemuRun) -> list[str]:
    """QEMU's console lines, the last one (the prompt) cut where QEMU was stopped."""
    assert on_qemu.matched, on_qemu.describe()
    lines = console_lines(on_qemu.output)
    assert any(line.startswith(BANNER) for line in lines), on_qemu.describe()
    assert lines[-1].startswith(PROMPT), on_qemu.describe()
    return lines


def on_bootemu(u_boot_image: Path, until: str, *options: str) -> tuple[list[str], str]:
    """bootemu's console lines booting u-boot.bin as firmware until the console
    shows ``until``, and its stderr."""
    result = subprocess.run([*BOOTEMU, "run", "--bios", str(u_boot_image), *options,
                             "--until", f"console:{until}", "--max-insns", "100000000"],
                            capture_output=True, timeout=300)  # bytes: keep the "\r"s
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr
    return console_lines(result.stdout.decode(errors="replace")), stderr


def _index(lines: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))


def test_qemu_prints_the_banner_and_reaches_the_prompt(reference: list[str]) -> None:
    # The fixture asserts it; the banner comes after two empty lines.
    assert _index(reference, BANNER) == 2, reference
    assert "DRAM:  128 MiB\r" in reference, reference


def test_bootemu_prints_qemus_lines_up_to_dram(u_boot_image: Path,
                                               reference: list[str]) -> None:
    ours, stderr = on_bootemu(u_boot_image, PROMPT)
    dram = _index(reference, "DRAM:")
    assert ours[:dram + 1] == reference[:dram + 1], stderr
    # Past the milestone, up to the prompt, only the lines counting what the
    # device tree describes may differ (each run was cut just after the prompt).
    assert len(ours) == len(reference), (ours, reference)
    assert ours[-1].startswith(PROMPT), ours[-1]
    differing = [(qemu, bootemu) for qemu, bootemu in zip(reference[:-1], ours[:-1],
                                                          strict=True) if qemu != bootemu]
    assert all(qemu.startswith(TREE_LINES) and bootemu.startswith(qemu.split(":")[0] + ":")
               for qemu, bootemu in differing), differing


def test_bootemu_with_qemus_tree_prints_qemus_lines_through_the_flash(
        u_boot_image: Path, reference: list[str], tmp_path: Path) -> None:
    dtb = tmp_path / "virt.dtb"
    dumped = run_qemu(machine=f"{MACHINE},dumpdtb={dtb}", cpu=CPU, memory="128",
                      bios=u_boot_image, timeout=30)
    assert dumped.exited and dumped.returncode == 0 and dtb.is_file(), dumped.describe()
    core = _index(reference, "Core:")
    assert reference[core] == "Core:  47 devices, 13 uclasses, devicetree: board\r"
    assert reference[core + 1] == "Flash: 64 MiB\r"
    environment = _index(reference, "Loading Environment from Flash")
    ours, stderr = on_bootemu(u_boot_image, "using default environment", "--dtb", str(dtb))
    # The run stops just after the milestone's text, before its "\r\n".
    assert ours[:environment] == reference[:environment], stderr
    assert ours[environment:] == [reference[environment].rstrip("\r")], stderr
