"""The probes that turn what the guest executes into typed events.

Unicorn calls them only for the instructions they are about - MSR, SYS
(TLBI, IC, DC, AT), exceptions, accesses to missing memory - and the MMU
glue calls them for stale TLB use and stores into live tables, so they cost
nothing on ordinary instructions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from unicorn import (
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_UNMAPPED,
    Uc,
)
from unicorn import arm64_const as a64

from emu.arch.mmu.regime import regime_for_el
from emu.arch.mmu.tlb import TlbEntry
from emu.arch.mmu.walk import Access, Fault, Translation
from emu.arch.sysregs import sys_op_name, sysreg_name
from emu.machine.events import (
    CacheMaintenance,
    DescriptorWrite,
    ExceptionTaken,
    MmuDisable,
    MmuEnable,
    StaleTranslationUse,
    SysRegWrite,
    TlbInvalidate,
    TtbrWrite,
)
from emu.machine.mmu import REGIME_FIELD_OF
from emu.machine.stop import Stop, StopKind

if TYPE_CHECKING:
    from emu.machine.machine import Machine

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


class Probes:
    """The event-producing hooks of one machine."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        # Stores into live table pages seen but not yet compared: (index, pc,
        # va of the store, 4 KiB page PA, the page's bytes before the store,
        # the live TLB entries walked through each descriptor of the page then).
        self._table_stores: list[tuple[int, int, int, int, bytes,
                                       dict[int, tuple[TlbEntry, ...]]]] = []
        # The last access to missing memory in this stretch of emulation: (kind, PA).
        self.unmapped: tuple[str, int] | None = None
        machine.mmu.on_stale = self._on_stale_use
        machine.mmu.on_table_store = self._on_table_store

    def install(self, uc: Uc) -> None:
        uc.hook_add(UC_HOOK_INSN, self._on_msr, None, 1, 0, a64.UC_ARM64_INS_MSR)
        uc.hook_add(UC_HOOK_INSN, self._on_sys, None, 1, 0, a64.UC_ARM64_INS_SYS)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)

    def settle(self) -> None:
        """Report what happened to the stores into live tables that have executed."""
        if self._table_stores:
            self._compare_table_stores()

    def unmapped_access(self, errno: int, pc: int) -> tuple[str, int] | None:
        """The access to missing memory behind a stop with Unicorn error ``errno``
        at ``pc``, as (kind, PA); None if the stop was not about missing memory."""
        if self.unmapped is not None:
            return self.unmapped
        if errno in _UNMAPPED_ERRORS:
            return _UNMAPPED_ERRORS[errno], pc
        return None

    def _on_msr(self, uc: Uc, _reg: int, cp, _user_data) -> bool:
        machine = self._machine
        name = sysreg_name(cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        if name not in EVENT_REGISTERS:
            return False
        pc = machine.pc
        index = machine.index_at(pc)
        el = machine.mmu.current_el()
        fetch_regime = machine.mmu.regime(regime_for_el(el))
        pa = machine.mmu.fetch_pa(pc, fetch_regime)
        old = machine.mmu.read_sysreg(name)
        new = cp.val
        slot = REGIME_FIELD_OF.get(name)
        if slot is None:
            machine.emit(SysRegWrite(index, pc, pa, el, name, old, new, fetch_regime,
                                     fetch_regime))
            return False
        regime_name, fieldname = slot
        before = machine.mmu.regime(regime_name)
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
        machine.mmu.remember(after)
        machine.emit(event)
        # Stop right after this instruction: the softmmu TLB must be flushed
        # (QEMU keeps it across TTBR writes) and the regime snapshot re-read.
        machine.schedule_flush()
        machine.pause()
        return False

    def _on_sys(self, uc: Uc, _reg: int, cp, _user_data) -> bool:
        machine = self._machine
        name = sys_op_name(cp.op1, cp.crn, cp.crm, cp.op2)
        pc = machine.pc
        index = machine.index_at(pc)
        el = machine.mmu.current_el()
        pa = machine.mmu.fetch_pa(pc)
        if name.startswith("TLBI"):
            if self._table_stores:
                self._compare_table_stores()  # report the stores before what they await
            machine.tlb.apply_tlbi(name, cp.val)
            machine.emit(TlbInvalidate(index, pc, pa, el, name, cp.val))
        elif name.startswith(("IC", "DC")):
            machine.emit(CacheMaintenance(index, pc, pa, el, name, cp.val))
        return False

    def _on_interrupt(self, uc: Uc, intno: int, _user_data) -> None:
        machine = self._machine
        for handler in machine.interrupt_handlers:
            if handler(machine, intno):
                return  # handled, e.g. firmware or semihosting: the guest runs on
        pc = machine.pc
        cause = _INTERRUPT_NAMES.get(intno, f"exception {intno}")
        esr = machine.mmu.read_sysreg("ESR_EL2" if machine.el >= 2 else "ESR_EL1")
        event = ExceptionTaken(machine.index_at(pc), pc, machine.mmu.fetch_pa(pc), machine.el,
                               f"{cause} (ESR {esr:#x})")
        machine.emit(event)
        machine.request_stop(Stop(StopKind.EXCEPTION, pc, event.index,
                                  f"exception taken at {pc:#x} "
                                  f"({machine.symbolize(pc, event.pa)}): {cause}"))

    def _on_unmapped(self, uc: Uc, access: int, address: int, _size, _value, _user_data) -> bool:
        self.unmapped = (_UNMAPPED_KINDS.get(access, "access to"), address)
        return False

    def _on_stale_use(self, entry: TlbEntry, fresh: Translation | Fault, va: int,
                      access: Access) -> None:
        machine = self._machine
        pc = machine.pc
        machine.emit(StaleTranslationUse(machine.index_at(pc), pc, machine.mmu.fetch_pa(pc),
                                         machine.el, va, access.value, entry, fresh))

    def _on_table_store(self, va: int, page: int) -> None:
        """A store is about to land in a page of live descriptors: keep the page's
        bytes, stop right after the instruction and compare (in :meth:`settle`)."""
        machine = self._machine
        pc = machine.pc
        index = machine.index_at(pc)
        if any(store[0] == index for store in self._table_stores):
            # Stopping from inside a fill abandons the instruction; the second
            # time round it must be let through, or it would never complete.
            return
        before = bytes(machine.uc.mem_read(page, 0x1000))
        live = machine.tlb.entries_by_descriptor(page)
        self._table_stores.append((index, pc, va, page, before, live))
        machine.schedule_flush()  # hand the page back read-only afterwards
        machine.pause()

    def _compare_table_stores(self) -> None:
        machine = self._machine
        now = machine.index_now()
        done = [store for store in self._table_stores if store[0] < now]
        # A store not executed yet (the stop came first) stays pending.
        self._table_stores = [store for store in self._table_stores if store[0] >= now]
        for index, pc, va, page, before, live in done:
            after = bytes(machine.uc.mem_read(page, 0x1000))
            for offset in range(0, 0x1000, 8):
                old = int.from_bytes(before[offset:offset + 8], "little")
                new = int.from_bytes(after[offset:offset + 8], "little")
                if old == new:
                    continue
                address = page + offset
                machine.emit(DescriptorWrite(index, pc, machine.mmu.fetch_pa(pc), machine.el,
                                             va, address, old, new, live.get(address, ())))
