"""The CPU as the board's devices see it: the :class:`Guest` protocol, and
reading the guest's memory through it.

Devices answer the guest's MMIO accesses and exception-generating calls.  To
do so they read registers and memory, write results back, deliver an
exception to the guest's vector, or end the run.  :class:`Guest` names
exactly that; the machine satisfies it structurally, so the board never
depends on the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from emu.arch.exceptions import TakenException
from emu.arch.mmu.regime import TranslationRegime
from emu.arch.mmu.walk import Fault, Translation

# Unicorn's interrupt numbers (QEMU's EXCP_*) for the calls the board handles.
INTNO_UDEF = 1
INTNO_SVC = 2
INTNO_HVC = 11
INTNO_SMC = 13

# A device's MMIO accessors: (offset, size) -> value, and (offset, size, value).
MmioRead = Callable[[int, int], int]
MmioWrite = Callable[[int, int, int], None]


class Guest(Protocol):
    """What devices need from the CPU they are attached to."""

    # Tried in order on every exception the CPU reports (HVC, SMC, SVC,
    # undefined instruction, ...) with the interrupt number; one that returns
    # True has dealt with it and the guest continues.
    interrupt_handlers: list[InterruptHandler]

    @property
    def pc(self) -> int: ...

    @property
    def el(self) -> int:
        """The current exception level."""

    @property
    def executed(self) -> int:
        """Instructions executed so far."""

    def index_at(self, pc: int) -> int:
        """Instructions executed before the one at ``pc`` (in the current block)."""

    def reg(self, name: str) -> int:
        """A general or system register by name (``x0``, ``pstate``, ``TTBR0_EL2``)."""

    def write_reg(self, name: str, value: int) -> None:
        """Set a general register, ``sp`` or ``pc`` by name."""

    def read_sysreg(self, name: str) -> int:
        """A system register by its architectural name (``VBAR_EL2``)."""

    def translate(self, va: int, regime: TranslationRegime | None = None) -> Translation | Fault:
        """Walk VA for a read in a regime (the current one by default)."""

    def fetch_pa(self, va: int) -> int | None:
        """Where an instruction fetch from VA goes now (None: it faults)."""

    def read_physical(self, pa: int, size: int) -> bytes | None:
        """``size`` bytes of physical memory (None where there is none)."""

    def map_mmio(self, base: int, size: int, read: MmioRead, write: MmioWrite,
                 what: str) -> None:
        """Hand physical ``[base, base + size)`` to a device (``what``, for errors)."""

    def symbolize(self, va: int, pa: int | None = None) -> str:
        """VA as symbol+offset."""

    def take_exception(self, taken: TakenException) -> None:
        """Enter an exception: write what exception entry writes, jump to the vector."""

    def request_exit(self, pc: int, index: int, status: int, message: str) -> None:
        """End the run: the program exited at ``pc`` with ``status``, as ``message`` says."""

    def request_power(self, what: str, pc: int, index: int, message: str) -> None:
        """End the run: the guest asked its firmware to ``"power-off"`` or ``"reset"``."""


InterruptHandler = Callable[[Guest, int], bool]


def instruction_at(guest: Guest, va: int) -> int | None:
    """The instruction word a fetch from VA reads now, or None if it cannot be read."""
    pa = guest.fetch_pa(va)
    if pa is None:
        return None
    data = guest.read_physical(pa, 4)
    return int.from_bytes(data, "little") if data is not None else None


def read_guest(guest: Guest, va: int, size: int) -> bytes | None:
    """``size`` bytes at a virtual address as the CPU would read them now, or None
    if part of the range does not translate (or is not RAM)."""
    out = bytearray()
    while size > 0:
        result = guest.translate(va)
        if not isinstance(result, Translation):
            return None
        chunk = min(size, 0x1000 - (va & 0xFFF))
        data = guest.read_physical(result.pa, chunk)
        if data is None:
            return None
        out += data
        va, size = va + chunk, size - chunk
    return bytes(out)


def read_guest_string(guest: Guest, va: int, limit: int = 1 << 16) -> bytes | None:
    """A NUL-terminated string at a virtual address (at most ``limit`` bytes)."""
    out = bytearray()
    while len(out) < limit:
        chunk = read_guest(guest, va, 0x100 - (va & 0xFF))
        if chunk is None:
            return None
        nul = chunk.find(b"\0")
        if nul >= 0:
            return bytes(out + chunk[:nul])
        out += chunk
        va += len(chunk)
    return bytes(out)
