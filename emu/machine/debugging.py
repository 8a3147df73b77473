"""Breakpoints and watchpoints: where a debugger stops the machine.

A breakpoint is a place in the code, by virtual address (``va``) or by
physical address (``pa``).  The run loop stops in front of it with a
range-bounded code hook at each address it may execute from - never a hook
on every instruction.  Boot code runs at two addresses: at its physical
alias while the MMU is off (or identity-mapped), at its link address once it
jumped there.  So a breakpoint on a link address inside the image also
watches the physical alias, and a physical breakpoint watches its VA == PA
and link aliases; a hook that fires where the instruction is fetched from
another PA than asked does not stop.

A watchpoint is a range of virtual (or physical) addresses and the accesses
that stop on it (write, read, or both).  Unicorn's memory hooks see physical
addresses, so a VA watchpoint is watched at the PA the current translation
gives it, worked out again at every stop (every change of translation
stops).  The machine stops *before* the access, as Arm's watchpoints do
(DDI 0487 D2.10.5: the instruction that triggers a watchpoint does not
complete; ELR points at it), which is also what GDB expects of
AArch64 targets (it steps over the access itself, watchpoints removed).
Unicorn reports an access from inside the instruction; stopping there leaves
it half done (a load's register written, a store's memory written), so the
access is undone: the CPU registers are restored from a context saved in the
hook and a store's old bytes written back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WatchKind(enum.StrEnum):
    """Which accesses a watchpoint stops on (GDB's watch, rwatch, awatch)."""

    WRITE = "write"
    READ = "read"
    ACCESS = "access"

    def covers(self, write: bool) -> bool:
        """Whether an access (a store when ``write``) stops on this watchpoint."""
        return self is WatchKind.ACCESS or (self is WatchKind.WRITE) == write


@dataclass(frozen=True)
class Breakpoint:
    """Stop in front of the instruction at ``address``: a VA, or with
    ``physical`` a PA (the instruction fetched from there, at any VA)."""

    address: int
    physical: bool = False


@dataclass(frozen=True)
class Watchpoint:
    """Stop before an access of ``kind`` to any byte of VA [address, address +
    length), or with ``physical`` of PA [address, address + length) through
    whatever VA."""

    address: int
    length: int
    kind: WatchKind = WatchKind.WRITE
    physical: bool = False

    def overlaps(self, address: int, size: int) -> bool:
        return address < self.address + self.length and self.address < address + size


@dataclass(frozen=True)
class WatchHit:
    """An access that hit a watchpoint: the instruction (``pc``, ``index``), the
    access (VA, size, whether a store and the value stored) and the watchpoint."""

    watchpoint: Watchpoint
    pc: int
    index: int
    address: int
    size: int
    write: bool
    value: int | None = None
