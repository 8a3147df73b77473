"""The machine: one Unicorn AArch64 CPU, its RAM, its reset state and its run loop.

Checking mode installs no per-instruction Python hook.  What it does install:

* a native (C) block hook that counts instructions (:mod:`emu.machine.counter`);
* the TLB-fill hook of the Python MMU (once per page per softmmu flush);
* MSR and SYS instruction hooks, which fire only on those instructions and
  turn them into typed events (:mod:`emu.machine.probes`); the SYS hook is
  native and only logs IC and DC, which become events when the log is read
  (:mod:`emu.machine.cachelog`);
* a native (C) code hook that logs each executed instruction's index and
  PC, only while something records instructions (``bootemu trace``): the
  log is handed over in batches, in order (:mod:`emu.machine.tracelog`);
* a per-instruction Python hook only while an observer asks to watch
  instructions: for checking, only inside an *MMU-transition window* - from
  an MMU-off (or the first MMU-on) to the first context synchronization after
  the MMU is on - so the few instructions that matter are recorded with their
  VA and PA (:mod:`emu.machine.windows`); from a translation-register write
  to its context synchronization; and from a TLBI or table store to the DSB
  that completes it (:mod:`emu.machine.maintenance`).

Every call to :meth:`Machine.run` ends with a :class:`~emu.machine.stop.Stop`
that says why.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from unicorn import (
    UC_ARCH_ARM64,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_PROT,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_PROT,
    UC_ERR_WRITE_PROT,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_TLB_FILL,
    UC_MEM_WRITE,
    UC_MODE_ARM,
    UC_PROT_ALL,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn import arm64_const as a64
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

from emu.arch.exceptions import TakenException
from emu.arch.mmu.regime import TranslationRegime, regime_asid
from emu.arch.mmu.tlb import PAGE_MASK, TlbModel
from emu.arch.mmu.walk import Access, Fault, Translation
from emu.arch.sysregs import SYSREGS
from emu.board.board import Board
from emu.board.console import Console
from emu.board.cpu import UNICORN_MODELS
from emu.board.devices import SysregDevice, attach_devices
from emu.board.flash import virt_flash
from emu.board.guest import InterruptHandler, MmioRead, MmioWrite
from emu.image.boot_image import BootImage, ImageError
from emu.machine.counter import BlockCounter, uclib
from emu.machine.debugging import Breakpoint, WatchHit, WatchKind, Watchpoint
from emu.machine.delivery import ExceptionDelivery
from emu.machine.events import Barrier, Event, TransitionWindow
from emu.machine.interrupts import InterruptDelivery
from emu.machine.maintenance import MaintenanceTracker
from emu.machine.mmu import SOFTMMU_PAGE, MmuUnit, cp_reg
from emu.machine.operands import memory_operand_address
from emu.machine.probes import Probes
from emu.machine.rom import RomBanks
from emu.machine.stop import Stop, StopKind
from emu.machine.tracelog import InstructionBatch, TraceLog
from emu.machine.windows import WindowTracker, barrier_name

MIB = 1 << 20
DEFAULT_RAM_SIZE = 128 * MIB  # QEMU virt's; see emu.board.board.Board for the layout
# DC ZVA, Xt (SYS #3, C7, C4, #1, Xt) without its register field.
_DC_ZVA = 0xD50B7420
_RT_MASK = 0x1F
DEFAULT_MAX_INSNS = 20_000_000

# SCR_EL3 = NS | HCE | RW: EL2 exists, is Non-secure and AArch64.  Unicorn
# resets SCR_EL3 to 0 (Secure), where EL2 translation misbehaves.
SCR_EL3_BOOT = 0x501
HCR_EL2_RW = 1 << 31
PSTATE_EL2H = 0x3C9
PSTATE_EL1H = 0x3C5


class MemoryAccessError(ValueError):
    """Guest memory that cannot be read or written at an address (a translation
    fault, or no memory there)."""

    def __init__(self, address: int, reason: str) -> None:
        super().__init__(f"cannot access {address:#x}: {reason}")
        self.address = address


class MemoryObserver(Protocol):
    """Something that watches data accesses one by one (see :meth:`Machine.watch_memory`)."""

    def on_memory(self, access: Access, address: int) -> None:
        """Called before a load (``Access.READ``) or store (``Access.WRITE``) of VA ``address``."""


class MachineObserver:
    """Receives events and closed windows as the machine runs; override what you need."""

    def on_event(self, event: Event) -> None:
        """Called for every event, in order."""

    def on_window_closed(self, window: TransitionWindow) -> None:
        """Called when an MMU-transition window ends (or when the run ends inside one)."""


class InstructionObserver(Protocol):
    """Something that watches instructions one by one (see
    :meth:`Machine.watch_instructions`)."""

    def on_instruction(self, index: int, address: int) -> None:
        """Called before the instruction at ``address``, the ``index``-th of the run."""


InstructionRecorder = Callable[[InstructionBatch], None]
"""Receives the executed instructions in batches (see :meth:`Machine.record_instructions`)."""


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
        uc.ctl_set_cpu_model(UNICORN_MODELS[self.board.cpu])
        if self.board.translation_buffer is not None:
            # Before the first mapping: the engine is set up then.
            uc.ctl_set_tcg_buffer_size(self.board.translation_buffer)
        self.uc = uc
        banks = [(self.ram_base, self.ram_size, UC_PROT_ALL, "RAM"),
                 *((base, size, UC_PROT_ALL, "RAM") for base, size in self.plan.extra_memory)]
        for base, size, perms, what in banks:
            try:
                uc.mem_map(base, size, perms)
            except UcError as err:
                raise ImageError(f"cannot map {what} at {base:#x} (+{size:#x}): {err}") from err
        # QEMU virt's two CFI flash banks, the firmware loaded into the first:
        # memory while they read as memory, a device once commanded (emu.machine.rom).
        flash = virt_flash(b"", self.plan.flash[0]) if self.plan.flash is not None else ()
        self.roms = RomBanks(uc, flash)
        self._load(image)
        self._reset(self.board.el)

        self.tlb = TlbModel()
        self.mmu = MmuUnit(uc, self.tlb, self.index_now)
        self.mmu.rom_holds = self.roms.holds
        self.events: list[Event] = []
        self.windows: list[TransitionWindow] = []
        self.observers: list[MachineObserver] = []
        # Tried in order on every exception Unicorn reports (HVC, SMC, SVC,
        # undefined instruction, ...); one that returns True has dealt with it
        # and the guest continues, otherwise the run stops.
        self.interrupt_handlers: list[InterruptHandler] = []
        # Observers of every instruction, in the order they asked; while there
        # is any, one UC_HOOK_CODE calls them (see watch_instructions).
        self._watchers: list[InstructionObserver] = []
        self._instruction_hook: int | None = None
        # Recorders of executed instructions, in batches; while there is any,
        # the native trace log's code hook is installed (see record_instructions).
        self._recorders: list[InstructionRecorder] = []
        # The same for data accesses (one UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE).
        self._memory_watchers: list[MemoryObserver] = []
        self._memory_hook: int | None = None
        self._flush_pending = False
        self._stop: Stop | None = None
        self._running = False
        # Whether something asked emulation to stop (pause) since the last start:
        # a return from emu_start that nobody asked for is a WFI.
        self._paused = False
        self._at_exit = False  # the last emulation stopped in front of an exit
        self._pause_pc: int | None = None  # where the first pause of a stretch was asked

        # Debugging (emu.machine.debugging): where runs stop besides their targets.
        self._breakpoints: set[Breakpoint] = set()
        self._watchpoints: set[Watchpoint] = set()
        self._watch_hook: int | None = None
        self._watch_installed: frozenset[tuple[Watchpoint, int]] = frozenset()
        self._watch_pa: dict[Watchpoint, int] = {}  # where each one is watched (PA)
        # The access that hit a watchpoint in this stretch: the hit, the CPU
        # context before it, and a store's PA and old bytes (to undo it).
        self._watch_hit: tuple[WatchHit, object, int | None, bytes | None] | None = None
        # Where the last run stopped (instruction count): a run starting there
        # goes past a breakpoint or watchpoint it stopped in front of.
        self._last_stop_index: int | None = None
        self._interrupted = False  # set by interrupt(), from any thread

        self._counter = BlockCounter()
        self._trace_log = TraceLog(self._counter)
        self._probes = Probes(self)
        self._windows = WindowTracker(self)
        self._maintenance = MaintenanceTracker(self)
        self._last_barrier: Barrier | None = None
        self._delivery = ExceptionDelivery(self)
        self._install_hooks()
        self.devices = attach_devices(self, self.plan, self.board.el, self.console,
                                      self.mmu.read_sysreg)
        # System registers answered by a board device instead of the CPU model,
        # by encoding (the MRS hook's key) and by name.
        self._sysreg_devices: dict[tuple[int, int, int, int, int], tuple[str, SysregDevice]] = {}
        for encoding, name in SYSREGS.items():
            for device in self.devices.sysreg_devices:
                if device.handles(name):
                    self._sysreg_devices[encoding] = (name, device)
                    break
        self.interrupts = InterruptDelivery(self, self.devices.timer, self.devices.gic)

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
        # No exit addresses at all: Unicorn translates (and so fetches through
        # the MMU model) the page of each exit address, at start and again when a
        # run is stopped; after an MMU change in the run that fetch may fault and
        # end the run with an abort the guest never caused.  Stops are code hooks.
        uc.ctl_exits_enabled(True)
        uc.ctl_set_exits([])
        self._probes.install(uc, self._counter)
        self.mmu.before_fill = self.drain_logs
        uc.hook_add(UC_HOOK_INSN, self._on_mrs, None, 1, 0, a64.UC_ARM64_INS_MRS)
        self._counter.install(uc)

    # -- observation ---------------------------------------------------------

    @property
    def pc(self) -> int:
        return self.uc.reg_read(a64.UC_ARM64_REG_PC)

    @property
    def el(self) -> int:
        return self.mmu.current_el()

    def reg(self, name: str) -> int:
        """A register by name, as the guest would read it: ``x19``, ``sp``,
        ``pc``, ``pstate`` (alias ``cpsr``), ``nzcv``, ``CurrentEL`` (the EL in
        bits [3:2]) or a system register (``TTBR0_EL2``; a board device's, such
        as the timer's, from the device).  :class:`ValueError` for an unknown name.
        """
        key = name.upper()
        if key == "CURRENTEL":
            return self.el << 2
        if key == "CPSR":
            key = "PSTATE"
        attribute = f"UC_ARM64_REG_{key}"
        if hasattr(a64, attribute):
            return self.uc.reg_read(getattr(a64, attribute))
        try:
            return self.read_sysreg(key)
        except ValueError:
            raise ValueError(f"no register named {name!r}") from None

    def register_reader(self, names: Sequence[str]) -> Callable[[], tuple[int, ...]]:
        """A function reading the registers ``names`` (those of :meth:`reg`) in
        one call to Unicorn where it can: for a reader of many registers after
        every instruction (a Tarmac trace).  Names resolved once, here."""
        keys = ["PSTATE" if name.upper() == "CPSR" else name.upper() for name in names]
        if not all(hasattr(a64, f"UC_ARM64_REG_{key}") for key in keys):
            return lambda: tuple(self.reg(name) for name in names)
        # uc_reg_read_batch straight from the library: the binding's wrapper
        # works out each register's class in Python, ~100 us for 33 of them.
        count = len(keys)
        ids = (ctypes.c_int * count)(*(getattr(a64, f"UC_ARM64_REG_{key}") for key in keys))
        values = (ctypes.c_uint64 * count)()
        pointers = (ctypes.c_void_p * count)(
            *(ctypes.addressof(values) + 8 * n for n in range(count)))
        read_batch = uclib().uc_reg_read_batch
        read_batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        handle = self.uc._uch

        def read() -> tuple[int, ...]:
            status = read_batch(handle, ids, pointers, count)
            if status:
                raise UcError(status)
            return tuple(values[:])  # a slice is made in C; iterating calls Python

        return read

    def write_reg(self, name: str, value: int) -> None:
        """Set a register by name (the names of :meth:`reg` but ``CurrentEL``)."""
        key = "PSTATE" if name.upper() == "CPSR" else name.upper()
        attribute = f"UC_ARM64_REG_{key}"
        if hasattr(a64, attribute):
            self.uc.reg_write(getattr(a64, attribute), value)
            return
        try:
            self.uc.reg_write(a64.UC_ARM64_REG_CP_REG, cp_reg(key) + (value,))
        except ValueError:
            raise ValueError(f"no register named {name!r}") from None
        self.mmu.forget_registers()  # it may be one that shapes translation

    def read_sysreg(self, name: str) -> int:
        """A system register by its architectural name (``VBAR_EL2``), as the guest
        reads it (a board device's registers from the device)."""
        for device in self.devices.sysreg_devices:
            if device.handles(name):
                return device.read(name)
        return self.mmu.read_sysreg(name)

    def sysreg_device(self, op0: int, op1: int, crn: int, crm: int,
                      op2: int) -> tuple[str, SysregDevice] | None:
        """The board device answering the system register with this encoding, if any."""
        return self._sysreg_devices.get((op0, op1, crn, crm, op2))

    def _on_mrs(self, uc: Uc, reg: int, cp, _user_data) -> bool:
        """MRS of a register a board device answers: the device's value, and the
        instruction is skipped.  (An MRS that no device answers costs one call.)"""
        answer = self._sysreg_devices.get((cp.op0, cp.op1, cp.crn, cp.crm, cp.op2))
        if answer is None:
            return False
        name, device = answer
        uc.reg_write(reg, device.read(name))
        return True

    def sysreg_written(self) -> None:
        """A board device's register was written (e.g. a timer armed): pause, so
        the run loop takes the new interrupt deadline."""
        self.pause()

    def read_physical(self, pa: int, size: int) -> bytes | None:
        """``size`` bytes of physical memory (None where there is none)."""
        try:
            return bytes(self.uc.mem_read(pa, size))
        except UcError:
            return None

    def map_mmio(self, base: int, size: int, read: MmioRead, write: MmioWrite,
                 what: str) -> None:
        """Hand physical ``[base, base + size)`` to a device's accessors;
        :class:`~emu.image.boot_image.ImageError` if it cannot go there."""
        try:
            self.uc.mmio_map(base, size, _mmio_read, read, _mmio_write, write)
        except UcError as err:
            raise ImageError(f"cannot map {what} at {base:#x}: {err}") from None

    def index_at(self, pc: int) -> int:
        """Instructions executed before the one at ``pc`` (exact, from the block counter)."""
        return self._counter.index_at(pc)

    def index_now(self) -> int:
        return self.index_at(self.pc)

    @property
    def executed(self) -> int:
        return self.index_now()

    def symbolize(self, va: int, pa: int | None = None) -> str:
        return self.image.symbolize(va, pa)

    def translate(self, va: int, regime: TranslationRegime | None = None) -> Translation | Fault:
        """Walk VA in a regime (the current one by default) over the machine's memory."""
        return self.mmu.translate(va, regime=regime)

    def fetch_pa(self, va: int) -> int | None:
        """Where an instruction fetch from VA goes now (None: it faults)."""
        return self.mmu.fetch_pa(va)

    # -- debugging: memory, breakpoints, watchpoints, stepping -----------------

    def data_pa(self, va: int, write: bool = False) -> int | None:
        """Where a load (a store with ``write``) of VA would go now: through the
        architectural TLB entry that covers it (stale or not, as the CPU may use
        it), else through the tables; None when it faults."""
        regime = self.mmu.regime()
        if regime.mmu_enabled:
            entry = self.tlb.lookup(regime.name.value, va, regime_asid(regime))
            needed = UC_PROT_WRITE if write else UC_PROT_READ
            if entry is not None and entry.perms & needed:
                return entry.pa_page | (va & ~PAGE_MASK)
        result = self.mmu.translate(va, Access.WRITE if write else Access.READ)
        return result.pa if isinstance(result, Translation) else None

    def read_memory(self, address: int, size: int, *, physical: bool = False) -> bytes:
        """``size`` bytes at a VA as the CPU would load them now, or at a PA;
        :class:`MemoryAccessError` naming the first address that cannot be read."""
        out = bytearray()
        while len(out) < size:
            here = address + len(out)
            chunk = min(size - len(out), 0x1000 - (here & 0xFFF))
            pa = here if physical else self.data_pa(here)
            data = self.read_physical(pa, chunk) if pa is not None else None
            if data is None:
                raise MemoryAccessError(here, "translation fault" if pa is None else
                                        f"no memory at PA {pa:#x}")
            out += data
        return bytes(out)

    def write_memory(self, address: int, data: bytes, *, physical: bool = False) -> None:
        """Write bytes at a VA (through the current translation, as a store) or a PA."""
        done = 0
        while done < len(data):
            here = address + done
            chunk = min(len(data) - done, 0x1000 - (here & 0xFFF))
            pa = here if physical else self.data_pa(here, write=True)
            if pa is None:
                raise MemoryAccessError(here, "translation fault")
            try:
                self.uc.mem_write(pa, data[done:done + chunk])
            except UcError:
                raise MemoryAccessError(here, f"no memory at PA {pa:#x}") from None
            # Code translated from there, and walks through a table there, are stale.
            self.mmu.forget_walks_through(pa)
            done += chunk
        self.uc.ctl_flush_tb()

    @property
    def breakpoints(self) -> tuple[Breakpoint, ...]:
        return tuple(sorted(self._breakpoints, key=lambda b: (b.physical, b.address)))

    def add_breakpoint(self, address: int, *, physical: bool = False) -> Breakpoint:
        """Stop every later run in front of the instruction at a VA (or a PA):
        see :mod:`emu.machine.debugging` for the aliases it also watches."""
        breakpoint = Breakpoint(address, physical)
        self._breakpoints.add(breakpoint)
        return breakpoint

    def remove_breakpoint(self, breakpoint: Breakpoint) -> None:
        self._breakpoints.discard(breakpoint)

    def _breakpoint_hooks(self) -> dict[int, set[int] | None]:
        """Code-hook address -> the PAs it must be fetched from to stop (None: any)."""
        hooks: dict[int, set[int] | None] = {}
        image = self.image
        for bp in self._breakpoints:
            if bp.physical:
                aliases = {bp.address}
                if image.in_image(bp.address, physical=True):
                    aliases.add(image.link(bp.address))
                for va in aliases:
                    wanted = hooks.setdefault(va, set())
                    if wanted is not None:
                        wanted.add(bp.address)
            else:
                hooks[bp.address] = None
                if image.in_image(bp.address, physical=False):
                    # The same instruction at its physical alias (MMU off, identity map).
                    hooks[image.physical(bp.address)] = None
        return hooks

    @property
    def watchpoints(self) -> tuple[Watchpoint, ...]:
        return tuple(sorted(self._watchpoints, key=lambda w: (w.address, w.length)))

    def add_watchpoint(self, address: int, length: int = 8,
                       kind: WatchKind = WatchKind.WRITE, *, physical: bool = False) -> Watchpoint:
        """Stop every later run before an access of ``kind`` to [address,
        address + length): VAs, or PAs with ``physical``."""
        if length <= 0:
            raise ValueError("a watchpoint covers at least one byte")
        watchpoint = Watchpoint(address, length, WatchKind(kind), physical)
        self._watchpoints.add(watchpoint)
        return watchpoint

    def remove_watchpoint(self, watchpoint: Watchpoint) -> None:
        self._watchpoints.discard(watchpoint)

    def _watch_starts(self) -> dict[Watchpoint, int]:
        """Where each watchpoint's bytes are now, as a PA: Unicorn's memory hooks
        report physical addresses (and their ranges are physical), so a VA
        watchpoint is watched where the current translation puts it.  Worked out
        again at every stop; every change of translation (a TTBR, SCTLR or TCR
        write, a TLBI, a table store) stops the run."""
        starts: dict[Watchpoint, int] = {}
        for watchpoint in self._watchpoints:
            pa = watchpoint.address if watchpoint.physical else self.data_pa(watchpoint.address)
            if pa is not None:
                starts[watchpoint] = pa
        return starts

    def _on_watched(self, uc: Uc, access: int, address: int, size: int, value: int,
                    _user_data) -> None:
        """UC_HOOK_MEM_READ/WRITE over the watched PAs (``address`` is the PA
        accessed): note a hit, with what undoes the access, and stop (see
        :mod:`emu.machine.debugging`)."""
        if self._watch_hit is not None:
            return
        write = access == UC_MEM_WRITE
        hit_at = None
        for watchpoint in self.watchpoints:
            start = self._watch_pa.get(watchpoint)
            if (start is not None and watchpoint.kind.covers(write)
                    and address < start + watchpoint.length and start < address + size):
                hit_at = (watchpoint, start)
                break
        if hit_at is None:
            return
        watchpoint, start = hit_at
        pc = self.pc
        index = self.index_at(pc)
        if index == self._last_stop_index:
            return  # the access the last run stopped in front of: let it happen
        if not watchpoint.physical:
            # Another VA of the same PA (an identity alias) is not the watched
            # VA: Arm's watchpoints compare virtual addresses.
            va = self._access_va(address)
            if va is not None and not watchpoint.overlaps(va, size):
                return
        old = self.read_physical(address, size) if write else None
        # In the watchpoint's own address space: its VA, or the PA.
        accessed = watchpoint.address + (address - start)
        hit = WatchHit(watchpoint, pc, index, accessed, size, write,
                       value & ((1 << (8 * size)) - 1) if write else None)
        self._watch_hit = (hit, uc.context_save(), address if write else None, old)
        uc.emu_stop()

    def _access_va(self, pa: int) -> int | None:
        """The VA of the access the load or store at the PC makes to ``pa``:
        Unicorn's memory hooks report physical addresses.  The instruction's
        memory operand (from the registers before it) gives the VA of its first
        byte; an access to a later element (a pair's second register) is a few
        bytes on, with the same offset in the page as its PA.  None if the
        operand cannot be worked out."""
        pc = self.pc
        code = self.mmu.executed_pa(pc)
        word = self.read_physical(code, 4) if code is not None else None
        va = memory_operand_address(word, pc, self.uc) if word is not None else None
        if va is None:
            return None
        delta = (pa - va) & 0xFFF
        return va + delta if delta < 64 else None

    def _stop_at_watch(self) -> Stop:
        """Undo the access that hit a watchpoint and stop in front of it."""
        assert self._watch_hit is not None
        hit, context, pa, old = self._watch_hit
        self._watch_hit = None
        self.uc.context_restore(context)  # type: ignore[arg-type]
        if pa is not None and old is not None:
            self.uc.mem_write(pa, old)
        self._pause_pc = None
        self._counter.set(hit.index, hit.pc)
        what = (f"write of {hit.value:#x} ({hit.size} bytes)" if hit.write
                else f"read of {hit.size} bytes")
        return Stop(StopKind.WATCHPOINT, hit.pc, hit.index,
                    f"watchpoint: {what} at {hit.address:#x} by the instruction at "
                    f"{hit.pc:#x} ({self.symbolize(hit.pc)}), stopped before it",
                    detail=(f"{hit.watchpoint.kind.value} {hit.watchpoint.address:#x}"
                            f"+{hit.watchpoint.length}",))

    def interrupt(self) -> None:
        """Make the current (or next) run return soon with an ``INTERRUPTED``
        stop; safe from another thread (a debugger's Ctrl-C).  The stop comes
        between translation blocks, where Unicorn leaves no instruction half done."""
        self._interrupted = True
        self._counter.stop_soon()

    def _interrupted_stop(self) -> Stop:
        self._interrupted = False
        pc = self.pc
        return self._finish(Stop(StopKind.INTERRUPTED, pc, self.index_now(),
                                 f"interrupted at {pc:#x} "
                                 f"({self.symbolize(pc, self.mmu.executed_pa(pc))})"))

    def step(self, count: int = 1) -> Stop:
        """Execute ``count`` instructions (fewer if a breakpoint, watchpoint or
        stop comes first) and stop; the stop says which."""
        if count <= 0:
            raise ValueError("step at least one instruction")
        start = self.index_now()
        stop = self.run(max_insns=start + count)
        if stop.kind is StopKind.BUDGET:
            done = stop.index - start
            return Stop(StopKind.STEPPED, stop.pc, stop.index,
                        f"stepped {done} instruction{'s' if done != 1 else ''} to {stop.pc:#x} "
                        f"({self.symbolize(stop.pc, self.mmu.executed_pa(stop.pc))})")
        return stop

    # -- what the machine's parts report ---------------------------------------

    def emit(self, event: Event) -> None:
        """Record an event and hand it to every observer, then to the window tracker.

        Table stores executed before the event's instruction are reported first:
        the timeline stays in instruction order.
        """
        self._probes.drain_cache_log()
        self._probes.settle_before(event.index)
        # The instructions up to the event's, so that recorders see the event
        # right after its instruction (the rest stay logged, in order).
        self._drain_instructions(event.index)
        self.events.append(event)
        for observer in self.observers:
            observer.on_event(event)
        self._windows.on_event(event)
        self._maintenance.on_event(event)

    def barrier_at(self, index: int, address: int) -> Barrier | None:
        """The barrier (DSB, DMB, ISB) or ERET about to execute at ``address``, the
        ``index``-th instruction, emitted once however many watchers see it; None
        when the instruction is none of those."""
        last = self._last_barrier
        if last is not None and last.index == index and last.pc == address:
            return last
        pa = self.mmu.executed_pa(address)
        data = self.read_physical(pa, 4) if pa is not None else None
        if data is None:
            return None
        operation = barrier_name(int.from_bytes(data, "little"))
        if operation is None:
            return None
        barrier = Barrier(index, address, pa, self.el, operation)
        self._last_barrier = barrier
        self.emit(barrier)
        return barrier

    def publish_window(self, window: TransitionWindow) -> None:
        """Record a closed MMU-transition window and hand it to every observer."""
        self.windows.append(window)
        for observer in self.observers:
            observer.on_window_closed(window)

    def watch_instructions(self, observer: InstructionObserver) -> None:
        """Call ``observer.on_instruction`` before every instruction from now on.

        While any observer watches, the machine has one UC_HOOK_CODE installed,
        and none otherwise: that per-instruction Python call is the most
        expensive thing the machine can do.  Hooks change only between
        stretches of emulation, so during a run emulation pauses for the change.
        """
        if all(watcher is not observer for watcher in self._watchers):
            self._watchers.append(observer)
            self.pause()

    def unwatch_instructions(self, observer: InstructionObserver) -> None:
        """Stop calling ``observer`` before each instruction (see :meth:`watch_instructions`)."""
        if any(watcher is observer for watcher in self._watchers):
            self._watchers = [watcher for watcher in self._watchers if watcher is not observer]
            self.pause()

    def record_instructions(self, recorder: InstructionRecorder) -> None:
        """Hand every executed instruction to ``recorder`` from now on, in
        batches (:class:`~emu.machine.tracelog.InstructionBatch`: index and VA of
        each, in order, and the exception level they ran at), without a Python
        call per instruction.

        A native code hook logs each instruction once (also when emulation
        stops in front of it and starts there again).  The log is handed over
        whenever the machine's event stream must be complete: before each
        event reaches an observer, the instructions up to the event's (so an
        observer sees each event right after its instruction's batch); before
        a TLB fill; at every stop; and when the log is full.  The hook is
        installed between stretches of emulation, like
        :meth:`watch_instructions`'s, and costs a native call per instruction.
        """
        if all(known is not recorder for known in self._recorders):
            self._recorders.append(recorder)
            self._trace_log.enable()  # if stop_recording disabled it, still installed
            self.pause()

    def stop_recording(self, recorder: InstructionRecorder) -> None:
        """Hand ``recorder`` what was logged so far, then nothing more."""
        if any(known is recorder for known in self._recorders):
            self.drain_logs()
            self._recorders = [known for known in self._recorders if known is not recorder]
            if not self._recorders:
                self._trace_log.disable()  # the hook itself goes at the next stop
            self.pause()

    def drain_logs(self) -> None:
        """Hand over everything logged natively, in order: the cache
        maintenance (as events), then the executed instructions."""
        self._probes.drain_cache_log()
        self._drain_instructions()

    def _drain_instructions(self, upto: int | None = None) -> None:
        """Hand the logged instructions (those up to index ``upto``) to the recorders."""
        batch = self._trace_log.take(upto)
        if batch is None:
            return
        for recorder in tuple(self._recorders):
            recorder(batch)

    def watch_memory(self, observer: MemoryObserver) -> None:
        """Call ``observer.on_memory`` before every load and store from now on
        (a Python call per access: only for short stretches, like
        :meth:`watch_instructions`)."""
        if all(watcher is not observer for watcher in self._memory_watchers):
            self._memory_watchers.append(observer)
            self.pause()

    def unwatch_memory(self, observer: MemoryObserver) -> None:
        """Stop calling ``observer`` for each data access.

        No pause: this is called from inside an access, where a stop would
        leave a load half done (see :meth:`pause`).  The hook, calling no one
        now, is removed at the next stop.
        """
        self._memory_watchers = [w for w in self._memory_watchers if w is not observer]

    def _on_memory(self, _uc: Uc, access: int, address: int, _size: int, _value: int,
                   _user_data) -> None:
        kind = Access.WRITE if access == UC_MEM_WRITE else Access.READ
        # Unicorn reports the PA; observers are promised the VA.
        va = self._access_va(address)
        for observer in tuple(self._memory_watchers):
            observer.on_memory(kind, address if va is None else va)

    def _on_window_insn(self, _uc: Uc, address: int, _size: int, _user_data) -> None:
        """The per-instruction hook (UC_HOOK_CODE), installed only while some
        observer watches instructions: when checking, only the window tracker,
        around MMU-transition windows."""
        self._probes.drain_cache_log()  # the last instruction's event, if it was IC or DC
        index = self.index_at(address)
        for observer in tuple(self._watchers):
            observer.on_instruction(index, address)

    def schedule_flush(self) -> None:
        """Flush Unicorn's softmmu TLB and the regime snapshots at the next stop."""
        self._flush_pending = True

    def pause(self) -> None:
        """During a run, stop emulation before the next instruction so the run
        loop applies what is pending (TLB flush, hooks); the run then goes on.

        Only from a code hook, an MSR/SYS hook, or a store's TLB fill.  Asked
        from inside a load (its fill or a memory hook), Unicorn 2.1.4 writes
        the loaded register and then resumes at the load: ``ldr x2, [x2]`` would
        run again from its own result (tests/test_fill_restart.py).  A store
        stopped that way has written memory but not its base register, and
        runs again with the same effect.
        """
        if self._running:
            if not self._paused:
                self._pause_pc = self.pc  # see _resync_counter
            self._paused = True
            self.uc.emu_stop()

    # -- running -------------------------------------------------------------

    def _apply_pending(self) -> None:
        uc = self.uc
        self.drain_logs()
        self._probes.settle()
        if self.roms.apply():
            self._flush_pending = True  # the softmmu TLB still points at the MMIO bank
        if self._flush_pending:
            self._flush_pending = False
            self.mmu.forget_registers()
            uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        trace_log = self._trace_log
        if self._recorders and not trace_log.installed:
            if self._instruction_hook is not None:
                # The native hook must log an instruction before any Python
                # watcher sees it (a barrier it reports then annotates the
                # instruction's line): hooks run in the order they were added.
                uc.hook_del(self._instruction_hook)
                self._instruction_hook = None
            trace_log.install(uc, self.el, self.drain_logs)
            uc.ctl_flush_tb()  # blocks translated before now lack the hook call
        elif not self._recorders and trace_log.installed:
            trace_log.remove(uc)
            uc.ctl_flush_tb()
        if self._watchers and self._instruction_hook is None:
            self._instruction_hook = uc.hook_add(UC_HOOK_CODE, self._on_window_insn)
            uc.ctl_flush_tb()  # blocks translated before now lack the hook call
        elif not self._watchers and self._instruction_hook is not None:
            uc.hook_del(self._instruction_hook)
            self._instruction_hook = None
            uc.ctl_flush_tb()
        starts = self._watch_starts() if self._watchpoints else {}
        watched = frozenset((w, pa) for w, pa in starts.items())
        if watched != self._watch_installed:
            if self._watch_hook is not None:
                uc.hook_del(self._watch_hook)
                self._watch_hook = None
            if starts:
                low = min(starts.values())
                high = max(pa + w.length for w, pa in starts.items()) - 1
                self._watch_hook = uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE,
                                               self._on_watched, None, low, high)
            self._watch_installed = watched
            uc.ctl_flush_tb()  # translated code calls memory hooks only if they existed then
        self._watch_pa = starts
        if self._memory_watchers and self._memory_hook is None:
            self._memory_hook = uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._on_memory)
            uc.ctl_flush_tb()  # translated code calls memory hooks only if they existed then
        elif not self._memory_watchers and self._memory_hook is not None:
            uc.hook_del(self._memory_hook)
            self._memory_hook = None
            uc.ctl_flush_tb()

    def _resync_counter(self) -> None:
        """Make the counter's total exact at the current PC after any kind of stop.

        A pause asked from a code hook, or from an instruction that ends its
        translation block (MSR) or restarts (a store's fill), stops at that
        instruction or the next.  One asked from inside DC ZVA (its SYS hook, or
        the fill that probes its block) lets Unicorn 2.1.4 run the rest of the
        block first, or stop right after it.  When that block branched back
        into its own middle (even to the DC ZVA: it never restarts), the PC
        alone would count the instructions it ran again as not run yet.  (A
        branch back to its first instruction enters the block again, and the
        count is right.)
        """
        pc = self.pc
        index = self.index_at(pc)
        asked = self._pause_pc
        if (asked is not None and self._counter.past_block_start(pc)
                and (pc not in (asked, asked + 4) or pc == asked and self._is_dc_zva(asked))):
            index = self._counter.entered
        self._pause_pc = None
        self._counter.set(index, pc)

    def _is_dc_zva(self, va: int) -> bool:
        pa = self.mmu.executed_pa(va)
        data = self.read_physical(pa, 4) if pa is not None else None
        return data is not None and int.from_bytes(data, "little") & ~_RT_MASK == _DC_ZVA

    def request_stop(self, stop: Stop) -> None:
        """End the current run with ``stop``.

        Called from a hook; the run returns ``stop`` as soon as Unicorn stops.
        """
        self._stop = stop
        self.uc.emu_stop()

    def request_exit(self, pc: int, index: int, status: int, message: str) -> None:
        """End the current run: the program exited (e.g. through semihosting)."""
        self.request_stop(Stop(StopKind.EXIT, pc, index, message, status=status))

    def request_power(self, what: str, pc: int, index: int, message: str) -> None:
        """End the current run: the guest asked its firmware to power off or reset."""
        self.request_stop(Stop(StopKind(what), pc, index, message))

    def take_exception(self, taken: TakenException) -> None:
        """Write the registers an exception entry writes, then jump to the vector."""
        self._delivery.take_exception(taken)

    def run(self, until: Iterable[int | str] | int | str = (),
            max_insns: int = DEFAULT_MAX_INSNS) -> Stop:
        """Run until PC is one of ``until``, a breakpoint or watchpoint, the
        total budget is spent, or the guest stops.

        ``until`` is an address, a place (``"switch_ttbr"``, ``"head+0x14"``:
        a symbol at its link address and its physical alias), ``"#N"`` (once N
        instructions have executed), or a list of them.  ``max_insns`` counts
        from the machine's reset, so repeated runs share one budget.  A run
        that starts where the last one stopped goes past that place first (as
        a debugger's continue does).
        """
        exits, counts = self._resolve_until(until)
        if counts and min(counts) <= max_insns:
            count = min(counts)
            stop = self._run(exits, count)
            if stop.kind is StopKind.BUDGET and stop.index == count:
                pc = stop.pc
                stop = Stop(StopKind.ARRIVED, pc, count, f"arrived at #{count}, {pc:#x} "
                            f"({self.symbolize(pc, self.mmu.executed_pa(pc))})")
            return stop
        return self._run(exits, max_insns)

    def _resolve_until(self, until: Iterable[int | str] | int | str) -> tuple[list[int], list[int]]:
        """(addresses, instruction counts) of a run's ``until``."""
        # The targets module builds on the machine; it names places for both.
        from emu.machine.targets import addresses_of, parse_target

        items = [until] if isinstance(until, int | str) else list(until)
        addresses: set[int] = set()
        counts: list[int] = []
        for item in items:
            if isinstance(item, int):
                addresses.add(item)
            elif item.strip().startswith("#"):
                target = parse_target(item)
                assert target.count is not None
                counts.append(target.count)
            else:
                addresses.update(addresses_of(self.image, item))
        return sorted(addresses), counts

    def _run(self, exits: list[int], max_insns: int) -> Stop:
        uc = self.uc
        # Stops are range-bounded code hooks: Unicorn emits their call only for
        # the instruction at that address.  (Its own exits are not used: before
        # running, uc_emu_start probes a fetch near each exit address, which
        # would reach the MMU model as a fetch the guest never made.)
        wanted: dict[int, set[int] | None] = dict.fromkeys(exits)
        for address, pas in self._breakpoint_hooks().items():
            if address in wanted and (wanted[address] is None or pas is None):
                wanted[address] = None
            elif address in wanted:
                wanted[address] = (wanted[address] or set()) | (pas or set())
            else:
                wanted[address] = pas
        stop_hooks = [uc.hook_add(UC_HOOK_CODE, self._on_exit, pas, address, address)
                      for address, pas in sorted(wanted.items())]
        counter = self._counter
        self._running = True
        try:
            while True:
                if self.pc & 3:
                    # A PC alignment fault (DDI 0487 D1.3.5): nothing at it can be
                    # fetched.  (Unicorn would not even start: an entry of 1 mod
                    # 0x400 is the end address _start gives it, a run of nothing.)
                    return self._finish(Stop(
                        StopKind.EXCEPTION, self.pc, self.index_now(),
                        f"PC alignment fault: the PC {self.pc:#x} is not a multiple of 4"))
                if self.index_now() >= max_insns:
                    return self._finish(Stop(StopKind.BUDGET, self.pc, self.index_now(),
                                             f"instruction budget of {max_insns} spent"))
                self._stop = None
                self._probes.unmapped = None
                self.mmu.first_fault = None
                self.mmu.refused_store = None
                self.interrupts.poll()
                counter.arm(max_insns)
                counter.set_deadline(self.interrupts.deadline())
                self._apply_pending()
                if self._interrupted:
                    return self._interrupted_stop()
                # A pause asked between stretches (settling events) is done with.
                self._paused = self._at_exit = False
                self._pause_pc = None
                error = self._start(self.pc)
                if counter.stopped_at_limit:
                    # The next block would overrun the budget: finish it exactly.
                    counter.disarm()
                    remaining = max_insns - self.index_now()
                    if remaining > 0 and error is None:
                        # count=0 would mean "no limit" to Unicorn, hence the guard;
                        # code translated before has no call to Unicorn's counter.
                        uc.ctl_flush_tb()
                        self._paused = self._at_exit = False
                        error = self._start(self.pc, count=remaining)
                        # Only a run of all ``remaining`` ends at the budget; a hook
                        # that stopped it earlier leaves the count where it is.
                        if (error is None and not self._flush_pending and self._stop is None
                                and not self._paused and not self._at_exit):
                            counter.set(max_insns, self.pc)
                if self._watch_hit is not None:
                    return self._finish(self._stop_at_watch())
                self._resync_counter()
                if self._stop is not None:  # the guest took an exception first
                    return self._finish(self._stop)
                if self._interrupted and error is None:
                    return self._interrupted_stop()
                refused = self.mmu.refused_store
                if error is not None and refused is not None and self.roms.to_device(refused):
                    # A store to flash in read-array mode, refused before it
                    # happened: a command for the device; run it again there.
                    self.schedule_flush()
                    continue
                if error is not None and self.roms.apply():
                    # Flash back in read-array mode but still MMIO (a fetch from
                    # it fails): map it as memory and run the instruction again.
                    self.schedule_flush()
                    continue
                if error is not None:
                    fill = self.mmu.first_fault
                    if error.errno == UC_ERR_EXCEPTION and fill is not None:
                        stop = self._delivery.take_abort(fill)
                        if stop is None:
                            continue  # delivered to the guest's vector: run on
                        return self._finish(stop)
                    return self._finish(self._error_stop(error))
                pc = self.pc
                # Only the exit hook arrives: a WFI that returns unasked with the
                # PC on an exit has not woken yet, and the interrupt that wakes
                # it is taken before the next instruction (DDI 0487 D1.16.2),
                # so the arrival comes when that instruction is reached.
                if self._at_exit:
                    return self._finish(Stop(StopKind.ARRIVED, pc, self.index_now(),
                                             f"arrived at {pc:#x} ({self.symbolize(pc)})"))
                # WFI returns from emu_start unasked; a pause that lands on a WFI
                # lets it complete at once, which the architecture allows (a WFI
                # may wake spuriously, DDI 0487 D1.16.2).
                if (not self._paused and not counter.stopped_at_deadline
                        and self.interrupts.after_wfi() is False):
                    return self._finish(Stop(
                        StopKind.IDLE, pc, self.index_now(),
                        f"the guest waits for an interrupt (WFI at {pc - 4:#x}, "
                        f"{self.symbolize(pc - 4)}) and none can come: "
                        f"{self.interrupts.idle_reason}"))
        finally:
            self._running = False
            for handle in stop_hooks:
                uc.hook_del(handle)
            self._apply_pending()

    def _on_exit(self, uc: Uc, address: int, _size: int, pas: set[int] | None) -> None:
        if self.index_at(address) == self._last_stop_index:
            return  # where the last run stopped: continuing goes past it
        if pas is not None and self.mmu.executed_pa(address) not in pas:
            return  # a physical breakpoint's alias, fetched from elsewhere now
        self._at_exit = True
        uc.emu_stop()

    def _start(self, pc: int, count: int = 0) -> UcError | None:
        # ``until`` is ignored (exits are enabled and the list is empty, see
        # _install_hooks); it is an odd address no PC can equal all the same.
        try:
            self.uc.emu_start(pc, (pc & ~0x3FF) | 1, 0, count)
        except UcError as err:
            return err
        finally:
            # The table stores that completed first: each becomes an event at
            # its store, which a recorder can still attach to the store's
            # instruction, since the instructions after it come after it.
            self._probes.drain_cache_log()
            self._probes.settle_before(self.index_now())
            self.drain_logs()
        return None

    def _finish(self, stop: Stop) -> Stop:
        self._windows.on_run_end()
        self._last_stop_index = stop.index
        return stop

    def _error_stop(self, err: UcError) -> Stop:
        pc = self.pc
        index = self.index_now()
        where = f"{pc:#x} ({self.symbolize(pc, self.mmu.fetch_pa(pc))})"
        unmapped = self._probes.unmapped_access(err.errno, pc)
        if unmapped is not None:
            kind, address = unmapped
            return Stop(StopKind.UNMAPPED, pc, index,
                        f"{kind} physical address {address:#x} where there is no memory, "
                        f"at {where}")
        if err.errno == UC_ERR_INSN_INVALID:
            return Stop(StopKind.EXCEPTION, pc, index, f"undefined instruction at {where}")
        if err.errno in (UC_ERR_FETCH_PROT, UC_ERR_READ_PROT, UC_ERR_WRITE_PROT):
            return Stop(StopKind.EXCEPTION, pc, index, f"permission fault at {where}")
        return Stop(StopKind.EXCEPTION, pc, index, f"emulation stopped at {where}: {err}")


def _mmio_read(_uc: Uc, offset: int, size: int, read: MmioRead) -> int:
    return read(offset, size)


def _mmio_write(_uc: Uc, offset: int, size: int, value: int, write: MmioWrite) -> None:
    write(offset, size, value)
