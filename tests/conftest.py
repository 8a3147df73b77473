"""Shared helpers: small boot programs with page tables built in Python.

The machine and rule tests use programs of a few dozen instructions whose
tables the test lays out by hand, so each test states exactly which mappings
exist; asm/head.S and its defect fixtures are tested separately.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from emu.asm.assembler import assemble_text
from emu.checks import ALL_CHECKS, CheckContext
from emu.image.boot_image import BootImage
from emu.machine.machine import Machine

REPO = Path(__file__).resolve().parent.parent
HEAD_S = REPO / "asm" / "head.S"
LOAD = 0x4000_0000
IMAGE_SIZE = 0x4_0000  # code, then tables from LOAD + 0x10000

# Descriptor bits (4 KiB granule): valid, table/page, AttrIndx=2, SH=inner, AF.
TABLE = 0b11
BLOCK = 0b01 | (2 << 2) | (3 << 8) | (1 << 10)
PAGE = 0b11 | (2 << 2) | (3 << 8) | (1 << 10)

# MAIR/TCR/SCTLR values the programs load: 48-bit VA, 4 KiB, PS=44 bits.
MAIR = 0xFF4400
TCR_EL2 = 0x80803510 | (4 << 16)
PROLOGUE = f"""
    ldr x1, ={MAIR:#x}
    msr mair_el2, x1
    ldr x1, ={TCR_EL2:#x}
    msr tcr_el2, x1
"""


@dataclass
class Tables:
    """A page-table layout in the image, built descriptor by descriptor."""

    base: int = LOAD + 0x10000
    entries: dict[int, int] = field(default_factory=dict)
    _next: int = 0

    def new_table(self) -> int:
        address = self.base + self._next * 0x1000
        self._next += 1
        return address

    def map(self, root: int, va: int, descriptor: int, level: int) -> None:
        """Install ``descriptor`` for VA at ``level``, creating table levels above it."""
        table = root
        for current in range(level):
            index = (va >> (39 - 9 * current)) & 0x1FF
            slot = table + index * 8
            if slot not in self.entries:
                self.entries[slot] = self.new_table() | TABLE
            table = self.entries[slot] & ~0xFFF & ((1 << 48) - 1)
        self.entries[table + ((va >> (39 - 9 * level)) & 0x1FF) * 8] = descriptor

    def identity_2m(self, root: int, pa: int) -> None:
        self.map(root, pa, pa | BLOCK, 2)


def build_image(source: str, tables: Tables, *, symbols_from: str = "small.S") -> BootImage:
    program = assemble_text(source, filename=symbols_from, base=LOAD)
    memory = bytearray(IMAGE_SIZE)
    memory[: len(program.code)] = program.code
    for address, value in tables.entries.items():
        struct.pack_into("<Q", memory, address - LOAD, value)
    return BootImage(
        name=symbols_from,
        payload=bytes(memory),
        load_address=LOAD,
        link_address=LOAD,
        memory_size=IMAGE_SIZE,
        entry_link=program.symbols.get("_start", LOAD),
        symbols=dict(program.symbols),
        program=program,
    )


@dataclass
class CheckedRun:
    machine: Machine
    stop: object
    findings: list

    @property
    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}


def run_checked(image: BootImage, until: str, max_insns: int = 100_000) -> CheckedRun:
    machine = Machine(image)
    context = CheckContext(machine)
    rules = [cls(context) for cls in ALL_CHECKS]
    machine.observers.extend(rules)
    exits = [image.symbols[until]] if until in image.symbols else [int(until, 0)]
    stop = machine.run(exits, max_insns=max_insns)
    for rule in rules:
        rule.finish(stop)
    return CheckedRun(machine, stop, [f for rule in rules for f in rule.findings])


@pytest.fixture
def tables() -> Tables:
    return Tables()
