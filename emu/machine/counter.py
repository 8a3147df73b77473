"""Instruction counting without a Python call per block: the glue to the
native block hook in ``emu/machine/_blockcount.c``.

The hook keeps a running count and where the current translation block
started, so the exact count at any instruction the machine stops on is
``count before the block + (pc - block address) / 4``.  It also stops
emulation in front of a block that would overrun the instruction budget, and
in front of the first block entered after a deadline (an interrupt falling due).
"""

from __future__ import annotations

import ctypes

from unicorn import UC_HOOK_BLOCK, Uc, UcError

from emu.machine import _blockcount


class _BlockCounter(ctypes.Structure):
    # Mirrors struct bootemu_block_counter in _blockcount.h.
    _fields_ = [
        ("executed", ctypes.c_uint64),
        ("block_base", ctypes.c_uint64),
        ("block_address", ctypes.c_uint64),
        ("block_end", ctypes.c_uint64),
        ("limit", ctypes.c_uint64),
        ("emu_stop", ctypes.c_void_p),
        ("stopped_at_limit", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64),
        ("stopped_at_deadline", ctypes.c_uint64),
    ]


class BlockCounter:
    """The instruction count of one Unicorn instance, kept by the native block hook."""

    def __init__(self) -> None:
        self._state = _BlockCounter()
        self._state.emu_stop = ctypes.cast(uclib().uc_emu_stop, ctypes.c_void_p).value
        self._native: ctypes.CDLL | None = None

    def install(self, uc: Uc) -> None:
        """Add the native UC_HOOK_BLOCK to ``uc``; refuse a stale build of it."""
        native = ctypes.CDLL(_blockcount.__file__)
        native.bootemu_block_counter_size.restype = ctypes.c_size_t
        if native.bootemu_block_counter_size() != ctypes.sizeof(_BlockCounter):
            raise RuntimeError(f"{_blockcount.__file__} is a stale build; reinstall bootemu")
        handle = ctypes.c_size_t()
        status = uclib().uc_hook_add(
            uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
            ctypes.cast(native.bootemu_block_hook, ctypes.c_void_p),
            ctypes.byref(self._state), ctypes.c_uint64(1), ctypes.c_uint64(0),
        )
        if status != 0:
            raise UcError(status)
        self._native = native  # keep the library mapped while Unicorn may call it

    @property
    def address(self) -> int:
        """Where the native state lives (other C hooks read the count there)."""
        return ctypes.addressof(self._state)

    def index_at(self, pc: int) -> int:
        """Instructions executed before the one at ``pc`` (exact inside the current block)."""
        c = self._state
        if c.block_address <= pc < c.block_end:
            return c.block_base + (pc - c.block_address) // 4
        return c.executed

    def past_block_start(self, pc: int) -> bool:
        """Whether ``pc`` is an instruction of the block entered last, but not its
        first (at its first, the block was entered again: its hook has run)."""
        c = self._state
        return c.block_address < pc < c.block_end

    @property
    def entered(self) -> int:
        """Instructions in all the blocks entered so far (the last one whole)."""
        return self._state.executed

    def set(self, executed: int, pc: int) -> None:
        """Make ``executed`` the count in front of ``pc``, outside any block."""
        c = self._state
        c.executed = c.block_base = executed
        c.block_address = c.block_end = pc

    def arm(self, limit: int) -> None:
        """Stop in front of the first block that would take the count past ``limit``."""
        self._state.stopped_at_limit = 0
        self._state.limit = limit

    def disarm(self) -> None:
        self._state.stopped_at_limit = 0
        self._state.limit = 0

    def set_deadline(self, count: int | None) -> None:
        """Stop in front of the first block entered once ``count`` instructions have
        executed (None: no deadline); the machine takes an interrupt there."""
        self._state.stopped_at_deadline = 0
        self._state.deadline = max(count, 1) if count is not None else 0

    def stop_soon(self) -> None:
        """Stop in front of the next block entered (from any thread: one aligned
        store the native hook reads).  The run loop treats it as a deadline."""
        self._state.deadline = 1

    @property
    def stopped_at_deadline(self) -> bool:
        """Whether the last run stopped because the deadline passed."""
        return bool(self._state.stopped_at_deadline)

    @property
    def stopped_at_limit(self) -> bool:
        """Whether the last run stopped in front of a block that would overrun the limit."""
        return bool(self._state.stopped_at_limit)


def uclib() -> ctypes.CDLL:
    """Unicorn's C library, as the Python binding loaded it."""
    from unicorn.unicorn_py3.unicorn import uclib

    return uclib
