"""Debian's own images, as far as QEMU takes them (issue 11).

Xen 4.17 (Debian's ``xen-hypervisor-4.17-arm64``) boots on QEMU ``-M
virt,virtualization=on,gic-version=2 -cpu cortex-a72 -m 2048`` with no dom0
kernel: it prints its banner, the CPU's features, the timer and GIC it found,
brings up its scheduler and panics with "Could not set up DOM0 guest OS".
QEMU is the truth for every console line up to that panic; bootemu, checking
the same file on its model of that board, must print the same lines.

The verdict comes from the Arm ARM and Xen's own code: Xen 4.17's
``switch_ttbr`` writes TTBR0_EL2 with the MMU on, from the boot page tables
(which map the image read-write-execute) to the runtime ones (read-only
execute for its text), with no break-before-make in between: D8.16.1
("Using break-before-make when updating translation table entries") requires
one whenever the old and new translations for a VA differ in more than the
permitted fields, and a TTBR switch changes every entry at once (the reason
for Xen's arm64 memory-layout rework).  The routine is found by its
instructions as GNU objdump decodes them (Debian's package ships no symbols).

Linux 6.1 (Debian's generic arm64 kernel) is run twice with one ``--seed``:
KASLR's seed comes from the device tree bootemu generates, so the reports
must be identical; with another seed the kernel must land elsewhere.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from qemu import console_lines, run_qemu
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_PROT_ALL, Uc
from unicorn import arm64_const as a64

from emu.board.board import Board
from emu.board.cpu import UNICORN_MODELS
from emu.board.spec import load_image
from emu.checks.run import CheckRun, check_image
from emu.machine.machine import PSTATE_EL2H, SCR_EL3_BOOT, Machine
from emu.machine.mmu import cp_reg
from emu.report.check_report import format_text

pytest_plugins = ["debian"]  # its fixtures: generic_linux_image, xen_image
BOOTEMU = [sys.executable, "-m", "emu.cli.main"]

XEN_MACHINE = "virt,virtualization=on,gic-version=2"
XEN_RAM = (0x4000_0000, 2 << 30)  # QEMU's -m 2048
XEN_BOOTARGS = "console=dtuart dtuart=/pl011@9000000"
# Xen's last line before it waits five seconds to reboot after its panic.
XEN_MILESTONE = "Reboot in five seconds..."
XEN_BUDGET = 60_000_000  # a bound: the panic comes after some 14 M instructions
SCREEN = 50  # lines a maintainer sees without scrolling

# Xen 4.17's switch_ttbr (xen/arch/arm/arm64/head.S), as GNU objdump prints it.
SWITCH_TTBR = ["dsb\tsy", "isb", "tlbi\talle2", "ic\tiallu", "dsb\tsy", "isb",
               "msr\tttbr0_el2, x0", "isb", "tlbi\talle2", "ic\tiallu", "dsb\tsy", "isb",
               "ret"]
XEN_LINK_BASE = 0x20_0000  # Xen 4.17's XEN_VIRT_START


@pytest.fixture(scope="module")
def xen_on_qemu(xen_image: Path) -> list[str]:
    on_qemu = run_qemu(machine=XEN_MACHINE, cpu="cortex-a72", memory="2048",
                       kernel=xen_image, append=XEN_BOOTARGS,
                       until=re.escape(XEN_MILESTONE), timeout=120)
    assert on_qemu.matched, on_qemu.describe()
    return console_lines(on_qemu.output)


@pytest.fixture(scope="module")
def xen_checked(xen_image: Path) -> CheckRun:
    board = Board(el=2, ram=XEN_RAM, bootargs=XEN_BOOTARGS)
    return check_image(load_image(xen_image, board=board), until=f"console:{XEN_MILESTONE}",
                       max_insns=XEN_BUDGET, board=board)


def switch_ttbr_msr(xen_image: Path) -> int:
    """The link address of the ``msr ttbr0_el2, x0`` in Xen's switch_ttbr."""
    listing = subprocess.run(["aarch64-linux-gnu-objdump", "-D", "-b", "binary",
                              "-m", "aarch64", "--stop-address=0x10000", str(xen_image)],
                             capture_output=True, text=True, check=True).stdout
    decoded = re.findall(r"^\s+([0-9a-f]+):\t[0-9a-f]{8} \t(.*?)\s*$", listing, re.MULTILINE)
    texts = [text for _, text in decoded]
    starts = [i for i in range(len(texts)) if texts[i:i + len(SWITCH_TTBR)] == SWITCH_TTBR]
    assert len(starts) == 1, starts
    offset = int(decoded[starts[0] + SWITCH_TTBR.index("msr\tttbr0_el2, x0")][0], 16)
    return XEN_LINK_BASE + offset


def test_qemu_takes_xen_to_its_dom0_panic(xen_on_qemu: list[str]) -> None:
    assert xen_on_qemu[0].startswith("(XEN) Xen version 4.17"), xen_on_qemu[:3]
    assert any("Could not set up DOM0 guest OS" in line for line in xen_on_qemu)


def test_xen_prints_what_qemu_prints(xen_on_qemu: list[str], xen_checked: CheckRun) -> None:
    assert xen_checked.stop.message.startswith("arrived at console:"), xen_checked.stop.message
    ours = console_lines(xen_checked.output)
    # Each run was cut just after the milestone: the last line may lack its "\r".
    assert ours[:-1] == xen_on_qemu[:-1]
    assert ours[-1].rstrip("\r") == xen_on_qemu[-1].rstrip("\r")
    assert ours[-1].endswith(XEN_MILESTONE)


def test_xen_is_flagged_for_its_live_ttbr_switch(xen_image: Path,
                                                 xen_checked: CheckRun) -> None:
    msr = switch_ttbr_msr(xen_image)
    flagged = {(f.rule, f.pc) for f in xen_checked.findings}
    # The live switch, and the TLB entries it leaves: both at the TTBR write.
    assert flagged == {("ttbr-switch-live", msr), ("missing-tlbi", msr)}, flagged
    # Layout rules judge declared layouts, which a binary has none of: said so.
    assert {s.rule for s in xen_checked.not_applicable} == {"identity-clash", "layout-slot0"}


def test_xen_report_fits_a_screen_above_its_finding(xen_checked: CheckRun) -> None:
    lines = format_text(xen_checked).splitlines()
    findings = lines.index("Findings")
    assert findings < SCREEN, "\n".join(lines[:findings])
    assert lines[findings + 1].lstrip().startswith("[ttbr-switch-live]")
    last = lines[-1]
    assert last.startswith("Verdict: findings - 2 findings"), last
    assert "it arrived at console:" in last and ", PC 0x" in last and "PA 0x" in last, last


# -- Linux: the same seed, the same run ------------------------------------------

LINUX_BUDGET = "#3000000"  # past KASLR's relocation of the kernel


def linux_report(image: Path, seed: int) -> dict:
    result = subprocess.run([*BOOTEMU, "check", str(image), "--seed", str(seed), "--json",
                             "--bootargs", "earlycon=pl011,0x9000000 console=ttyAMA0",
                             "--until", LINUX_BUDGET, "--events", "all"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_linux_runs_with_one_seed_are_identical(generic_linux_image: Path) -> None:
    first = linux_report(generic_linux_image, seed=7)
    second = linux_report(generic_linux_image, seed=7)
    assert first["end"]["index"] == int(LINUX_BUDGET[1:]), first["end"]
    assert first == second
    # Another seed moves the kernel (KASLR takes /chosen/kaslr-seed): the PCs differ.
    other = linux_report(generic_linux_image, seed=8)
    assert other["end"]["pc"] != first["end"]["pc"]


# -- the board's device tree, as QEMU's --------------------------------------------

def test_the_device_tree_is_as_large_as_qemus(tmp_path: Path) -> None:
    """A kernel reserves its whole device tree blob (memblock), and Linux prints
    what it reserved: the blob must be as large as QEMU virt's, free space and
    all, for the "Memory: ..." line to read the same."""
    dumped = tmp_path / "virt.dtb"
    if run_qemu(machine=f"{XEN_MACHINE},dumpdtb={dumped}", timeout=30).returncode is None:
        pytest.fail("QEMU did not dump its device tree")
    qemu_total = int.from_bytes(dumped.read_bytes()[4:8], "big")  # the header's totalsize
    head = Path(__file__).resolve().parent.parent / "asm" / "head.S"
    plan = Board(el=2).plan(load_image(head, board=Board(el=2)))
    assert int.from_bytes(plan.dtb[4:8], "big") == len(plan.dtb) == qemu_total


# -- Linux to its VFS panic (minutes: `make test-slow`) -----------------------------

LINUX_CONSOLE = "earlycon=pl011,0x9000000 console=ttyAMA0"
VFS_PANIC = "VFS: Unable to mount root fs"
# Lines about what QEMU's device tree describes and bootemu's board does not
# model (the PL061 GPIO, the PCIe host, the PL031 RTC, the PMU).
OTHER_DEVICES = re.compile(r"^(pl061_gpio |pci-host-generic |pci_bus |pci |rtc-pl031 "
                           r"|hw perfevents: )")
# Lines that measure time: wall-clock on QEMU, virtual time on bootemu.  The
# audit line is printed by a timer, so where it falls among the others is
# timing too.
TIMING = re.compile(r"^(node 0 deferred pages initialised in \d+ms$|audit: type=2000 )")
# Figures that follow from the size of the device tree (memblock reserves the
# blob, unflattening it allocates per node, and QEMU's tree has more nodes).
TREE_SIZE = [(re.compile(r"^(NUMA: NODE_DATA )\[mem [^]]*\]"), r"\1[mem ...]"),
             (re.compile(r"\d+K reserved"), "...K reserved")]


def comparable(lines: list[str]) -> list[str]:
    """Console lines without "\\r", with the lines and figures that depend on
    the board's description or on time left out (see above)."""
    kept = []
    for line in (line.rstrip("\r") for line in lines):
        if OTHER_DEVICES.match(line) or TIMING.match(line):
            continue
        for pattern, replacement in TREE_SIZE:
            line = pattern.sub(replacement, line)
        kept.append(line)
    return kept


# The kernel as shipped randomises its placement (KASLR: QEMU's virt board puts
# a random /chosen/kaslr-seed in its device tree, bootemu the one --seed gives),
# which puts ioremap and the fixmap in tables the boot has not walked before;
# and with nokaslr, as a second path.
@pytest.mark.slow
@pytest.mark.parametrize("bootargs", [LINUX_CONSOLE, f"nokaslr {LINUX_CONSOLE}"],
                         ids=["kaslr", "nokaslr"])
def test_linux_prints_what_qemu_prints_to_its_vfs_panic_and_is_clean(
        generic_linux_image: Path, bootargs: str) -> None:
    on_qemu = run_qemu(machine=XEN_MACHINE, cpu="cortex-a72", memory="1024",
                       kernel=generic_linux_image, append=bootargs,
                       until=re.escape(VFS_PANIC), timeout=180)
    assert on_qemu.matched, on_qemu.describe()
    reference = comparable(console_lines(on_qemu.output))
    assert reference[0].startswith("Booting Linux on physical CPU"), reference[:3]
    panic = next(i for i, line in enumerate(reference) if VFS_PANIC in line)
    reference = reference[:panic + 1]  # QEMU was stopped a few lines later
    board = Board(el=2, ram=(0x4000_0000, 1 << 30), bootargs=bootargs)
    run = check_image(load_image(generic_linux_image, board=board),
                      until=f"console:{VFS_PANIC}", max_insns=3_000_000_000, board=board)
    assert run.stop.message.startswith("arrived at console:"), run.stop.message
    ours = comparable(console_lines(run.output))
    # Each run was cut just after the milestone's text.
    assert ours[:-1] == reference[:-1]
    assert ours[-1].endswith(VFS_PANIC) and reference[-1].startswith(ours[-1])
    # Correct code by its maintainers' and QEMU's account: no rule may fire.
    assert run.findings == [], [f"[{f.rule}] #{f.index} {f.message}" for f in run.findings]


# -- instruction counts, against Unicorn's own --------------------------------------

BSS_FILL = b"\xa5"  # what bootemu's loader leaves in BSS
COMPARED = [*(getattr(a64, f"UC_ARM64_REG_X{i}") for i in range(31)),
            a64.UC_ARM64_REG_SP, a64.UC_ARM64_REG_PC]

# Xen 4.17 zeroes memory in DC ZVA loops whose blocks stop emulation from inside
# the instruction (a new table page seen by the fill that probes the block):
# the block runs on, sometimes back into itself.  The counts are where the
# first such stretches were (a loop branching into its block's middle; one
# entering the block again at its start).
@pytest.mark.parametrize("count", [300_000, 12_975_840])
def test_xen_after_n_instructions_is_unicorns_state_after_n(xen_image: Path,
                                                           count: int) -> None:
    """``#N`` is exact: bootemu after N instructions holds the registers that bare
    Unicorn holds after running exactly N from the same entry state (its own
    ``count``), up to where bare Unicorn, with no devices, can go (Xen's first
    UART access comes at some 13.6 M)."""
    board = Board(el=2, ram=XEN_RAM, bootargs=XEN_BOOTARGS)
    image = load_image(xen_image, board=board)
    machine = Machine(image, board)
    stop = machine.run(max_insns=count)
    assert stop.index == count, stop.message
    ours = [machine.uc.reg_read(reg) for reg in COMPARED]

    plan = board.plan(image)
    bare = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    bare.ctl_set_cpu_model(UNICORN_MODELS["cortex-a72"])
    bare.mem_map(plan.ram_base, plan.ram_size, UC_PROT_ALL)
    for region in image.regions():
        bare.mem_write(region.physical, region.data)
    if image.bss is not None:  # as bootemu's loader leaves it
        start, end = image.bss
        bare.mem_write(start, BSS_FILL * (end - start))
    bare.mem_write(plan.dtb_address, plan.dtb)
    # EL2 entry, Non-secure, AArch64 (Unicorn resets SCR_EL3 to Secure); SCR
    # is written on both sides of the PSTATE change, as bootemu's reset does.
    scr = (*cp_reg("SCR_EL3"), SCR_EL3_BOOT)
    bare.reg_write(a64.UC_ARM64_REG_CP_REG, scr)
    bare.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE_EL2H)
    bare.reg_write(a64.UC_ARM64_REG_CP_REG, scr)
    bare.reg_write(a64.UC_ARM64_REG_X0, plan.dtb_address)
    bare.emu_start(image.entry, 0, 0, count)
    assert ours == [bare.reg_read(reg) for reg in COMPARED]
