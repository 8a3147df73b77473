"""QEMU virt's NOR flash: two banks of CFI flash with the Intel command set.

Firmware runs from the first bank (``-bios`` puts it there) and U-Boot keeps
its environment in the second; both probe the banks with the Common Flash
Interface query before using them.  A bank answers reads with its contents
("read-array" mode) until a command is written to it; then reads return what
the command asks for (the CFI query structure, the identifier codes or the
status register) until the read-array command (0xFF) puts it back.

The query structure and its addressing follow JEDEC JESD68 (Common Flash
Interface); the commands, the identifier codes and the status register, the
Intel/Sharp command set that JESD68.01 calls command set 0x0001.  The bank's
geometry and codes are QEMU virt's, as its ``hw/arm/virt.c`` sets them up and
``hw/block/pflash_cfi01.c`` answers them (used as a reference for those
facts only): 64 MiB a bank, 256 KiB erase blocks, a 32-bit bank made of two
x16 devices side by side, manufacturer 0x89, device 0x18, no backing file
(the second bank reads as zeros, as QEMU's does without ``-drive``).

The device only keeps state and answers accesses; the machine decides how the
guest reaches it (see :mod:`emu.machine.rom`): while a bank is in read-array
mode it is plain read-only memory that code can run from, otherwise every
access is a call to :meth:`CfiFlash.read` or :meth:`CfiFlash.write`.
"""

from __future__ import annotations

import mmap

MIB = 1 << 20
BANK_SIZE = 64 * MIB
SECTOR_SIZE = 256 * 1024  # an erase block of the whole 32-bit bank
BANK_WIDTH = 4            # bytes on the bus per access of the bank
DEVICE_WIDTH = 2          # each of the two devices is x16
MANUFACTURER, DEVICE = 0x89, 0x18

# Commands (first bus cycle), Intel/Sharp command set.
READ_ARRAY, READ_ARRAY_QEMU, AMD_RESET = 0xFF, 0x00, 0xF0
READ_ID, CFI_QUERY, READ_STATUS, CLEAR_STATUS = 0x90, 0x98, 0x70, 0x50
PROGRAM, PROGRAM_ALT, BLOCK_ERASE, BUFFERED_PROGRAM, LOCK_SETUP = 0x40, 0x10, 0x20, 0xE8, 0x60
CONFIRM, LOCK_BLOCK = 0xD0, 0x01
# Status register bits: write state machine ready, erase error, program error.
SR_READY, SR_ERASE_ERROR, SR_PROGRAM_ERROR = 0x80, 0x20, 0x10

# The commands after which reads return the status register.
_STATUS_READS = (PROGRAM, PROGRAM_ALT, BLOCK_ERASE, LOCK_SETUP, READ_STATUS, BUFFERED_PROGRAM)


def query_table(size: int = BANK_SIZE, sector_size: int = SECTOR_SIZE,
                devices: int = BANK_WIDTH // DEVICE_WIDTH) -> bytes:
    """One device's CFI query structure (JESD68 table 1 onwards), by query offset.

    Each of the ``devices`` side by side holds its share of the bank:
    ``size / devices`` bytes in erase blocks of ``sector_size / devices``.
    """
    device_size = size // devices
    block = sector_size // devices
    blocks = size // sector_size
    table = bytearray(0x40)
    table[0x10:0x13] = b"QRY"
    table[0x13:0x15] = (0x0001).to_bytes(2, "little")  # primary command set: Intel/Sharp
    table[0x15:0x17] = (0x0031).to_bytes(2, "little")  # its extended table, at 0x31
    # 0x17-0x1A: no alternate command set.  0x1B-0x1E: Vcc 4.5-5.5 V, no Vpp.
    table[0x1B:0x1F] = bytes((0x45, 0x55, 0x00, 0x00))
    # 0x1F-0x26: typical and maximum timeouts, as 2^n units (word, buffer, block, chip).
    table[0x1F:0x27] = bytes((0x07, 0x07, 0x0A, 0x00, 0x04, 0x04, 0x04, 0x00))
    table[0x27] = device_size.bit_length() - 1        # device size: 2^n bytes
    table[0x28:0x2A] = (0x0002).to_bytes(2, "little")  # interface: x8/x16
    table[0x2A:0x2C] = (11).to_bytes(2, "little")      # write buffer: 2^11 bytes
    table[0x2C] = 1                                    # one region of uniform blocks
    table[0x2D:0x2F] = (blocks - 1).to_bytes(2, "little")
    table[0x2F:0x31] = (block >> 8).to_bytes(2, "little")  # block size in 256-byte units
    table[0x31:0x36] = b"PRI10"                        # extended table, version 1.0
    table[0x3F] = 1                                    # one protection field
    return bytes(table)


class CfiFlash:
    """One bank: its contents and the state of its command interface.

    ``storage`` is anonymous memory the machine can map straight into the
    guest while the bank is in read-array mode; ``content`` is written at its
    start.
    """

    def __init__(self, base: int, size: int = BANK_SIZE, content: bytes = b"",
                 name: str = "flash") -> None:
        if len(content) > size:
            raise ValueError(f"{len(content)} bytes do not fit in a {size:#x}-byte flash bank")
        self.base = base
        self.size = size
        self.name = name
        self.storage = mmap.mmap(-1, size)  # zero-filled, paged in only where touched
        self.storage[:len(content)] = content
        self._table = query_table(size)
        self.command = READ_ARRAY
        self.cycle = 0                      # bus cycles of a multi-cycle command seen so far
        self.status = SR_READY
        self._buffer_count = 0              # words a buffered program still expects

    @property
    def read_array(self) -> bool:
        """Whether reads return the contents (the mode the bank starts in)."""
        return self.command == READ_ARRAY and self.cycle == 0

    # -- the bus -----------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        """A little-endian read of ``size`` bytes at ``offset`` in the bank."""
        if self.read_array:
            return int.from_bytes(self.storage[offset:offset + size], "little")
        data = bytearray()
        word = offset & ~(BANK_WIDTH - 1)
        while len(data) < (offset - word) + size:  # whole bank words, then the bytes asked
            data += self._bank_word(word + len(data)).to_bytes(BANK_WIDTH, "little")
        start = offset - word
        return int.from_bytes(data[start:start + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        """A little-endian write of ``size`` bytes at ``offset``: a command cycle
        (the low byte of the first device's lane), or data for a program."""
        command = value & 0xFF
        if self.cycle == 0:
            self._first_cycle(offset, command)
        elif self.command in (PROGRAM, PROGRAM_ALT):
            self._program(offset, size, value)
            self._to_read_status()
        elif self.command == BLOCK_ERASE:
            if command == CONFIRM:
                start = offset & ~(SECTOR_SIZE - 1)
                self.storage[start:start + SECTOR_SIZE] = b"\xff" * SECTOR_SIZE
                self._to_read_status()
            else:
                self._sequence_error(SR_ERASE_ERROR | SR_PROGRAM_ERROR)
        elif self.command == LOCK_SETUP:
            # Lock and unlock complete at once; blocks are never locked here.
            if command in (CONFIRM, LOCK_BLOCK):
                self._to_read_status()
            else:
                self._reset()
        elif self.command == BUFFERED_PROGRAM:
            self._buffered(offset, size, value)
        else:  # a second cycle of a one-cycle command is a new command
            self.cycle = 0
            self._first_cycle(offset, command)

    # -- commands ----------------------------------------------------------------

    def _first_cycle(self, offset: int, command: int) -> None:
        if command in (READ_ARRAY, READ_ARRAY_QEMU, AMD_RESET):
            self._reset()
        elif command in (READ_ID, CFI_QUERY, READ_STATUS):
            self.command = command
        elif command == CLEAR_STATUS:
            self.status = SR_READY
        elif command in (PROGRAM, PROGRAM_ALT, BLOCK_ERASE, LOCK_SETUP):
            self.command, self.cycle = command, 1
        elif command == BUFFERED_PROGRAM:
            self.command, self.cycle = command, 1
            self.status |= SR_READY  # the buffer is available at once
        else:
            self._reset()  # not a command of this set: stay readable

    def _program(self, offset: int, size: int, value: int) -> None:
        """NOR programming only clears bits: what was erased (1) takes the data."""
        old = int.from_bytes(self.storage[offset:offset + size], "little")
        self.storage[offset:offset + size] = (old & value).to_bytes(size, "little")

    def _buffered(self, offset: int, size: int, value: int) -> None:
        """E8h, word count - 1 (per device), that many data words, D0h."""
        if self.cycle == 1:
            self._buffer_count = (value & 0xFFFF) + 1
            self.cycle = 2
        elif self.cycle == 2:
            self._program(offset, size, value)
            self._buffer_count -= 1
            if self._buffer_count == 0:
                self.cycle = 3
        elif (value & 0xFF) == CONFIRM:
            self._to_read_status()
        else:
            self._sequence_error(SR_PROGRAM_ERROR)

    def _to_read_status(self) -> None:
        self.command, self.cycle = READ_STATUS, 0
        self.status |= SR_READY

    def _sequence_error(self, bits: int) -> None:
        self.status |= bits | SR_READY
        self.command, self.cycle = READ_STATUS, 0

    def _reset(self) -> None:
        self.command, self.cycle = READ_ARRAY, 0

    # -- what a read returns outside read-array mode -----------------------------

    def _bank_word(self, word: int) -> int:
        """The 32-bit bank word at byte offset ``word``: each x16 device answers in
        its lane, for device-word address ``word / BANK_WIDTH`` (JESD68: query
        offsets count device words)."""
        index = word // BANK_WIDTH
        if self.command == CFI_QUERY:
            lane = self._table[index] if index < len(self._table) else 0
        elif self.command == READ_ID:
            # Offset 0 manufacturer, 1 device; 2 a block's lock status (unlocked).
            lane = {0: MANUFACTURER, 1: DEVICE}.get(index & 0xFF, 0)
        elif self.command in _STATUS_READS:
            lane = self.status
        else:
            return int.from_bytes(self.storage[word:word + BANK_WIDTH], "little")
        return lane | lane << (8 * DEVICE_WIDTH)


def virt_flash(firmware: bytes, base: int = 0) -> tuple[CfiFlash, CfiFlash]:
    """QEMU virt's two banks at ``base``: the firmware in the first, the second erased
    to zeros (no backing file)."""
    return (CfiFlash(base, content=firmware, name="flash0"),
            CfiFlash(base + BANK_SIZE, name="flash1"))
