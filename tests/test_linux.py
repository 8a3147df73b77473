"""A real boot nobody here wrote: Debian's Linux 6.1 arm64 kernel, checked.

The kernel comes from Debian's own arm64 package (``linux-image-6.1.*-cloud-arm64``),
fetched once and cached by tests/debian.py; the test is skipped, saying why,
only when the package registry cannot be reached.  Linux's early boot is
correct code by its maintainers' account and QEMU's: it builds its page
tables, turns the MMU on, remaps the device tree through the fixmap (a valid
-> invalid -> valid replacement with TLB maintenance between) and rebuilds its
tables in ``paging_init``.  No rule may fire on any of it.

It runs at EL1 with ``nokaslr`` until the ``Initmem setup`` line, which
``free_area_init`` prints after ``paging_init`` has put the linear map in
place (some 18 M instructions, a third of them the CRC32 that
``early_init_dt_verify`` computes over the 1 MiB device tree blob QEMU virt
passes, and bootemu too).

Debian's generic kernel then prints its first console lines (the CPU's MIDR,
the banner, the RNG, the machine model, earlycon, NUMA) on bootemu as on
QEMU, the reference machine, up to the line where NUMA fakes its node.  The
next line places NODE_DATA below what unflattening the device tree took, and
QEMU's tree has nodes (virtio-mmio, flash, fw-cfg, PCIe) bootemu's board
does not model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qemu import console_lines, run_qemu

from emu.board.board import Board
from emu.board.spec import load_image
from emu.checks.run import check_image

pytest_plugins = ["debian"]  # its fixtures: cloud_linux_image, generic_linux_image
BOOTEMU = [sys.executable, "-m", "emu.cli.main"]
BOOTARGS = "nokaslr earlycon=pl011,0x9000000 console=ttyAMA0"


def test_linux_boots_through_paging_init_with_no_finding(cloud_linux_image: Path) -> None:
    board = Board(el=1, bootargs=BOOTARGS)
    run = check_image(load_image(cloud_linux_image, board=board),
                      until="console:Initmem setup node 0", max_insns=40_000_000, board=board)
    assert "Linux version 6.1" in run.output, run.stop.message
    assert "Initmem setup node 0" in run.output, (run.stop.message, run.output[-2000:])
    assert run.findings == [], [f"[{f.rule}] #{f.index} {f.message}" for f in run.findings]
    assert "ttbr-switch-conflict" in run.rules and "live-descriptor-change" in run.rules


def test_generic_linux_first_console_lines_are_qemus(generic_linux_image: Path) -> None:
    on_qemu = run_qemu(machine="virt", cpu="cortex-a72", memory="1024",
                       kernel=generic_linux_image, append=BOOTARGS,
                       until=r"NUMA: Faking a node .*\n", timeout=120)
    assert on_qemu.matched, on_qemu.describe()
    reference = console_lines(on_qemu.output)
    faked = next(i for i, line in enumerate(reference) if line.startswith("NUMA: Faking"))
    reference = reference[:faked + 1]
    assert any(line.startswith("Linux version 6.1.0-") for line in reference), reference
    assert "Machine model: linux,dummy-virt\r" in reference, reference
    result = subprocess.run([*BOOTEMU, "run", str(generic_linux_image), "--el", "1",
                             "--ram", "0x40000000:1G", "--bootargs", BOOTARGS,
                             "--until", "console:NUMA: Faking a node", "--max-insns", "60000000"],
                            capture_output=True, timeout=300)  # bytes: keep the "\r"s
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    ours = console_lines(result.stdout.decode(errors="replace"))
    # Each run was cut just after the milestone: the last line may lack its end.
    assert ours[:faked] == reference[:faked], result.stderr.decode(errors="replace")
    assert reference[faked].startswith(ours[faked].rstrip("\r")), ours[faked:]
