"""Interrupts end to end: the generic timer, through the GICv2, to the guest's
IRQ vector, and WFI idling until the interrupt comes.

The truth is QEMU: the same program (tests/images/irq/timer_irq.S, built with
GNU as and ld) runs under Debian's ``qemu-system-aarch64 -M
virt,virtualization=on,gic-version=2`` and under bootemu, and both consoles
must read the same.  What the program prints depends on the interrupt being
delivered (its ID read from GICC_IAR in the handler) and on the counter
having passed the armed 1 ms when it was.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from emu.board.board import Board
from emu.board.spec import load_image
from emu.machine.machine import Machine
from emu.machine.stop import StopKind

SOURCE = Path(__file__).parent / "images" / "irq" / "timer_irq.S"
LINK_ADDRESS = 0x4008_0000


@pytest.fixture(scope="module")
def timer_irq_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """timer_irq.S assembled and linked by GNU binutils."""
    if shutil.which("aarch64-linux-gnu-as") is None:
        pytest.skip("GNU as for aarch64 (binutils-aarch64-linux-gnu) is not installed")
    out = tmp_path_factory.mktemp("irq")
    obj, elf = out / "timer_irq.o", out / "timer_irq.elf"
    subprocess.run(["aarch64-linux-gnu-as", str(SOURCE), "-o", str(obj)], check=True)
    subprocess.run(["aarch64-linux-gnu-ld", f"-Ttext={LINK_ADDRESS:#x}", "-e", "_start",
                    str(obj), "-o", str(elf)], check=True)
    return elf


def qemu_console(elf: Path) -> str:
    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-aarch64 (Debian's qemu-system-arm) is not installed")
    done = subprocess.run(
        ["qemu-system-aarch64", "-nodefaults", "-no-user-config", "-display", "none",
         "-serial", "stdio", "-no-reboot", "-M", "virt,virtualization=on,gic-version=2",
         "-cpu", "cortex-a72", "-m", "128", "-kernel", str(elf)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_timer_interrupt_reaches_the_el2_vector_as_under_qemu(timer_irq_elf: Path) -> None:
    expected = qemu_console(timer_irq_elf)
    assert "irq 0000001a" in expected  # PPI 26, the EL2 physical timer

    board = Board(el=2)
    machine = Machine(load_image(timer_irq_elf, board=board), board)
    stop = machine.run(max_insns=1_000_000)
    assert stop.kind is StopKind.POWER_OFF, stop.message
    assert machine.console.text() == expected
    assert machine.interrupts.taken == 1
    # The 1 ms wait was idled through, not executed instruction by instruction.
    assert stop.index < 10_000


def test_wfi_with_nothing_armed_ends_the_run_as_idle(tmp_path: Path) -> None:
    source = tmp_path / "idle.S"
    source.write_text("    .text\n_start:\n    wfi\n    b _start\n")
    board = Board(el=2)
    machine = Machine(load_image(source, board=board), board)
    stop = machine.run(max_insns=1_000_000)
    assert stop.kind is StopKind.IDLE, stop.message
    assert stop.index == 1


def test_a_target_after_wfi_is_reached_after_the_interrupt_that_wakes_it(
        timer_irq_elf: Path) -> None:
    """WFI completes when an interrupt wakes it, and with IRQs unmasked that
    interrupt is taken before the next instruction (DDI 0487 D1.16.2): running
    to the instruction after the WFI arrives there with the handler run."""
    listing = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(timer_irq_elf)],
                             capture_output=True, text=True, check=True).stdout
    [wfi] = [int(line.split(":")[0], 16) for line in listing.splitlines()
             if line.rstrip().endswith("\twfi")]
    board = Board(el=2)
    machine = Machine(load_image(timer_irq_elf, board=board), board)
    stop = machine.run(until=[wfi + 4], max_insns=1_000_000)
    assert stop.kind is StopKind.ARRIVED, stop.message
    assert stop.pc == wfi + 4
    assert machine.interrupts.taken == 1


# The virtual timer enabled with CVAL 0: its condition holds at once (DDI 0487
# D11.2.4, "The timer condition is met when CNTVCT - CVAL >= 0"), but the GIC's
# distributor is never enabled, so no IRQ reaches the PE.  A WFI then waits
# forever (D1.16.2: WFI wakes on an interrupt signalled to the PE), and code
# that does not wait runs on: neither may stall the run with no instruction
# executed (it did: the machine stopped for the due timer over and over).
_TIMER_DUE = """\
    mov x0, #1
    msr cntv_ctl_el0, x0
    msr cntv_cval_el0, xzr
loop:
    {body}
    b loop
"""
_TIMER_DUE_NOT_ROUTED = "_start:\n" + _TIMER_DUE


def _source_machine(tmp_path: Path, text: str) -> Machine:
    path = tmp_path / "t.S"
    path.write_text(text)
    return Machine(load_image(path), Board())


def test_a_due_timer_the_gic_does_not_forward_leaves_wfi_idle(tmp_path: Path) -> None:
    machine = _source_machine(tmp_path, _TIMER_DUE_NOT_ROUTED.format(body="wfi"))
    stop = machine.run(max_insns=10)
    assert stop.kind is StopKind.IDLE, stop.message
    assert stop.index == 4  # mov, msr, msr, wfi


def test_a_due_timer_the_gic_does_not_forward_does_not_stall_a_loop(tmp_path: Path) -> None:
    machine = _source_machine(tmp_path, _TIMER_DUE_NOT_ROUTED.format(body="add x1, x1, #1"))
    stop = machine.run(max_insns=2_000_000)
    assert stop.kind is StopKind.BUDGET, stop.message
    assert machine.reg("x1") == (2_000_000 - 3 + 1) // 2  # each pair starts with the add


# The virtual timer's PPI (27) forwarded by QEMU virt's GICv2 (distributor at
# 0x08000000, CPU interface at 0x08010000: GICD_CTLR, GICD_ISENABLER0, GICC_PMR,
# GICC_CTLR, IHI 0048B section 4), due at once, and PSTATE.I left set as at
# reset: the interrupt is pending at the PE but masked.  WFI wakes on it all the
# same (DDI 0487 D1.16.2), so `1: wfi; b 1b` spins without end and nothing in it
# can unmask the interrupt.
_PENDING_MASKED = """\
_start:
    ldr x2, =0x08000000
    mov w3, #1
    str w3, [x2]
    mov w3, #(1 << 27)
    str w3, [x2, #0x100]
    ldr x2, =0x08010000
    mov w3, #0xff
    str w3, [x2, #4]
    mov w3, #1
    str w3, [x2]
""" + _TIMER_DUE


def test_an_idle_loop_with_the_interrupt_masked_ends_idle(tmp_path: Path) -> None:
    machine = _source_machine(tmp_path, _PENDING_MASKED.format(body="wfi"))
    stop = machine.run(max_insns=100_000_000)
    assert stop.kind is StopKind.IDLE, stop.message
    assert "pending but cannot be taken" in stop.message
    assert stop.index < 100  # at the first pass, not after a hundred million


def test_a_wfi_loop_that_does_work_runs_on(tmp_path: Path) -> None:
    # The loop also counts: not the idle loop, so each pass runs (the WFI wakes
    # at once every time) until the budget.
    machine = _source_machine(tmp_path, _PENDING_MASKED.format(body="wfi\n    add x9, x9, #1"))
    stop = machine.run(max_insns=3_000)
    assert stop.kind is StopKind.BUDGET, stop.message
    assert machine.reg("x9") > 900
