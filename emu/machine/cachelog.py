"""Cache maintenance logged without a Python call per instruction: the glue to
the native SYS hook in ``emu/machine/_cachelog.c``.

The hook is the machine's only UC_HOOK_INSN hook for SYS instructions.  IC
and DC operations go into a native log (instruction count, PC, exception
level, operand); every other SYS operation (TLBI, AT, ...) is handed to a
Python hook at once.  The machine reads the log back, in order, whenever the
event stream must be complete: before any other event, before a TLB fill
(which may change what the log's addresses translate to), and when
emulation stops.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

from unicorn import UC_HOOK_INSN, Uc, UcError
from unicorn import arm64_const as a64
from unicorn.unicorn_py3.arch.arm64 import HOOK_INSN_SYS_CFUNC, CpReg, UcRegCP64
from unicorn.unicorn_py3.unicorn import uccallback

from emu.arch.sysregs import sys_op_name
from emu.machine import _cachelog
from emu.machine.counter import BlockCounter, uclib

_CAPACITY = 4096  # BOOTEMU_CACHE_LOG_CAPACITY
_CRN7_OPERATIONS = 1024  # (op1, CRm, op2) with CRn = 7
_RECORD = struct.Struct("<QQQII")  # struct bootemu_cache_op

_DRAIN_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class _CacheOp(ctypes.Structure):
    # Mirrors struct bootemu_cache_op in _cachelog.c.
    _fields_ = [
        ("index", ctypes.c_uint64),
        ("pc", ctypes.c_uint64),
        ("operand", ctypes.c_uint64),
        ("operation", ctypes.c_uint32),
        ("el", ctypes.c_uint32),
    ]


class _CacheLogState(ctypes.Structure):
    # Mirrors struct bootemu_cache_log in _cachelog.c.
    _fields_ = [
        ("counter", ctypes.c_void_p),
        ("reg_read", ctypes.c_void_p),
        ("pc_reg", ctypes.c_int32),
        ("pstate_reg", ctypes.c_int32),
        ("others", ctypes.c_void_p),
        ("drain", ctypes.c_void_p),
        ("count", ctypes.c_uint64),
        ("logged", ctypes.c_uint8 * _CRN7_OPERATIONS),
        ("ops", _CacheOp * _CAPACITY),
    ]


class CacheOp(NamedTuple):
    """One logged IC or DC instruction."""

    index: int  # instructions executed before it
    pc: int
    el: int
    name: str  # "DC ZVA"
    operand: int  # Xt


def _operation_index(op1: int, crm: int, op2: int) -> int:
    return (op1 << 7) | (crm << 3) | op2


# Every named IC and DC operation, by the log's operation index (CRn = 7).
_LOGGED: dict[int, str] = {
    _operation_index(op1, crm, op2): name
    for op1 in range(8) for crm in range(16) for op2 in range(8)
    if (name := sys_op_name(op1, 7, crm, op2)).startswith(("IC ", "DC "))
}

SysHook = Callable[[Uc, int, CpReg], bool]


class CacheLog:
    """The IC/DC log of one Unicorn instance, kept by the native SYS hook."""

    def __init__(self, counter: BlockCounter) -> None:
        self._state = _CacheLogState()
        self._state.counter = counter.address
        self._state.reg_read = ctypes.cast(uclib().uc_reg_read, ctypes.c_void_p).value
        self._state.pc_reg = a64.UC_ARM64_REG_PC
        self._state.pstate_reg = a64.UC_ARM64_REG_PSTATE
        for operation in _LOGGED:
            self._state.logged[operation] = 1
        self._ops_address = ctypes.addressof(self._state.ops)
        self._native: ctypes.CDLL | None = None
        self._callbacks: tuple[object, ...] = ()

    def install(self, uc: Uc, others: SysHook, drain: Callable[[], None]) -> None:
        """Make the native hook ``uc``'s SYS hook: IC and DC are logged, every
        other operation goes to ``others`` (called as a UC_HOOK_INSN SYS hook
        is: return True to skip the instruction); ``drain`` is called when the
        log is full and must empty it (:meth:`take`)."""
        native = ctypes.CDLL(_cachelog.__file__)
        native.bootemu_cache_log_size.restype = ctypes.c_size_t
        if native.bootemu_cache_log_size() != ctypes.sizeof(_CacheLogState):
            raise RuntimeError(f"{_cachelog.__file__} is a stale build; reinstall bootemu")

        # Through the binding's own wrapper: an exception in a hook stops
        # emulation and is raised from emu_start, as for every other hook.
        @uccallback(uc, HOOK_INSN_SYS_CFUNC)
        def on_other(uc: Uc, reg: int, cp: int, _user_data: int) -> bool:
            fields = ctypes.cast(cp, ctypes.POINTER(UcRegCP64)).contents
            return others(uc, reg, CpReg(fields.crn, fields.crm, fields.op0, fields.op1,
                                         fields.op2, fields.val))

        @uccallback(uc, _DRAIN_CFUNC)
        def on_full(_uc: Uc, _user_data: int) -> None:
            drain()

        self._state.others = ctypes.cast(on_other, ctypes.c_void_p).value
        self._state.drain = ctypes.cast(on_full, ctypes.c_void_p).value
        handle = ctypes.c_size_t()
        status = uclib().uc_hook_add(
            uc._uch, ctypes.byref(handle), UC_HOOK_INSN,
            ctypes.cast(native.bootemu_sys_hook, ctypes.c_void_p),
            ctypes.byref(self._state), ctypes.c_uint64(1), ctypes.c_uint64(0),
            ctypes.c_int(a64.UC_ARM64_INS_SYS),
        )
        if status != 0:
            raise UcError(status)
        # Keep the library and the callbacks alive while Unicorn may call them.
        self._native = native
        self._callbacks = (on_other, on_full)

    @property
    def pending(self) -> int:
        """How many logged instructions have not been taken yet."""
        return self._state.count

    def take(self) -> Iterator[CacheOp]:
        """The logged instructions, oldest first; the log is empty afterwards."""
        count = self._state.count
        if not count:
            return iter(())
        data = ctypes.string_at(self._ops_address, count * _RECORD.size)
        self._state.count = 0
        return (CacheOp(index, pc, el, _LOGGED[operation], operand)
                for index, pc, operand, operation, el in _RECORD.iter_unpack(data))
