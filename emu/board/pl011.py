"""Enough of Arm's PL011 UART for boot code to print: the data register
transmits at once and the flag register always says "room to send"."""

from __future__ import annotations

from emu.board.console import Console
from emu.board.guest import Guest

PL011_SIZE = 0x1000

UARTDR, UARTRSR, UARTFR, UARTILPR = 0x00, 0x04, 0x18, 0x20
UARTIBRD, UARTFBRD, UARTLCR_H, UARTCR = 0x24, 0x28, 0x2C, 0x30
UARTIFLS, UARTIMSC, UARTRIS, UARTMIS, UARTICR, UARTDMACR = 0x34, 0x38, 0x3C, 0x40, 0x44, 0x48
FR_TXFE, FR_RXFE = 1 << 7, 1 << 4
# Peripheral and PrimeCell identification registers, as QEMU's PL011 reads them:
# revision 1 in UARTPeriphID2 (a silicon r1p5 reads 3), so Linux names the same
# "PL011 rev1" on both.
_PL011_ID = {0xFE0: 0x11, 0xFE4: 0x10, 0xFE8: 0x14, 0xFEC: 0x00,
             0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}


class Pl011:
    """The programmer's view of a PL011 at ``base``, as memory-mapped I/O.

    A byte written to UARTDR is printed at once.  UARTFR reads "transmit FIFO
    empty, receive FIFO empty, not busy", so polling loops proceed; there is
    never input.  Control registers keep what is written; interrupts never
    assert.
    """

    name = "uart"

    def __init__(self, base: int, console: Console) -> None:
        self.base = base
        self.console = console
        self.registers: dict[int, int] = {UARTCR: 0x300, UARTIFLS: 0x12}

    def attach(self, guest: Guest) -> None:
        guest.map_mmio(self.base, PL011_SIZE, self._read, self._write, what="the UART")

    def _read(self, offset: int, _size: int) -> int:
        if offset == UARTFR:
            return FR_TXFE | FR_RXFE
        if offset in (UARTDR, UARTRSR, UARTRIS, UARTMIS):
            return 0
        if offset in _PL011_ID:
            return _PL011_ID[offset]
        return self.registers.get(offset, 0)

    def _write(self, offset: int, _size: int, value: int) -> None:
        if offset == UARTDR:
            self.console.write(self.name, bytes([value & 0xFF]))
        elif offset not in (UARTFR, UARTRIS, UARTMIS, UARTICR):
            self.registers[offset] = value
