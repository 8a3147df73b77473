"""Aborts taken as hardware takes them: ESR, FAR, ELR, SPSR and the vector; and a
clear stop report when there is no vector to take them to."""

from __future__ import annotations

import pytest
from conftest import LOAD, PAGE, PROLOGUE, Tables, build_image, run_checked

from emu.machine.events import ExceptionTaken
from emu.machine.machine import Machine
from emu.machine.stop import StopKind

HIGH = 0x80_0000_0000
DATA = LOAD + 0x8000
RO = 1 << 7  # AP[2]: read-only
NO_AF = PAGE & ~(1 << 10)

# ESR_EL2 = EC << 26 | IL | ISS; fault status codes 0bKKKKLL (kind, level).
EC_IABT_SAME, EC_DABT_SAME, IL, WNR = 0x21, 0x25, 1 << 25, 1 << 6
ADDRESS_SIZE, TRANSLATION, ACCESS_FLAG, PERMISSION = 0b0000, 0b0100, 0b1000, 0b1100


def _program(access: str, target: int, *, vectors: bool = True) -> str:
    install = "    ldr x1, =vectors\n    msr vbar_el2, x1\n" if vectors else ""
    return f"""
_start:{PROLOGUE}
    ldr x1, =root
    msr ttbr0_el2, x1
    tlbi alle2
    dsb nsh
{install}
    mrs x2, sctlr_el2
    orr x2, x2, #1
    msr sctlr_el2, x2
    isb
    ldr x2, ={target:#x}
access:
    {access}
done:
    b done
.ltorg
.align 11
vectors:
    .space 0x200
    mrs x10, esr_el2
    mrs x11, far_el2
    mrs x12, elr_el2
    mrs x13, spsr_el2
    b done
.align 12
root:
"""


def _tables() -> Tables:
    tables = Tables(base=LOAD + 0x1000)
    root = tables.new_table()
    tables.identity_2m(root, LOAD)
    tables.map(root, HIGH, DATA | PAGE, 3)
    tables.map(root, HIGH + 0x1000, DATA | NO_AF, 3)
    tables.map(root, HIGH + 0x2000, DATA | PAGE | RO, 3)
    tables.map(root, HIGH + 0x3000, 0, 3)  # invalid page
    tables.map(root, HIGH + 0x4000, (1 << 45) | PAGE, 3)  # beyond the 44-bit PS
    tables.map(root, HIGH + 0x20_0000, 0, 2)  # invalid level-2 entry
    tables.map(root, HIGH + 0x4000_0000, 0, 1)  # invalid level-1 entry
    return tables


CASES = [
    # (name, access, VA, exception class, status code + level, write)
    ("translation-l0", "ldr x3, [x2]", 0x100_0000_0000, EC_DABT_SAME, TRANSLATION + 0, False),
    ("translation-l1", "ldr x3, [x2]", HIGH + 0x4000_0000, EC_DABT_SAME, TRANSLATION + 1, False),
    ("translation-l2", "ldr x3, [x2]", HIGH + 0x20_0000, EC_DABT_SAME, TRANSLATION + 2, False),
    ("translation-l3", "str x3, [x2]", HIGH + 0x3000, EC_DABT_SAME, TRANSLATION + 3, True),
    ("unaligned-far", "ldr x3, [x2, #0x5a8]", HIGH + 0x3000, EC_DABT_SAME, TRANSLATION + 3,
     False),
    ("access-flag", "ldr x3, [x2]", HIGH + 0x1000, EC_DABT_SAME, ACCESS_FLAG + 3, False),
    ("permission", "str x3, [x2]", HIGH + 0x2000, EC_DABT_SAME, PERMISSION + 3, True),
    ("address-size", "ldr x3, [x2]", HIGH + 0x4000, EC_DABT_SAME, ADDRESS_SIZE + 3, False),
    ("instruction", "br x2", HIGH + 0x3000, EC_IABT_SAME, TRANSLATION + 3, False),
]


@pytest.mark.parametrize(("name", "access", "va", "ec", "fsc", "write"), CASES,
                         ids=[case[0] for case in CASES])
def test_abort_is_delivered_to_the_vector(name: str, access: str, va: int, ec: int, fsc: int,
                                          write: bool) -> None:
    image = build_image(_program(access, va), _tables())
    run = run_checked(image, "done")
    machine = run.machine
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    expected_esr = (ec << 26) | IL | fsc | (WNR if write else 0)
    assert machine.reg("x10") == expected_esr, f"{machine.reg('x10'):#x} != {expected_esr:#x}"
    # FAR is the exact address, not the page Unicorn's fill hook is told about.
    assert machine.reg("x11") == va + (0x5A8 if "#0x5a8" in access else 0)
    faulting_pc = va if ec == EC_IABT_SAME else image.symbols["access"]
    assert machine.reg("x12") == faulting_pc  # ELR
    # SPSR: EL2h with DAIF masked, as at reset.  SPSR_EL2.BTYPE (bits 11:10) is
    # RES0 without FEAT_BTI (DDI 0487 C5.2.19), and the board's Cortex-A72 is
    # Armv8.0: a fault on a BR target saves no BTYPE.
    assert machine.reg("x13") == 0x3C9
    [taken] = [e for e in machine.events if isinstance(e, ExceptionTaken)]
    assert taken.taken is not None and taken.taken.vector == image.symbols["vectors"] + 0x200
    assert taken.fault is not None and taken.fault.level == fsc & 3


@pytest.mark.parametrize(("name", "access", "va", "ec", "fsc", "write"), CASES,
                         ids=[case[0] for case in CASES])
def test_without_a_vector_the_run_stops_with_the_walk(name: str, access: str, va: int, ec: int,
                                                      fsc: int, write: bool) -> None:
    image = build_image(_program(access, va, vectors=False), _tables())
    stop = Machine(image).run([image.symbols["done"]])
    assert stop.kind is StopKind.EXCEPTION
    kind = "instruction abort" if ec == EC_IABT_SAME else "data abort"
    assert stop.message.startswith(f"{kind} at ")
    assert f"level {fsc & 3}" in stop.message
    assert "VBAR_EL2 is 0" in stop.message
    assert f"{va + (0x5A8 if '#0x5a8' in access else 0):#x}" in stop.message
    assert stop.detail and stop.detail[0].startswith("L0"), stop.detail


def test_a_walk_into_missing_memory_is_an_external_abort_on_the_walk() -> None:
    tables = _tables()
    root = LOAD + 0x1000
    tables.entries[root + 8 * 2] = 0x7000_0000_000 | 0b11  # slot 2 -> a table where no RAM is
    va = 0x100_0000_0000
    image = build_image(_program("ldr x3, [x2]", va), tables)
    run = run_checked(image, "done")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    # DFSC 0b0101LL: synchronous external abort on a walk, at level 1.
    assert run.machine.reg("x10") == (EC_DABT_SAME << 26) | IL | 0b010101


# -- exceptions Unicorn reports through its interrupt hook (issue 10 item 11) ------

def test_an_undefined_instruction_is_taken_to_the_vector_with_its_own_syndrome() -> None:
    """After a data abort (ESR 0x96000006 left in ESR_EL2), UDF #0 is taken to
    VBAR_EL2 + 0x200 with ESR EC 0 "Unknown reason", IL 1: 0x02000000 - Unicorn
    itself writes no syndrome for it."""
    source = _program("ldr x3, [x2]\n    udf #0", HIGH + 0x20_0000).replace(
        "    b done\n.align 12", "    add x2, x12, #4\n    msr elr_el2, x2\n    eret\n.align 12")
    source = source.replace("mrs x10, esr_el2", "mrs x10, esr_el2\n    add x20, x20, #1")
    image = build_image(source, _tables())
    run = run_checked(image, "done")
    assert run.stop.kind is StopKind.ARRIVED, run.stop.message
    machine = run.machine
    assert machine.reg("x20") == 2  # the abort, then the undefined instruction
    assert machine.reg("x10") == 0x0200_0000
    assert machine.reg("x12") == image.symbols["access"] + 4
    taken = [e for e in machine.events if isinstance(e, ExceptionTaken)]
    assert [e.taken.esr for e in taken if e.taken] == [
        (EC_DABT_SAME << 26) | IL | (TRANSLATION + 2), 0x0200_0000]
    assert any("0x2000000" in f.message for f in run.findings
               if f.rule == "unexpected-exception")


def test_an_unanswered_hvc_reports_its_own_syndrome() -> None:
    image = build_image("_start:\n    hvc #0x1234\n    b _start\n", Tables())
    stop = Machine(image).run(max_insns=100)
    assert stop.kind is StopKind.EXCEPTION
    # EC 0x16 (HVC), IL 1, ISS = imm16.
    assert f"ESR {(0x16 << 26) | IL | 0x1234:#x}" in stop.message
