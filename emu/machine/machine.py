"""The machine: one Unicorn AArch64 CPU, its RAM, its reset state and its run loop.

Checking mode installs no per-instruction Python hook.  What it does install:

* a native (C) block hook that counts instructions (``emu/_blockcount.c``);
* the TLB-fill hook of the Python MMU (once per page per softmmu flush);
* MSR and SYS instruction hooks, which fire only on those instructions and
  turn them into typed events;
* a per-instruction Python hook only inside an *MMU-transition window* - from
  an MMU-off (or the first MMU-on) to the first context synchronization after
  the MMU is on - so the few instructions that matter are recorded with their
  VA and PA.

Every call to :meth:`Machine.run` ends with a :class:`Stop` that says why.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from unicorn import (
    UC_ARCH_ARM64,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_UNMAPPED,
    UC_HOOK_TLB_FILL,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_ARM,
    UC_PROT_ALL,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn import arm64_const as a64
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

from emu.arch.exceptions import (
    TakenException,
    abort_syndrome,
    entry_pstate,
    target_el,
    vector_offset,
)
from emu.arch.mmu.regime import TranslationRegime, regime_for_el
from emu.arch.mmu.tlb import PAGE_MASK, TlbEntry, TlbModel
from emu.arch.mmu.walk import Access, Fault, Translation, format_walk
from emu.arch.sysregs import sys_op_name, sysreg_name
from emu.board.devices import Board, Console, attach_devices
from emu.image.boot_image import BootImage, ImageError
from emu.machine import _blockcount
from emu.machine.events import (
    Barrier,
    CacheMaintenance,
    DescriptorWrite,
    Event,
    ExceptionTaken,
    MmuDisable,
    MmuEnable,
    StaleTranslationUse,
    SysRegWrite,
    TlbInvalidate,
    TransitionWindow,
    TtbrWrite,
    UnsynchronizedFetch,
    WindowFetch,
)
from emu.machine.mmu import (
    REGIME_FIELD_OF,
    SOFTMMU_PAGE,
    FillFault,
    MmuUnit,
    cp_reg,
)
from emu.machine.operands import memory_operand_address

MIB = 1 << 20
DEFAULT_RAM_SIZE = 128 * MIB  # QEMU virt's; see emu.board.devices.Board for the layout
DEFAULT_MAX_INSNS = 20_000_000
WINDOW_RECORD_LIMIT = 4096
WINDOW_TAIL_LIMIT = 8
# How long a translation-register write waits for its ISB before the machine
# stops watching for fetches that depend on it.
UNSYNCHRONIZED_LIMIT = 64

# SCR_EL3 = NS | HCE | RW: EL2 exists, is Non-secure and AArch64.  Unicorn
# resets SCR_EL3 to 0 (Secure), where EL2 translation misbehaves.
SCR_EL3_BOOT = 0x501
HCR_EL2_RW = 1 << 31
PSTATE_EL2H = 0x3C9
PSTATE_EL1H = 0x3C5

# Registers whose writes are events; those that shape translation also stop
# emulation briefly so the softmmu TLB can be flushed and windows opened.
EVENT_REGISTERS = frozenset(REGIME_FIELD_OF) | {"VBAR_EL2", "VBAR_EL1", "HCR_EL2"}

# QEMU's exception numbers as Unicorn's interrupt hook reports them.
_INTERRUPT_NAMES = {
    1: "undefined instruction",
    2: "SVC",
    3: "prefetch abort",
    4: "data abort",
    5: "IRQ",
    6: "FIQ",
    7: "breakpoint",
    11: "HVC",
    12: "trap to EL2",
    13: "SMC",
    16: "semihosting call",
}

_UNMAPPED_KINDS = {
    UC_MEM_FETCH_UNMAPPED: "fetch from",
    UC_MEM_READ_UNMAPPED: "read from",
    UC_MEM_WRITE_UNMAPPED: "write to",
}
_UNMAPPED_ERRORS = {
    UC_ERR_FETCH_UNMAPPED: "fetch from",
    UC_ERR_READ_UNMAPPED: "read from",
    UC_ERR_WRITE_UNMAPPED: "write to",
}

_ISB = 0xD5033FDF
_ERET = 0xD69F03E0


def _barrier_name(word: int) -> str | None:
    """Name an A64 barrier encoding, or None if the word is not one."""
    if word == _ISB:
        return "ISB"
    options = {0xF: "SY", 0xE: "ST", 0xD: "LD", 0xB: "ISH", 0xA: "ISHST", 0x9: "ISHLD",
               0x7: "NSH", 0x6: "NSHST", 0x5: "NSHLD", 0x3: "OSH", 0x2: "OSHST", 0x1: "OSHLD"}
    crm = (word >> 8) & 0xF
    if word & 0xFFFFF0FF == 0xD503309F:
        return f"DSB {options.get(crm, hex(crm))}"
    if word & 0xFFFFF0FF == 0xD50330BF:
        return f"DMB {options.get(crm, hex(crm))}"
    return None


class StopKind(enum.StrEnum):
    """Why a run ended."""

    ARRIVED = "arrived"          # PC reached one of the requested addresses
    BUDGET = "budget"            # the instruction budget ran out
    EXCEPTION = "exception"      # a fault or exception the run cannot continue past
    UNMAPPED = "unmapped"        # an access to physical memory that does not exist
    EXIT = "exit"                # the program exited (semihosting), with a status


@dataclass(frozen=True)
class Stop:
    """The end of a run: where, after how many instructions, and why, in words."""

    kind: StopKind
    pc: int
    index: int
    message: str
    detail: tuple[str, ...] = ()
    status: int | None = None    # the program's exit status, for StopKind.EXIT


class _BlockCounter(ctypes.Structure):
    # Mirrors struct bootemu_block_counter in _blockcount.c.
    _fields_ = [
        ("executed", ctypes.c_uint64),
        ("block_base", ctypes.c_uint64),
        ("block_address", ctypes.c_uint64),
        ("block_end", ctypes.c_uint64),
        ("limit", ctypes.c_uint64),
        ("emu_stop", ctypes.c_void_p),
        ("stopped_at_limit", ctypes.c_uint64),
    ]


class MachineObserver:
    """Receives events and closed windows as the machine runs; override what you need."""

    def on_event(self, event: Event) -> None:
        """Called for every event, in order."""

    def on_window_closed(self, window: TransitionWindow) -> None:
        """Called when an MMU-transition window ends (or when the run ends inside one)."""


class Machine:
    """A booted-but-not-yet-run AArch64 CPU with an image in RAM."""

    def __init__(self, image: BootImage, board: Board | None = None) -> None:
        """Map RAM, load ``image`` and the device tree, and reset the CPU for entry.

        ``board`` (RAM, entry EL, device tree, UART) defaults to QEMU virt's
        layout at EL2; :class:`~emu.image.boot_image.ImageError` if the image cannot be placed.
        """
        self.image = image
        self.board = board or Board()
        self.plan = self.board.plan(image)
        self.ram_base, self.ram_size = self.plan.ram_base, self.plan.ram_size
        self.dtb_address = self.plan.dtb_address
        # Everything the guest prints, from the UART and semihosting.
        self.console = Console()

        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.ctl_set_cpu_model(a64.UC_CPU_ARM64_MAX)
        self.uc = uc
        try:
            uc.mem_map(self.ram_base, self.ram_size, UC_PROT_ALL)
        except UcError as err:
            raise ImageError(
                f"cannot map RAM at {self.ram_base:#x} (+{self.ram_size:#x}): {err}"
            ) from err
        self._load(image)
        self._reset(self.board.el)

        self.tlb = TlbModel()
        self.mmu = MmuUnit(uc, self.tlb, self.index_now)
        self.mmu.on_stale = self._on_stale_use
        self.mmu.on_table_store = self._on_table_store
        # Stores into live table pages seen but not yet compared: (index, pc,
        # va of the store, 4 KiB page PA, the page's bytes before the store,
        # the live TLB entries walked through each descriptor of the page then).
        self._table_stores: list[tuple[int, int, int, int, bytes,
                                       dict[int, tuple[TlbEntry, ...]]]] = []
        self.events: list[Event] = []
        self.windows: list[TransitionWindow] = []
        self.observers: list[MachineObserver] = []
        # Tried in order on every exception Unicorn reports (HVC, SMC, SVC,
        # undefined instruction, ...); one that returns True has dealt with it
        # and the guest continues, otherwise the run stops.
        self.interrupt_handlers: list[Callable[[Machine, int], bool]] = []
        self._window: TransitionWindow | None = None
        self._tail_of: TransitionWindow | None = None
        self._unsynced: list[SysRegWrite] = []  # translation writes not yet synchronized
        self._last_watched = -1
        self._window_hook: int | None = None
        self._want_window_hook = False
        self._flush_pending = False
        self._stop: Stop | None = None
        self._last_vector: tuple[int, int] | None = None
        self._unmapped: tuple[str, int] | None = None

        self._counter = _BlockCounter()
        self._counter.emu_stop = ctypes.cast(_uclib().uc_emu_stop, ctypes.c_void_p).value
        self._install_hooks()
        self.devices = attach_devices(self, self.plan, self.board.el)

    # -- set-up --------------------------------------------------------------

    def _load(self, image: BootImage) -> None:
        """Write the image's bytes and the device tree into RAM (placement is checked)."""
        for region in image.regions():
            self.uc.mem_write(region.physical, region.data)
            # RAM starts zeroed, so an ELF segment's zero-filled tail needs no write.
        if image.bss is not None:
            # The loader leaves BSS as it found it; garbage proves the boot code clears it.
            start, stop = image.bss
            self.uc.mem_write(start, b"\xa5" * (stop - start))
        self.uc.mem_write(self.dtb_address, self.plan.dtb)

    def _reset(self, el: int) -> None:
        uc = self.uc
        scr = cp_reg("SCR_EL3")
        uc.reg_write(a64.UC_ARM64_REG_CP_REG, scr + (SCR_EL3_BOOT,))
        uc.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE_EL2H if el == 2 else PSTATE_EL1H)
        # Writing PSTATE does not rebuild Unicorn's cached CPU flags; any CP
        # register write does (unicorn issue #2333).
        uc.reg_write(a64.UC_ARM64_REG_CP_REG, scr + (SCR_EL3_BOOT,))
        if el == 1:
            # HCR_EL2.RW: EL1 is AArch64 (else QEMU runs EL1 as AArch32).
            uc.reg_write(a64.UC_ARM64_REG_CP_REG, cp_reg("HCR_EL2") + (HCR_EL2_RW,))
        uc.reg_write(a64.UC_ARM64_REG_X0, self.dtb_address)
        for reg in (a64.UC_ARM64_REG_X1, a64.UC_ARM64_REG_X2, a64.UC_ARM64_REG_X3):
            uc.reg_write(reg, 0)
        uc.reg_write(a64.UC_ARM64_REG_PC, self.image.entry)

    def _install_hooks(self) -> None:
        uc = self.uc
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        if uc.ctl_get_page_size() != SOFTMMU_PAGE:
            raise RuntimeError(f"Unicorn's page size is {uc.ctl_get_page_size()}, "
                               f"the MMU glue expects {SOFTMMU_PAGE}")
        uc.hook_add(UC_HOOK_TLB_FILL, self.mmu.on_tlb_fill)
        uc.hook_add(UC_HOOK_INSN, self._on_msr, None, 1, 0, a64.UC_ARM64_INS_MSR)
        uc.hook_add(UC_HOOK_INSN, self._on_sys, None, 1, 0, a64.UC_ARM64_INS_SYS)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        native = ctypes.CDLL(_blockcount.__file__)
        native.bootemu_block_counter_size.restype = ctypes.c_size_t
        if native.bootemu_block_counter_size() != ctypes.sizeof(_BlockCounter):
            raise RuntimeError(f"{_blockcount.__file__} is a stale build; reinstall bootemu")
        handle = ctypes.c_size_t()
        status = _uclib().uc_hook_add(
            uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
            ctypes.cast(native.bootemu_block_hook, ctypes.c_void_p),
            ctypes.byref(self._counter), ctypes.c_uint64(1), ctypes.c_uint64(0),
        )
        if status != 0:
            raise UcError(status)
        self._native = native  # keep the library mapped while Unicorn may call it

    # -- observation ---------------------------------------------------------

    @property
    def pc(self) -> int:
        return self.uc.reg_read(a64.UC_ARM64_REG_PC)

    @property
    def el(self) -> int:
        return self.mmu.current_el()

    def reg(self, name: str) -> int:
        """A general or system register by name (``x19``, ``sp``, ``TTBR0_EL2``)."""
        attribute = f"UC_ARM64_REG_{name.upper()}"
        if hasattr(a64, attribute):
            return self.uc.reg_read(getattr(a64, attribute))
        return self.mmu.read_sysreg(name.upper())

    def index_at(self, pc: int) -> int:
        """Instructions executed before the one at ``pc`` (exact, from the block counter)."""
        c = self._counter
        if c.block_address <= pc < c.block_end:
            return c.block_base + (pc - c.block_address) // 4
        return c.executed

    def index_now(self) -> int:
        return self.index_at(self.pc)

    @property
    def executed(self) -> int:
        return self.index_now()

    def symbolize(self, va: int, pa: int | None = None) -> str:
        return self.image.symbolize(va, pa)

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        for observer in self.observers:
            observer.on_event(event)

    # -- hooks ---------------------------------------------------------------

    def _on_msr(self, uc: Uc, _reg: int, cp, _user_data) -> bool:
        name = sysreg_name(cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        if name not in EVENT_REGISTERS:
            return False
        pc = self.pc
        index = self.index_at(pc)
        el = self.mmu.current_el()
        fetch_regime = self.mmu.regime(regime_for_el(el))
        pa = self.mmu.fetch_pa(pc, fetch_regime)
        old = self.mmu.read_sysreg(name)
        new = cp.val
        slot = REGIME_FIELD_OF.get(name)
        if slot is None:
            self._emit(SysRegWrite(index, pc, pa, el, name, old, new, fetch_regime, fetch_regime))
            return False
        regime_name, fieldname = slot
        before = self.mmu.regime(regime_name)
        after = replace(before, **{fieldname: new})
        common = (index, pc, pa, el, name, old, new, before, after)
        event: SysRegWrite
        if fieldname == "sctlr" and (old ^ new) & 1:
            event = MmuEnable(*common) if new & 1 else MmuDisable(*common)
        elif fieldname in ("ttbr0", "ttbr1"):
            event = TtbrWrite(*common, mmu_enabled=before.mmu_enabled)
        else:
            event = SysRegWrite(*common)
        # Fills can happen between this write and the stop below, and must
        # already see the new value.
        self.mmu.remember(after)
        self._emit(event)
        self._track_window(event, word=int.from_bytes(uc.mem_read(pa, 4), "little")
                           if pa is not None else 0)
        if after.name is regime_for_el(el):
            self._unsynced.append(event)
        self._want_window_hook = self._watching()
        # Stop right after this instruction: the softmmu TLB must be flushed
        # (QEMU keeps it across TTBR writes) and the regime snapshot re-read.
        self._flush_pending = True
        uc.emu_stop()
        return False

    def _on_sys(self, uc: Uc, _reg: int, cp, _user_data) -> bool:
        name = sys_op_name(cp.op1, cp.crn, cp.crm, cp.op2)
        pc = self.pc
        index = self.index_at(pc)
        el = self.mmu.current_el()
        pa = self.mmu.fetch_pa(pc)
        if name.startswith("TLBI"):
            if self._table_stores:
                self._compare_table_stores()  # report the stores before what they await
            self.tlb.apply_tlbi(name, cp.val)
            self._emit(TlbInvalidate(index, pc, pa, el, name, cp.val))
        elif name.startswith(("IC", "DC")):
            self._emit(CacheMaintenance(index, pc, pa, el, name, cp.val))
        return False

    def _on_interrupt(self, uc: Uc, intno: int, _user_data) -> None:
        for handler in self.interrupt_handlers:
            if handler(self, intno):
                return  # handled, e.g. firmware or semihosting: the guest runs on
        pc = self.pc
        cause = _INTERRUPT_NAMES.get(intno, f"exception {intno}")
        esr = self.mmu.read_sysreg("ESR_EL2" if self.el >= 2 else "ESR_EL1")
        event = ExceptionTaken(self.index_at(pc), pc, self.mmu.fetch_pa(pc), self.el,
                               f"{cause} (ESR {esr:#x})")
        self._emit(event)
        self._stop = Stop(StopKind.EXCEPTION, pc, event.index,
                          f"exception taken at {pc:#x} ({self.symbolize(pc, event.pa)}): {cause}")
        uc.emu_stop()

    def _on_unmapped(self, uc: Uc, access: int, address: int, _size, _value, _user_data) -> bool:
        self._unmapped = (_UNMAPPED_KINDS.get(access, "access to"), address)
        return False

    def _on_stale_use(self, entry: TlbEntry, fresh: Translation | Fault, va: int,
                      access: Access) -> None:
        pc = self.pc
        self._emit(StaleTranslationUse(self.index_at(pc), pc, self.mmu.fetch_pa(pc), self.el,
                                       va, access.value, entry, fresh))

    def _on_table_store(self, va: int, page: int) -> None:
        """A store is about to land in a page of live descriptors: keep the page's
        bytes, stop right after the instruction and compare (in ``_apply_pending``)."""
        pc = self.pc
        index = self.index_at(pc)
        if any(store[0] == index for store in self._table_stores):
            # Stopping from inside a fill abandons the instruction; the second
            # time round it must be let through, or it would never complete.
            return
        before = bytes(self.uc.mem_read(page, 0x1000))
        live = self.tlb.entries_by_descriptor(page)
        self._table_stores.append((index, pc, va, page, before, live))
        self._flush_pending = True  # hand the page back read-only afterwards
        self.uc.emu_stop()

    def _compare_table_stores(self) -> None:
        now = self.index_now()
        done = [store for store in self._table_stores if store[0] < now]
        # A store not executed yet (the stop came first) stays pending.
        self._table_stores = [store for store in self._table_stores if store[0] >= now]
        for index, pc, va, page, before, live in done:
            after = bytes(self.uc.mem_read(page, 0x1000))
            for offset in range(0, 0x1000, 8):
                old = int.from_bytes(before[offset:offset + 8], "little")
                new = int.from_bytes(after[offset:offset + 8], "little")
                if old == new:
                    continue
                address = page + offset
                self._emit(DescriptorWrite(index, pc, self.mmu.fetch_pa(pc), self.el,
                                           va, address, old, new, live.get(address, ())))

    # -- MMU-transition windows ----------------------------------------------

    def _track_window(self, event: SysRegWrite, word: int) -> None:
        if event.after.name is not regime_for_el(event.el):
            return  # e.g. EL2 setting up SCTLR_EL1: its own fetches are unaffected
        self._tail_of = None
        if isinstance(event, MmuDisable) and self._window is None:
            self._open_window(event, old=event.before, word=word)
        elif isinstance(event, MmuEnable):
            if self._window is None:
                self._open_window(event, old=None, word=word)
            assert self._window is not None
            self._window.mmu_on_index = event.index

    def _open_window(self, event: SysRegWrite, old, word: int) -> None:
        window = TransitionWindow(opened_by=event, old=old)
        # The opening instruction is evidence only: where its own next fetch
        # lands is mmu-toggle-off-identity's question, not this window's.
        window.fetches.append(
            WindowFetch(event.index, event.pc, event.pa if event.pa is not None else -1, word)
        )
        self._window = window

    def _watching(self) -> bool:
        """Whether any per-instruction observation is under way."""
        return self._window is not None or self._tail_of is not None or bool(self._unsynced)

    def _on_window_insn(self, uc: Uc, address: int, _size: int, _user_data) -> None:
        """The per-instruction hook; it exists only while :meth:`_watching`."""
        index = self.index_at(address)
        if index == self._last_watched:
            return  # re-entered after a stop in front of this instruction
        self._last_watched = index
        fetch = self._fetch_record(index, address)
        barrier = _barrier_name(fetch.word) or ("ERET" if fetch.word == _ERET else None)
        event = None
        if barrier is not None:
            event = Barrier(index, address, fetch.pa if fetch.pa >= 0 else None, self.el, barrier)
            self._emit(event)
        if self._unsynced:
            self._check_unsynchronized(fetch)
        if self._window is not None:
            self._record_window(fetch, event)
        elif self._tail_of is not None:
            self._record_tail(fetch)
        if barrier in ("ISB", "ERET"):
            self._unsynced.clear()  # context synchronization: every write now applies
        if not self._watching():
            self._want_window_hook = False
            uc.emu_stop()

    def _record_window(self, fetch: WindowFetch, barrier: Barrier | None) -> None:
        window = self._window
        assert window is not None
        window.pages.setdefault(fetch.va & PAGE_MASK, fetch)
        if len(window.fetches) < WINDOW_RECORD_LIMIT:
            window.fetches.append(fetch)
        else:
            window.truncated = True
        if barrier is not None and barrier.operation in ("ISB", "ERET") and (
            window.mmu_on_index is not None or barrier.operation == "ERET"
        ):
            self._close_window(barrier)
            self._tail_of = window

    def _record_tail(self, fetch: WindowFetch) -> None:
        window = self._tail_of
        assert window is not None
        window.tail.append(fetch)
        if fetch.va != fetch.pa or len(window.tail) >= WINDOW_TAIL_LIMIT:
            self._tail_of = None

    def _check_unsynchronized(self, fetch: WindowFetch) -> None:
        """Report fetches the CPU may still make under a regime a write replaced.

        Until a context synchronization event, the PE may use the old value of
        a translation register; a fetch whose translation differs between the
        old and new values depends on the missing synchronization.
        """
        self._unsynced = [w for w in self._unsynced
                          if fetch.index - w.index <= UNSYNCHRONIZED_LIMIT]
        new_pa = fetch.pa if fetch.pa >= 0 else None
        # The latest write that makes a difference is the one to name: its
        # "before" already holds the earlier unsynchronized values.
        for write in reversed(self._unsynced):
            old = self.mmu.translate(fetch.va, Access.FETCH, write.before)
            old_pa = old.pa if isinstance(old, Translation) else None
            if old_pa != new_pa:
                self._unsynced.clear()  # one report per unsynchronized stretch
                self._emit(UnsynchronizedFetch(fetch.index, fetch.va, new_pa, self.el, write,
                                               old_pa))
                return

    def _fetch_record(self, index: int, address: int) -> WindowFetch:
        pa = self.mmu.fetch_pa(address)
        word = int.from_bytes(self.uc.mem_read(pa, 4), "little") if pa is not None else 0
        return WindowFetch(index, address, pa if pa is not None else -1, word)

    def _close_window(self, closing: Event | None) -> None:
        window = self._window
        if window is None:
            return
        window.closed_by = closing
        window.new = self.mmu.regime(window.opened_by.after.name)
        if not window.new.mmu_enabled:
            # The run ended with the MMU still off: judge against the tables TTBR holds.
            window.new = replace(window.new, sctlr=window.new.sctlr | 1)
        for page in window.pages:
            window.identity_new[page] = self._identity_mapped(page, window.new)
            if window.old is not None:
                window.identity_old[page] = self._identity_mapped(page, window.old)
        self._window = None
        self.windows.append(window)
        for observer in self.observers:
            observer.on_window_closed(window)

    def _identity_mapped(self, va: int, regime: TranslationRegime) -> bool:
        result = self.mmu.translate(va, Access.FETCH, regime)
        return isinstance(result, Translation) and result.pa == va

    # -- running -------------------------------------------------------------

    def _apply_pending(self) -> None:
        uc = self.uc
        if self._table_stores:
            self._compare_table_stores()
        if self._flush_pending:
            self._flush_pending = False
            self.mmu.forget_registers()
            uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        if self._want_window_hook and self._window_hook is None:
            self._window_hook = uc.hook_add(UC_HOOK_CODE, self._on_window_insn)
            uc.ctl_flush_tb()  # blocks translated before now lack the hook call
        elif not self._want_window_hook and self._window_hook is not None:
            uc.hook_del(self._window_hook)
            self._window_hook = None
            uc.ctl_flush_tb()

    def _resync_counter(self) -> None:
        """Make the counter's total exact at the current PC after any kind of stop."""
        c = self._counter
        executed = self.index_now()
        c.executed = c.block_base = executed
        c.block_address = c.block_end = self.pc

    def request_stop(self, stop: Stop) -> None:
        """End the current run with ``stop`` (for devices, e.g. a program's exit).

        Called from a hook; the run returns ``stop`` as soon as Unicorn stops.
        """
        self._stop = stop
        self.uc.emu_stop()

    def run(self, until: Iterable[int] = (), max_insns: int = DEFAULT_MAX_INSNS) -> Stop:
        """Run until PC is one of ``until``, the total budget is spent, or the guest stops.

        ``max_insns`` counts from the machine's reset, so repeated runs share one budget.
        """
        exits = sorted(set(until))
        uc = self.uc
        # Stops are range-bounded code hooks: Unicorn emits their call only for
        # the instruction at that address.  (Its own exits are not used: before
        # running, uc_emu_start probes a fetch near each exit address, which
        # would reach the MMU model as a fetch the guest never made.)
        stop_hooks = [uc.hook_add(UC_HOOK_CODE, self._on_exit, None, address, address)
                      for address in exits]
        counter = self._counter
        try:
            while True:
                if self.index_now() >= max_insns:
                    return self._finish(Stop(StopKind.BUDGET, self.pc, self.index_now(),
                                             f"instruction budget of {max_insns} spent"))
                self._stop = None
                self._unmapped = None
                self.mmu.first_fault = None
                counter.stopped_at_limit = 0
                counter.limit = max_insns
                self._apply_pending()
                error = self._start(self.pc)
                at_limit = bool(counter.stopped_at_limit)
                if at_limit:
                    # The next block would overrun the budget: finish it exactly.
                    counter.stopped_at_limit = 0
                    counter.limit = 0
                    remaining = max_insns - self.index_now()
                    if remaining > 0 and error is None:
                        # count=0 would mean "no limit" to Unicorn, hence the guard;
                        # code translated before has no call to Unicorn's counter.
                        uc.ctl_flush_tb()
                        error = self._start(self.pc, count=remaining)
                        if error is None and not self._flush_pending and self._stop is None:
                            counter.executed = max_insns
                            counter.block_address = counter.block_end = self.pc
                self._resync_counter()
                if self._stop is not None:  # the guest took an exception first
                    return self._finish(self._stop)
                if error is not None:
                    fill = self.mmu.first_fault
                    if error.errno == UC_ERR_EXCEPTION and fill is not None:
                        stop = self._take_abort(fill)
                        if stop is None:
                            continue  # delivered to the guest's vector: run on
                        return self._finish(stop)
                    return self._finish(self._error_stop(error))
                pc = self.pc
                if pc in exits:
                    return self._finish(Stop(StopKind.ARRIVED, pc, self.index_now(),
                                             f"arrived at {pc:#x} ({self.symbolize(pc)})"))
        finally:
            for handle in stop_hooks:
                uc.hook_del(handle)
            self._apply_pending()

    def _on_exit(self, uc: Uc, _address: int, _size: int, _user_data) -> None:
        uc.emu_stop()

    def _start(self, pc: int, count: int = 0) -> UcError | None:
        # ``until`` is an odd address no PC can equal, inside the page about to
        # be fetched anyway: Unicorn's start-up probe of it is then harmless.
        try:
            self.uc.emu_start(pc, (pc & ~0x3FF) | 1, 0, count)
        except UcError as err:
            return err
        return None

    def _finish(self, stop: Stop) -> Stop:
        if self._window is not None:
            # The run ends inside a transition: judge what was fetched so far.
            self._close_window(None)
        return stop

    def _take_abort(self, fill: FillFault) -> Stop | None:
        """Deliver a walk fault to the guest as hardware would, or say why it cannot be.

        Returns None when the abort was taken (the run goes on at the vector),
        else the Stop that reports it.
        """
        uc = self.uc
        pc, index = self.pc, self.index_now()
        fault = replace(fill.fault, va=self._faulting_address(fill.fault, pc))
        from_el = fill.el
        to_el = target_el(fill.regime.name.value, from_el)
        what = "instruction abort" if fault.access is Access.FETCH else "data abort"
        cause = (f"{what}: {fault.describe()} for {fault.access.value} of VA {fault.va:#x} "
                 f"in the {fill.regime.name.value} regime")
        vbar = self.mmu.read_sysreg(f"VBAR_EL{to_el}")
        pstate = uc.reg_read(a64.UC_ARM64_REG_PSTATE)
        vector = vbar + vector_offset(from_el, to_el, pstate)
        target_regime = self.mmu.regime(regime_for_el(to_el))
        if vbar == 0:
            reason = f"VBAR_EL{to_el} is 0: no exception vector installed"
        elif isinstance(self.mmu.translate(vector, Access.FETCH, target_regime), Fault):
            reason = f"the vector at {vector:#x} is not mapped for instruction fetch"
        elif self._last_vector == (vector, index):
            reason = f"the vector at {vector:#x} faulted again before any instruction ran"
        else:
            reason = None
        if reason is not None:
            self._emit(ExceptionTaken(index, pc, self.mmu.fetch_pa(pc), from_el, cause,
                                      None, fault))
            message = f"{what} at {pc:#x} ({self.symbolize(pc)}): {cause[len(what) + 2:]}; {reason}"
            return Stop(StopKind.EXCEPTION, pc, index, message, tuple(format_walk(fault)))
        taken = TakenException(
            description=what,
            from_el=from_el,
            to_el=to_el,
            esr=abort_syndrome(fault, same_el=from_el == to_el),
            far=fault.va,
            elr=pc,
            spsr=pstate,
            vector=vector,
        )
        self.take_exception(taken)
        self._last_vector = (vector, index)
        self._emit(ExceptionTaken(index, pc, self.mmu.fetch_pa(pc, fill.regime), from_el, cause,
                                  taken, fault))
        return None

    def _faulting_address(self, fault: Fault, pc: int) -> int:
        """The exact VA an abort is about, for FAR.

        Unicorn hands the fill hook only the 1 KiB page of the access.  A fetch
        faults at the PC itself; for a load or store the address is worked out
        from the instruction's memory operand, and kept only if it lies in that
        page (otherwise the page address is the best there is).
        """
        page = fault.va & ~(SOFTMMU_PAGE - 1)
        if fault.access is Access.FETCH:
            return pc if pc & ~(SOFTMMU_PAGE - 1) == page else fault.va
        pa = self.mmu.fetch_pa(pc)
        if pa is None:
            return fault.va
        word = self.uc.mem_read(pa, 4)
        address = memory_operand_address(word, pc, self.uc)
        if address is not None and address & ~(SOFTMMU_PAGE - 1) == page:
            return address
        return fault.va

    def take_exception(self, taken: TakenException) -> None:
        """Write the registers an exception entry writes, then jump to the vector."""
        uc = self.uc
        el = taken.to_el
        uc.reg_write(getattr(a64, f"UC_ARM64_REG_ELR_EL{el}"), taken.elr)
        uc.reg_write(getattr(a64, f"UC_ARM64_REG_FAR_EL{el}"), taken.far or 0)
        uc.reg_write(a64.UC_ARM64_REG_CP_REG, cp_reg(f"SPSR_EL{el}") + (taken.spsr,))
        if taken.from_el != el:
            # The stack pointer is banked per EL: save the interrupted one, load the target's.
            banked = taken.from_el if taken.spsr & 1 else 0
            uc.reg_write(getattr(a64, f"UC_ARM64_REG_SP_EL{banked}"),
                         uc.reg_read(a64.UC_ARM64_REG_SP))
            target_sp = uc.reg_read(getattr(a64, f"UC_ARM64_REG_SP_EL{el}"))
        uc.reg_write(a64.UC_ARM64_REG_PSTATE, entry_pstate(el))
        # Writing a CP register rebuilds Unicorn's cached CPU flags after PSTATE.
        uc.reg_write(a64.UC_ARM64_REG_CP_REG, cp_reg(f"ESR_EL{el}") + (taken.esr,))
        if taken.from_el != el:
            uc.reg_write(a64.UC_ARM64_REG_SP, target_sp)
        uc.reg_write(a64.UC_ARM64_REG_PC, taken.vector)
        self._flush_pending = True

    def _error_stop(self, err: UcError) -> Stop:
        pc = self.pc
        index = self.index_now()
        where = f"{pc:#x} ({self.symbolize(pc, self.mmu.fetch_pa(pc))})"
        if self._unmapped is not None or err.errno in (
            UC_ERR_FETCH_UNMAPPED, UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED
        ):
            kind, address = self._unmapped or (_UNMAPPED_ERRORS.get(err.errno, "access to"), pc)
            return Stop(StopKind.UNMAPPED, pc, index,
                        f"{kind} physical address {address:#x} where there is no memory, "
                        f"at {where}")
        if err.errno == UC_ERR_INSN_INVALID:
            return Stop(StopKind.EXCEPTION, pc, index, f"undefined instruction at {where}")
        if err.errno in (UC_ERR_FETCH_PROT, UC_ERR_READ_PROT, UC_ERR_WRITE_PROT):
            return Stop(StopKind.EXCEPTION, pc, index, f"permission fault at {where}")
        return Stop(StopKind.EXCEPTION, pc, index, f"emulation stopped at {where}: {err}")

    def translate(self, va: int, regime: TranslationRegime | None = None) -> Translation | Fault:
        """Walk VA in a regime (the current one by default) over the machine's memory."""
        return self.mmu.translate(va, regime=regime)


def _uclib():
    from unicorn.unicorn_py3.unicorn import uclib

    return uclib
