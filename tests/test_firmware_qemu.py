"""Our own firmware (tests/images/firmware/fw.S) on QEMU, then on bootemu.

The firmware is built with Debian's aarch64-linux-gnu tools and booted the
way QEMU boots firmware: ``-bios fw.bin`` puts it in the flash at 0x0 and
enters it there, at EL2 with ``virtualization=on``, with QEMU's device tree at
the start of RAM.  QEMU is the truth for what it prints: the tests first
check that QEMU's run says what the machine's configuration implies (EL, RAM
size, PSCI conduit, the copy's address from the size GNU nm gives the
firmware) and powers off; then that bootemu, booting the same file as
firmware, prints the same console lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from qemu import QemuRun, console_lines, qemu_missing, run_qemu

sys.path.insert(0, str(Path(__file__).resolve().parent / "images" / "firmware"))
from firmware import CROSS, Firmware, build_firmware, toolchain_missing  # noqa: E402

MACHINE = "virt,virtualization=on,gic-version=2"
CPU = "cortex-a72"
RAM_BASE = 0x4000_0000
MIB = 1 << 20
BOOTEMU = [sys.executable, "-m", "emu.cli.main"]

pytestmark = [
    pytest.mark.skipif(toolchain_missing() is not None, reason=toolchain_missing() or ""),
    pytest.mark.skipif(qemu_missing() is not None, reason=qemu_missing() or ""),
]


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Firmware:
    return build_firmware(tmp_path_factory.mktemp("firmware"))


@pytest.fixture(scope="module")
def on_qemu(firmware: Firmware) -> QemuRun:
    """The firmware on QEMU virt (EL2, GICv2, 128 MiB), run until it powers off."""
    return run_qemu(machine=MACHINE, cpu=CPU, memory="128", bios=firmware.binary,
                    timeout=30)


def firmware_size(firmware: Firmware) -> int:
    """The firmware's size as GNU nm gives it: the address of _end (linked at 0)."""
    listing = subprocess.run([CROSS + "nm", str(firmware.elf)], capture_output=True,
                             text=True, check=True).stdout
    [end] = re.findall(r"^([0-9a-f]+) \w _end$", listing, re.MULTILINE)
    return int(end, 16)


def expected_lines(firmware: Firmware, *, el: int, ram_size: int, method: str) -> list[str]:
    """What the firmware must print on a virt board with ``ram_size`` bytes at
    0x40000000: its copy goes to the top of RAM, 4 KiB aligned."""
    copy = (RAM_BASE + ram_size - firmware_size(firmware)) & ~0xFFF
    return [
        f"fw: hello from flash at EL{el}",
        f"fw: dtb at {RAM_BASE:#x}",
        f"fw: memory {RAM_BASE:#x} size {ram_size:#x} (from /memory)",
        f"fw: psci method {method}",
        f"fw: running from RAM at {copy:#x}",
        "fw: PSCI SYSTEM_OFF",
    ]


def test_firmware_binary_is_the_elf_from_0(firmware: Firmware) -> None:
    assert firmware.binary.stat().st_size == firmware_size(firmware)
    assert firmware_size(firmware) % 16 == 0


def test_qemu_runs_the_firmware_from_flash_to_power_off(firmware: Firmware,
                                                        on_qemu: QemuRun) -> None:
    assert on_qemu.exited and on_qemu.returncode == 0, on_qemu.describe()
    assert console_lines(on_qemu.output) == expected_lines(
        firmware, el=2, ram_size=128 * MIB, method="smc"), on_qemu.describe()


@pytest.mark.parametrize(("machine", "memory", "el", "method"), [
    ("virt,virtualization=on,gic-version=2", 256 * MIB, 2, "smc"),
    ("virt", 1024 * MIB, 1, "hvc"),  # no EL2: entered at EL1, PSCI through HVC
])
def test_firmware_reads_ram_and_psci_from_qemus_device_tree(
        firmware: Firmware, machine: str, memory: int, el: int, method: str) -> None:
    run = run_qemu(machine=machine, cpu=CPU, memory=str(memory // MIB),
                   bios=firmware.binary, timeout=30)
    assert run.exited and run.returncode == 0, run.describe()
    assert console_lines(run.output) == expected_lines(
        firmware, el=el, ram_size=memory, method=method), run.describe()


# QEMU virt's default RAM is 128 MiB at 1 GiB, what on_qemu asked for: bootemu
# must need no --ram to boot firmware as QEMU's -bios does.
@pytest.mark.parametrize("ram", [[], ["--ram", f"{RAM_BASE:#x}:128M"]],
                         ids=["default-ram", "explicit-ram"])
def test_bootemu_prints_what_qemu_prints(firmware: Firmware, on_qemu: QemuRun,
                                         ram: list[str]) -> None:
    """bootemu booting fw.bin as firmware (flash at 0, RAM as QEMU's -m 128)."""
    result = subprocess.run([*BOOTEMU, "run", "--bios", str(firmware.binary), *ram],
                            capture_output=True, timeout=300)  # bytes: keep any "\r"
    ours = console_lines(result.stdout.decode(errors="replace"))
    stderr = result.stderr.decode(errors="replace")
    assert ours == console_lines(on_qemu.output), (
        f"exit status {result.returncode}\nstderr: {stderr[-2000:]}")
