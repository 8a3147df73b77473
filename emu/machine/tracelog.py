"""Executed instructions logged without a Python call per instruction: the
glue to the native code hook in ``emu/machine/_tracelog.c``.

The hook appends (instruction index, PC) to a native buffer.  The machine
reads it back, in order, at the moments its event stream must be complete:
before an event is handed to observers (only the records up to the event's
instruction, so the event can annotate that instruction's line), before a
TLB fill, at every stop, and when the buffer is full.  Each read is an
:class:`InstructionBatch`: records of one exception level, oldest first.
"""

from __future__ import annotations

import bisect
import ctypes
import struct
from collections.abc import Callable

from unicorn import UC_HOOK_CODE, Uc, UcError
from unicorn import arm64_const as a64
from unicorn.unicorn_py3.unicorn import uccallback

from emu.machine import _tracelog
from emu.machine.counter import BlockCounter, uclib

CAPACITY = 1 << 16  # records the buffer holds (16 bytes each)
# Records before the first drain: the first instructions reach the recorder at
# once (a trace shows it has started), the rest in batches of CAPACITY.
FIRST_BATCH = 2
_RECORD_SIZE = 16  # struct bootemu_trace_record: index, pc
_PAIR = struct.Struct("=QQ")  # native order, as the hook writes them

_DRAIN_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class _TraceLogState(ctypes.Structure):
    # Mirrors struct bootemu_trace_log in _tracelog.c.
    _fields_ = [
        ("counter", ctypes.c_void_p),
        ("reg_read", ctypes.c_void_p),
        ("pstate_reg", ctypes.c_int32),
        ("el", ctypes.c_uint32),
        ("drain", ctypes.c_void_p),
        ("enabled", ctypes.c_uint64),
        ("capacity", ctypes.c_uint64),
        ("count", ctypes.c_uint64),
        ("logged", ctypes.c_uint64),
        ("last_index", ctypes.c_uint64),
        ("last_pc", ctypes.c_uint64),
        ("records", ctypes.c_void_p),
    ]


def _library() -> ctypes.CDLL:
    """The native module as a library (the hook's address), checked against this glue."""
    native = ctypes.CDLL(_tracelog.__file__)
    native.bootemu_trace_log_size.restype = ctypes.c_size_t
    if native.bootemu_trace_log_size() != ctypes.sizeof(_TraceLogState):
        raise RuntimeError(f"{_tracelog.__file__} is a stale build; reinstall bootemu")
    return native


class InstructionBatch:
    """Instructions executed one after the other, as the trace log recorded them.

    ``data`` holds the native records (index, VA: two little-endian 64-bit
    words each); ``el`` is the exception level all of them ran at.
    """

    __slots__ = ("data", "el", "_flat")

    def __init__(self, data: bytes, el: int) -> None:
        self.data = data
        self.el = el
        self._flat: list[int] | None = None

    def __len__(self) -> int:
        return len(self.data) // _RECORD_SIZE

    @property
    def flat(self) -> list[int]:
        """index, VA, index, VA, ... (the records as one list)."""
        if self._flat is None:
            self._flat = memoryview(self.data).cast("Q").tolist()
        return self._flat

    @property
    def indices(self) -> list[int]:
        return self.flat[0::2]

    @property
    def addresses(self) -> list[int]:
        return self.flat[1::2]

    def ends(self) -> tuple[int, int, int, int]:
        """Index and VA of the first record, then of the last."""
        data = self.data
        return _PAIR.unpack_from(data, 0) + _PAIR.unpack_from(data, len(data) - _RECORD_SIZE)

    def record(self, position: int) -> tuple[int, int]:
        """(index, VA) of the ``position``-th record (negative: from the end)."""
        if position < 0:
            position += len(self)
        return _PAIR.unpack_from(self.data, position * _RECORD_SIZE)

    def lines(self, start: int, stop: int, bodies: dict[int, str] | None, head: str = "",
              width: int = 9, middle: str = "  ", tail: str = "\n") -> str | None:
        """Records ``start`` to ``stop`` as text, one line each, made natively:
        ``head``, the index right-aligned in ``width`` characters, ``middle``,
        ``bodies[VA]`` (with ``bodies`` None: the VA as ``f"{va:#018x}"``),
        ``tail``.  None when a VA has no entry in ``bodies`` or the text is not
        ASCII (the caller then makes the lines itself)."""
        return _tracelog.format_lines(self.data, start, stop, bodies, head, width, middle, tail)


class TraceLog:
    """The executed-instruction log of one Unicorn instance, kept by the native code hook."""

    def __init__(self, counter: BlockCounter, capacity: int | None = None) -> None:
        capacity = capacity or CAPACITY
        self._capacity = capacity
        self._state = _TraceLogState()
        self._state.counter = counter.address
        self._state.reg_read = ctypes.cast(uclib().uc_reg_read, ctypes.c_void_p).value
        self._state.pstate_reg = a64.UC_ARM64_REG_PSTATE
        self._state.capacity = capacity
        self._buffer = (ctypes.c_uint64 * (2 * capacity))()
        self._state.records = ctypes.addressof(self._buffer)
        self._bytes = memoryview(self._buffer).cast("B")
        self._words = self._bytes.cast("Q")
        self._head = 0  # records before it were taken already
        self._handle: int | None = None
        self._native: ctypes.CDLL | None = None
        self._callback: object = None

    @property
    def installed(self) -> bool:
        return self._handle is not None

    def install(self, uc: Uc, el: int, drain: Callable[[], None]) -> None:
        """Add the native UC_HOOK_CODE to ``uc`` (the caller flushes the
        translated code: blocks translated before have no call to it);
        ``el`` is the current exception level, ``drain`` is called when the
        buffer is full and must empty it (:meth:`take`)."""
        native = _library()

        # Through the binding's own wrapper: an exception in the drain stops
        # emulation and is raised from emu_start, as for every other hook.
        @uccallback(uc, _DRAIN_CFUNC)
        def on_full(_uc: Uc, _user_data: int) -> None:
            drain()

        state = self._state
        state.drain = ctypes.cast(on_full, ctypes.c_void_p).value
        state.el = el
        state.capacity = min(FIRST_BATCH, self._capacity)
        state.count = 0
        state.logged = 0
        state.enabled = 1
        self._head = 0
        handle = ctypes.c_size_t()
        status = uclib().uc_hook_add(
            uc._uch, ctypes.byref(handle), UC_HOOK_CODE,
            ctypes.cast(native.bootemu_trace_hook, ctypes.c_void_p),
            ctypes.byref(state), ctypes.c_uint64(1), ctypes.c_uint64(0),
        )
        if status != 0:
            raise UcError(status)
        self._handle = handle.value
        # Keep the library and the callback alive while Unicorn may call them.
        self._native = native
        self._callback = on_full

    def disable(self) -> None:
        """Log nothing more (the hook stays until :meth:`remove`)."""
        self._state.enabled = 0

    def enable(self) -> None:
        """Log again after :meth:`disable` (an installed hook)."""
        self._state.enabled = 1

    def remove(self, uc: Uc) -> None:
        """Remove the hook from ``uc`` (the caller flushes the translated code)."""
        if self._handle is not None:
            status = uclib().uc_hook_del(uc._uch, ctypes.c_size_t(self._handle))
            if status != 0:
                raise UcError(status)
            self._handle = None
        self._state.enabled = 0
        self._state.count = 0
        self._head = 0

    @property
    def pending(self) -> int:
        """How many logged instructions have not been taken yet."""
        return self._state.count - self._head

    def take(self, upto: int | None = None) -> InstructionBatch | None:
        """The logged instructions not taken yet, oldest first (with ``upto``,
        only those whose index is at most ``upto``); None when there are none.
        The buffer is empty again once everything is taken."""
        state = self._state
        count, head = state.count, self._head
        if count <= head:
            return None
        end = count
        words = self._words
        if upto is not None and words[2 * (count - 1)] > upto:
            end = self._end_of(head, count, upto)
            if end == head:
                return None
        data = self._bytes[head * _RECORD_SIZE:end * _RECORD_SIZE].tobytes()
        if end == count:
            state.count = 0
            state.capacity = self._capacity  # after the first batch
            self._head = 0
        else:
            self._head = end
        return InstructionBatch(data, state.el)

    def _end_of(self, head: int, count: int, upto: int) -> int:
        """Where the records from ``head`` with an index at most ``upto`` end.

        Indices never fall (a restart in front of an instruction is not
        logged again), so those records are a prefix; and they usually count
        up by one, so the place is guessed first.
        """
        words = self._words
        guess = head + upto - words[2 * head]
        if (head <= guess < count - 1 and words[2 * guess] == upto
                and words[2 * guess + 2] > upto):
            return guess + 1
        return bisect.bisect_right(range(head, count), upto, key=lambda i: words[2 * i]) + head
