"""Arm semihosting (``HLT #0xF000``, A64): console output and exit, so test
programs print and end with a status."""

from __future__ import annotations

from dataclasses import dataclass, field

from emu.board.console import Console
from emu.board.guest import (
    INTNO_UDEF,
    Guest,
    instruction_at,
    read_guest,
    read_guest_string,
)

# A64 HLT #0xF000: the semihosting trap.
SEMIHOSTING_HLT = 0xD4400000 | (0xF000 << 5)

SYS_OPEN, SYS_CLOSE, SYS_WRITEC, SYS_WRITE0, SYS_WRITE = 0x01, 0x02, 0x03, 0x04, 0x05
SYS_ISTTY, SYS_ERRNO, SYS_EXIT, SYS_EXIT_EXTENDED = 0x09, 0x13, 0x18, 0x20
ADP_STOPPED_APPLICATION_EXIT = 0x20026
STDOUT, STDERR = 1, 2
_OPERATION_NAMES = {SYS_OPEN: "SYS_OPEN", SYS_CLOSE: "SYS_CLOSE", SYS_WRITEC: "SYS_WRITEC",
                    SYS_WRITE0: "SYS_WRITE0", SYS_WRITE: "SYS_WRITE", SYS_ISTTY: "SYS_ISTTY",
                    SYS_ERRNO: "SYS_ERRNO", SYS_EXIT: "SYS_EXIT",
                    SYS_EXIT_EXTENDED: "SYS_EXIT_EXTENDED"}


@dataclass
class SemihostingCall:
    """One semihosting call: where, which operation, what it returned."""

    index: int
    pc: int
    operation: int
    result: int | None

    @property
    def name(self) -> str:
        return _OPERATION_NAMES.get(self.operation, f"operation {self.operation:#x}")


@dataclass
class Semihosting:
    """Arm semihosting through ``HLT #0xF000`` (A64): console output and exit.

    W0 holds the operation, X1 its argument or the address of its parameter
    block; the result goes to X0.  Supported: SYS_WRITEC, SYS_WRITE0,
    SYS_WRITE (to handles 1 and 2, the console), SYS_OPEN of ``:tt`` (the
    console), SYS_CLOSE, SYS_ISTTY, SYS_ERRNO, SYS_EXIT and SYS_EXIT_EXTENDED.
    Any other operation returns -1.  Unicorn does not implement semihosting:
    HLT arrives as an undefined-instruction exception with PC at the HLT.
    """

    console: Console
    calls: list[SemihostingCall] = field(default_factory=list)
    exit_status: int | None = None
    name = "semihosting"

    def __call__(self, guest: Guest, intno: int) -> bool:
        if intno != INTNO_UDEF:
            return False
        pc = guest.pc
        if instruction_at(guest, pc) != SEMIHOSTING_HLT:
            return False
        operation = guest.reg("x0") & 0xFFFFFFFF
        argument = guest.reg("x1")
        index = guest.index_at(pc)
        if operation in (SYS_EXIT, SYS_EXIT_EXTENDED):
            self._exit(guest, operation, argument, pc, index)
            return True
        result = self._call(guest, operation, argument)
        self.calls.append(SemihostingCall(index, pc, operation, result))
        guest.write_reg("x0", result & ((1 << 64) - 1))
        guest.write_reg("pc", pc + 4)  # the call is done: resume after it
        return True

    def _call(self, guest: Guest, operation: int, argument: int) -> int:
        if operation == SYS_WRITEC:
            data = read_guest(guest, argument, 1)
            if data is None:
                return -1
            self.console.write(self.name, data)
            return 0
        if operation == SYS_WRITE0:
            text = read_guest_string(guest, argument)
            if text is None:
                return -1
            self.console.write(self.name, text)
            return 0
        block = read_guest(guest, argument, 24)
        words = [int.from_bytes(block[i:i + 8], "little") for i in range(0, len(block), 8)] \
            if block is not None else []
        if operation == SYS_WRITE and words:
            handle, address, length = words
            if handle not in (STDOUT, STDERR):
                return length  # nothing written
            data = read_guest(guest, address, length)
            if data is None:
                return length
            self.console.write(self.name, data)
            return 0
        if operation == SYS_OPEN and words:
            name = read_guest_string(guest, words[0], limit=256)
            if name != b":tt":
                return -1  # there is no host file system
            return STDOUT if words[1] >= 4 else 0  # modes "w..." and "a..." are >= 4
        if operation == SYS_CLOSE:
            return 0
        if operation == SYS_ISTTY and words:
            return 1 if words[0] in (0, STDOUT, STDERR) else 0
        if operation == SYS_ERRNO:
            return 0
        return -1

    def _exit(self, guest: Guest, operation: int, argument: int, pc: int,
              index: int) -> None:
        # A64: X1 points at (reason, subcode); the subcode is the status only
        # for a normal application exit, anything else is a failure.
        block = read_guest(guest, argument, 16)
        if block is None:
            reason, status = None, 1
        else:
            reason = int.from_bytes(block[:8], "little")
            subcode = _to_signed(int.from_bytes(block[8:], "little"))
            status = subcode if reason == ADP_STOPPED_APPLICATION_EXIT else 1
        self.exit_status = status
        self.calls.append(SemihostingCall(index, pc, operation, None))
        why = ("application exit" if reason == ADP_STOPPED_APPLICATION_EXIT
               else f"reason {reason:#x}" if reason is not None
               else f"unreadable parameter block at {argument:#x}")
        name = _OPERATION_NAMES[operation]
        guest.request_exit(
            pc, index, status,
            f"the program exited with status {status} ({name}, {why}) at {pc:#x} "
            f"({guest.symbolize(pc, guest.fetch_pa(pc))})",
        )


def _to_signed(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value
