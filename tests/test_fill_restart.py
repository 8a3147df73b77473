"""An instruction whose TLB fill walks tables no walk has read before runs once.

Such a fill makes new table pages (their stores must come back to the MMU model
from then on, so Unicorn's softmmu TLB, which may hold them writable, must be
flushed).  Stopping emulation from inside the fill to flush it let Unicorn
finish the load and then resume at the load again: ``ldr x2, [x2]`` ran twice,
the second time from the value it had loaded.  Linux 6.1 with KASLR died that
way on its first read of the GIC distributor (``GICD_TYPER``, through a fresh
ioremap), with a level-0 translation fault at VA 0x8.

Expected values from the program text and the architecture: LDR (immediate)
loads once and writes its destination once (DDI 0487 C6.2 "LDR (immediate)"),
so x2 holds the doubleword at ``data`` (0x1234) and the two ADDs after it make
x5 2; 37 instructions run before ``done``.
"""

from __future__ import annotations

from pathlib import Path

from emu.board.board import Board
from emu.checks.run import build_image
from emu.machine.machine import Machine
from emu.machine.stop import StopKind
from emu.machine.targets import run_to_target

LOAD = 0x4000_0000

PROGRAM = """\
// fill-restart: MMU on, then tables for VA 2 GiB that no walk has read, then a
// load through them into its own address register.
// Rule: none is meant to fire (new mappings, DSB and ISB before the use).
#define LINK_ADDRESS 0x40000000       // linked and loaded here
#define SCTLR_ON  0x30c50831
#define MAIR_VAL  0xff4400
#define TCR_VAL   0x80823519
#define TABLE     0x3
#define BLOCK     0x749
#define PAGE      0x74b
    .text
    .global _start
_start:
    ldr     x0, =MAIR_VAL
    msr     mair_el2, x0
    ldr     x0, =TCR_VAL
    msr     tcr_el2, x0
    adr     x1, l1
    adr     x2, l2
    orr     x3, x2, #TABLE
    str     x3, [x1, #8]
    ldr     x3, =0x40000000 | BLOCK
    str     x3, [x2]
    dsb     sy
    msr     ttbr0_el2, x1
    tlbi    alle2
    dsb     nsh
    isb
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0
    isb
    // New tables for VA 2 GiB, never walked before: l2b and l3b.
    adr     x1, l1
    adr     x2, l2b
    adr     x4, l3b
    orr     x3, x4, #TABLE
    str     x3, [x2]
    adr     x6, data
    ldr     x3, =PAGE
    orr     x3, x3, x6
    str     x3, [x4]
    orr     x3, x2, #TABLE
    dsb     sy
    str     x3, [x1, #16]
    dsb     sy
    isb
    mov     x5, #0
    mov     x2, #0x80000000
    ldr     x2, [x2]
    add     x5, x5, #1
    add     x5, x5, #1
done:
    b       done
    .ltorg
    .balign 4096
l1:     .space 4096
l2:     .space 4096
l2b:    .space 4096
l3b:    .space 4096
data:   .quad 0x1234
"""


def test_a_load_through_fresh_tables_runs_once(tmp_path: Path) -> None:
    source = tmp_path / "fill-restart.S"
    source.write_text(PROGRAM)
    machine = Machine(build_image(source, load_address=LOAD), Board())
    ran = run_to_target(machine, "done", max_insns=1_000)
    assert ran.stop.kind is StopKind.ARRIVED, ran.stop.message
    assert (machine.reg("x2"), machine.reg("x5")) == (0x1234, 2)
    assert ran.stop.index == 37
