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
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_UNMAPPED,
    UC_PROT_EXEC,
    Uc,
)
from unicorn import arm64_const as a64
from unicorn.unicorn_py3.arch.arm64 import CpReg

from emu.arch.exceptions import ESR_IL, TakenException, vector_offset
from emu.arch.mmu.regime import (
    RegimeName,
    TranslationRegime,
    regime_asid,
    regime_for_el,
    regime_translation_disabled,
)
from emu.arch.mmu.tlb import PAGE_MASK, TlbEntry
from emu.arch.mmu.walk import Access, Fault, Translation
from emu.arch.sysregs import sys_op_name, sysreg_name
from emu.machine.cachelog import CacheLog
from emu.machine.counter import BlockCounter
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
    by_virtual_address,
)
from emu.machine.mmu import REGIME_FIELD_OF, SOFTMMU_PAGE
from emu.machine.operands import memory_operand_address
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

_EXCP_UDEF = 1
# SVC, HVC and SMC: their exception class and the encoding of the instruction
# with imm16 cleared (DDI 0487 C6.2, "Exception generation").
_CALL_CLASSES = {2: 0x15, 11: 0x16, 13: 0x17}
_CALL_ENCODINGS = {2: 0xD4000001, 11: 0xD4000002, 13: 0xD4000003}



def exception_syndrome(ec: int, iss: int = 0) -> int:
    """ESR_ELx for exception class ``ec`` raised by a 32-bit instruction (IL = 1).

    An undefined instruction is EC 0x00 "Unknown reason" with ISS 0 (DDI 0487
    D24.2.46 ESR_EL2): 0x02000000.
    """
    return (ec << 26) | ESR_IL | (iss & 0x1FFFFFF)


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
        # The one-shot code hook that stops emulation right after a table store.
        self._after_store_hook: int | None = None
        machine.mmu.on_stale = self._on_stale_use
        machine.mmu.on_table_store = self._on_table_store
        machine.mmu.on_new_table_page = self._on_new_table_page

    def install(self, uc: Uc, counter: BlockCounter) -> None:
        uc.hook_add(UC_HOOK_INSN, self._on_msr, None, 1, 0, a64.UC_ARM64_INS_MSR)
        # IC and DC are logged natively and become events when the log is read
        # (drain_cache_log); only the other SYS operations call Python.
        self.cache_log = CacheLog(counter)
        self.cache_log.install(uc, self._on_sys, self.drain_cache_log)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)

    def settle(self) -> None:
        """Report what happened to the stores into table pages that have executed;
        for one about to execute (again), stop right after it.

        Each store is compared on its own, at the stop right behind it: two
        stores to one page are two changes, each blamed on its store, and the
        change takes its place in the timeline at the store's index.
        """
        uc = self._machine.uc
        if self._after_store_hook is not None:
            uc.hook_del(self._after_store_hook)
            self._after_store_hook = None
        if self._table_stores:
            self._compare_table_stores()
        if self._table_stores:
            # A store never branches: the next instruction is the one after it
            # (an exception instead leaves this hook unused until the next stop).
            after = self._table_stores[0][1] + 4
            self._after_store_hook = uc.hook_add(UC_HOOK_CODE, self._stop_after_store, None,
                                                  after, after)
            # Code translated before the hook existed has no call to it.
            uc.ctl_remove_cache(after, after + 4)

    def _stop_after_store(self, _uc: Uc, _address: int, _size: int, _user_data) -> None:
        self._machine.pause()

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
        device = machine.sysreg_device(cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        if device is not None:
            # A board device's register (the timer's): the device takes the
            # write, the CPU model never sees it.  (Unicorn calls only the first
            # MSR hook, so this one serves both.)
            register, owner = device
            owner.write(register, cp.val)
            machine.sysreg_written()
            return True
        name = sysreg_name(cp.op0, cp.op1, cp.crn, cp.crm, cp.op2)
        if name not in EVENT_REGISTERS:
            return False
        machine.drain_logs()  # with the regime they ran in, which this write changes
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
        if fieldname in ("ttbr0", "ttbr1", "tcr") or (fieldname == "sctlr" and new & 1):
            # The tables this regime now points at may be walked as soon as the
            # MMU is on: from here on, every store to them is seen.
            machine.mmu.learn_tables(after)
        machine.emit(event)
        # Stop right after this instruction: the softmmu TLB must be flushed
        # (QEMU keeps it across TTBR writes) and the regime snapshot re-read.
        machine.schedule_flush()
        machine.pause()
        return False

    def _on_sys(self, uc: Uc, _reg: int, cp: CpReg) -> bool:
        """A SYS operation other than IC and DC (those are logged natively)."""
        machine = self._machine
        machine.drain_logs()  # what ran before it, in order
        name = sys_op_name(cp.op1, cp.crn, cp.crm, cp.op2)
        pc = machine.pc
        index = machine.index_at(pc)
        el = machine.mmu.current_el()
        pa = machine.mmu.fetch_pa(pc)
        if name.startswith("TLBI"):
            if self._table_stores:
                self._compare_table_stores()  # report the stores before what they await
            dropped = machine.tlb.apply_tlbi(name, cp.val)
            machine.emit(TlbInvalidate(index, pc, pa, el, name, cp.val))
            if dropped:
                # Unicorn's softmmu TLB keeps what the model just dropped unless
                # flushed (a guest TLBI does not flush it): without this the
                # guest would go on using translations the TLBI removed.
                machine.schedule_flush()
                machine.pause()
        return False

    def drain_cache_log(self) -> None:
        """Turn the natively logged IC and DC instructions into events, in order.

        Called before anything else is emitted, before a TLB fill (which may
        add the entries their PAs are read from) and when emulation stops: so
        every event is emitted as it would have been from a hook on the
        instruction itself, with the machine's state of that moment.

        Boot code runs these in loops of tens of thousands (DC ZVA over BSS,
        DC CIVAC over tables), so nothing here walks tables.  The instruction's
        own PA comes from the TLB entry it was fetched through (a walk only if
        there is none); the PA of the address it maintains only from what is
        at hand: the MMU off, or an entry of the architectural TLB covering it.
        Nothing changes the TLB model between two fills, so within one batch
        both are looked up once per page.
        """
        if not self.cache_log.pending:
            return
        machine = self._machine
        mmu = machine.mmu
        code_pages: dict[tuple[int, int], int | None] = {}
        data_pages: dict[tuple[int, int], int | None] = {}
        for op in self.cache_log.take():
            regime = mmu.regime(regime_for_el(op.el))
            key = (op.el, op.pc & PAGE_MASK)
            if key not in code_pages:
                base = self._known_pa(key[1], regime, UC_PROT_EXEC)
                code_pages[key] = mmu.fetch_pa(key[1], regime) if base is None else base
            base = code_pages[key]
            pa = None if base is None else base | (op.pc & ~PAGE_MASK)
            data_pa = None
            if by_virtual_address(op.name):
                key = (op.el, op.operand & PAGE_MASK)
                if key not in data_pages:
                    data_pages[key] = self._known_pa(key[1], regime, 0)
                base = data_pages[key]
                data_pa = None if base is None else base | (op.operand & ~PAGE_MASK)
            machine.emit(CacheMaintenance(op.index, op.pc, pa, op.el, op.name, op.operand,
                                          data_pa))

    def _known_pa(self, va: int, regime: TranslationRegime, perms: int) -> int | None:
        """Where VA goes in ``regime`` when that is known without a walk: VA
        itself with translation off, else the PA of an architectural TLB entry
        covering VA (that allows ``perms``); None otherwise."""
        if regime_translation_disabled(regime):
            return self._machine.mmu.fetch_pa(va, regime)  # no tables: VA == PA
        entry = self._machine.tlb.lookup(regime.name.value, va, regime_asid(regime))
        if entry is None or entry.perms & perms != perms:
            return None
        return entry.pa_page | (va & ~PAGE_MASK)

    def _on_interrupt(self, uc: Uc, intno: int, _user_data) -> None:
        machine = self._machine
        for handler in machine.interrupt_handlers:
            if handler(machine, intno):
                return  # handled, e.g. firmware or semihosting: the guest runs on
        pc = machine.pc
        el = machine.el
        cause = _INTERRUPT_NAMES.get(intno, f"exception {intno}")
        # Unicorn does not write ESR for the exceptions it reports here (ESR
        # still holds the previous exception's syndrome): build this one's.
        esr = self._syndrome(intno, pc)
        index = machine.index_at(pc)
        if intno == _EXCP_UDEF and esr is not None:
            taken = self._undefined(pc, el, esr)
            if taken is not None:
                machine.take_exception(taken)
                machine.emit(ExceptionTaken(index, pc, machine.mmu.fetch_pa(pc), el,
                                            f"{cause} (ESR {esr:#x})", taken))
                machine.pause()
                return
        what = f"{cause} (ESR {esr:#x})" if esr is not None else cause
        event = ExceptionTaken(index, pc, machine.mmu.fetch_pa(pc), el, what)
        machine.emit(event)
        machine.request_stop(Stop(StopKind.EXCEPTION, pc, event.index,
                                  f"exception taken at {pc:#x} "
                                  f"({machine.symbolize(pc, event.pa)}): {what}"))

    def _word(self, va: int) -> int | None:
        pa = self._machine.mmu.fetch_pa(va)
        if pa is None:
            return None
        data = self._machine.read_physical(pa, 4)
        return int.from_bytes(data, "little") if data is not None else None

    def _syndrome(self, intno: int, pc: int) -> int | None:
        """ESR_ELx of the exception Unicorn reported as ``intno`` at ``pc``, or None
        when it is not one of the synchronous exceptions built here."""
        if intno == _EXCP_UDEF:
            return exception_syndrome(0x00)
        ec = _CALL_CLASSES.get(intno)
        if ec is None:
            return None
        # SVC/HVC/SMC report the preferred return address (the next instruction);
        # ISS holds the instruction's imm16 (bits [20:5]).
        for address in (pc - 4, pc):
            word = self._word(address)
            if word is not None and word & 0xFFE0001F == _CALL_ENCODINGS[intno]:
                return exception_syndrome(ec, (word >> 5) & 0xFFFF)
        return exception_syndrome(ec)

    def _undefined(self, pc: int, el: int, esr: int) -> TakenException | None:
        """The exception entry of an undefined instruction at ``pc``, taken to the
        current EL (EL1 from EL0), or None when there is no usable vector."""
        machine = self._machine
        to_el = max(1, el)
        vbar = machine.mmu.read_sysreg(f"VBAR_EL{to_el}")
        pstate = machine.uc.reg_read(a64.UC_ARM64_REG_PSTATE)
        vector = vbar + vector_offset(el, to_el, pstate)
        regime = machine.mmu.regime(regime_for_el(to_el))
        if vbar == 0 or machine.mmu.fetch_pa(vector, regime) is None:
            return None
        return TakenException("undefined instruction", el, to_el, esr, None, pc, pstate, vector)

    def _on_unmapped(self, uc: Uc, access: int, address: int, _size, _value, _user_data) -> bool:
        self.unmapped = (_UNMAPPED_KINDS.get(access, "access to"), address)
        return False

    def _on_stale_use(self, entry: TlbEntry, fresh: Translation | Fault, va: int,
                      access: Access) -> None:
        machine = self._machine
        pc = machine.pc
        address = self._accessed_address(va, access, pc)
        index = machine.index_at(pc)
        last = machine.events[-1] if machine.events else None
        if isinstance(last, StaleTranslationUse) and (last.index, last.va) == (index, address):
            return  # the same access filled again (re-executed after a stop)
        if address != va:
            # The walk the rule compares with is of the address itself.
            fresh = machine.mmu.translate(address, access)
        machine.emit(StaleTranslationUse(machine.index_at(pc), pc, machine.mmu.fetch_pa(pc),
                                         machine.el, address, access.value, entry, fresh,
                                         fill_va=va))

    def _accessed_address(self, va: int, access: Access, pc: int) -> int:
        """The exact VA of an access Unicorn reports by its 1 KiB page: the PC for
        a fetch, else the load or store's memory operand (when it lies in that page)."""
        page = va & ~(SOFTMMU_PAGE - 1)
        if access is Access.FETCH:
            return pc if pc & ~(SOFTMMU_PAGE - 1) == page else va
        word = self._word(pc)
        if word is None:
            return va
        address = memory_operand_address(word.to_bytes(4, "little"), pc, self._machine.uc)
        if address is not None and address & ~(SOFTMMU_PAGE - 1) == page:
            return address
        return va

    def _on_table_store(self, va: int, page: int) -> None:
        """A store is about to land in a page of live descriptors: keep the page's
        bytes, stop right after the instruction and compare (in :meth:`settle`)."""
        machine = self._machine
        pc = machine.pc
        index = machine.index_at(pc)
        if any(store[0] == index for store in self._table_stores):
            # Emulation stopped at this store from inside its fill; the second
            # time round it must be let through, or it would never complete.
            # The page is writable in Unicorn's TLB now: flush it again at the
            # stop right after the store, so the next store to it comes back.
            machine.schedule_flush()
            return
        before = bytes(machine.uc.mem_read(page, 0x1000))
        # Live: usable now, i.e. global or of the ASID current in its regime (R_XXNPZ).
        asids = {name.value: regime_asid(machine.mmu.regime(name))
                 for name in (RegimeName.EL2, RegimeName.EL10)}
        live = machine.tlb.entries_by_descriptor(page, asids)
        self._table_stores.append((index, pc, va, page, before, live))
        machine.schedule_flush()  # hand the page back read-only afterwards
        machine.pause()

    def _on_new_table_page(self, _page: int) -> None:
        """A page just became a table page: Unicorn may hold it writable, so flush
        its softmmu TLB before the next instruction (stores must come back)."""
        self._machine.schedule_flush()
        self._machine.pause()

    def settle_before(self, index: int) -> None:
        """Report the table stores executed before the ``index``-th instruction, so
        that an event there comes after them in the timeline."""
        if self._table_stores and self._table_stores[0][0] < index:
            self._compare_table_stores(index)

    def _compare_table_stores(self, now: int | None = None) -> None:
        machine = self._machine
        if now is None:
            now = machine.index_now()
        done = [store for store in self._table_stores if store[0] < now]
        # A store not executed yet (the stop came first) stays pending.
        self._table_stores = [store for store in self._table_stores if store[0] >= now]
        for index, pc, va, page, before, live in done:
            # Walks cached between the store's fill and the store read the old
            # descriptors.
            machine.mmu.forget_walks_through(page)
            after = bytes(machine.uc.mem_read(page, 0x1000))
            for offset in _changed_descriptors(before, after):
                old = int.from_bytes(before[offset:offset + 8], "little")
                new = int.from_bytes(after[offset:offset + 8], "little")
                address = page + offset
                machine.emit(DescriptorWrite(index, pc, machine.mmu.fetch_pa(pc), machine.el,
                                             va, address, old, new, live.get(address, ())))


def _changed_descriptors(before: bytes, after: bytes) -> list[int]:
    """Offsets of the 8-byte descriptors that differ between two copies of a
    page; compared 64 bytes at a time first (a store changes one or two)."""
    if before == after:
        return []
    return [offset
            for chunk in range(0, len(before), 64)
            if before[chunk:chunk + 64] != after[chunk:chunk + 64]
            for offset in range(chunk, chunk + 64, 8)
            if before[offset:offset + 8] != after[offset:offset + 8]]
