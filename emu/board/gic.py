"""QEMU virt's interrupt controller with ``gic-version=2,virtualization=on``: a
GICv2 with the Virtualization Extensions and a GICv2m MSI frame, for one CPU.

Arm's "Generic Interrupt Controller Architecture Specification, version 2.0"
(IHI 0048B, cited below as "GIC" with its section numbers) defines every
register here.  Where the architecture leaves a choice to the implementation
(how many interrupt lines, whether SGIs can be disabled, the identification
registers, ...), the model answers as QEMU 7.2's ``hw/intc/arm_gic.c`` does for
``-M virt,gic-version=2,virtualization=on`` with one CPU and without
``secure=on``, so a guest finds the same GIC it finds under QEMU.

The five regions, at QEMU virt's addresses (``hw/arm/virt.c`` ``base_memmap``):

* the Distributor, GICD (GIC 4.3): which interrupts exist, are enabled,
  pending, active, their priorities, groups and trigger modes;
* the CPU interface, GICC (GIC 4.4): acknowledge, priority mask, running
  priority, end of interrupt, deactivation;
* the GICv2m MSI frame (Arm SBSA, ARM-DEN-0029, "GICv2m"): a write of an SPI
  number to MSI_SETSPI_NS pulses that SPI;
* the virtual interface control registers, GICH (GIC 5.3): the hypervisor's
  list registers and status, held and computed as the spec says, but no
  virtual interrupt is ever delivered;
* the virtual CPU interface, GICV (GIC 5.4): reads as zero, ignores writes.

What is not modelled: the Security Extensions (QEMU virt has none without
``secure=on``, so GICD_TYPER.SecurityExtn is 0 and every access is the
"Secure" view of a GIC without them); more than one CPU interface; the
interrupt bypass bits of GICC_CTLR; the virtual CPU interface and the VIRQ /
VFIQ lines to the CPU.  Offsets where no register is read as zero and ignore
writes, in every region.  Where the model parts from QEMU: GICC_AIAR,
GICC_AEOIR and GICC_AHPPIR act as the spec's Group 1 aliases (QEMU reads them
as zero); there are exactly four list registers; SGI source bits of CPUs other
than CPU 0 are ignored.

The model is plain and deterministic: devices call :meth:`Gic.set_level`, the
machine asks :meth:`Gic.irq_line`.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.board.guest import Guest

# -- where everything is ------------------------------------------------------

# QEMU virt's memory map (hw/arm/virt.c, base_memmap: VIRT_GIC_DIST, _CPU,
# _V2M, _HYP, _VCPU).
GICD_BASE, GICD_SIZE = 0x0800_0000, 0x1_0000
GICC_BASE, GICC_SIZE = 0x0801_0000, 0x1_0000
GICV2M_BASE, GICV2M_SIZE = 0x0802_0000, 0x1000
GICH_BASE, GICH_SIZE = 0x0803_0000, 0x1_0000
GICV_BASE, GICV_SIZE = 0x0804_0000, 0x1_0000

# -- interrupt IDs (GIC ch. 2, "Interrupt IDs") ----------------------------------

SGI_COUNT = 16  # IDs 0-15: software generated, edge-triggered
PRIVATE_COUNT = 32  # IDs 0-31: SGIs and PPIs, private to the CPU
# QEMU virt: 256 SPIs after the 32 private IDs (virt.c sets num-irq to
# NUM_IRQS + 32 with NUM_IRQS = 256).
NUM_IRQS = 288
# Special IDs (GIC ch. 3, "Special interrupt numbers", and 3.4.2): "a Group 1
# interrupt is pending but GICC_CTLR.AckCtl forbids acknowledging it here", and
# "nothing to acknowledge".
ID_GROUP1_HIDDEN = 1022
ID_SPURIOUS = 1023
# QEMU virt wires the GIC maintenance interrupt to PPI 9 (ARCH_GIC_MAINT_IRQ),
# interrupt ID 16 + 9.
MAINTENANCE_PPI = 25

# -- distributor registers (GIC 4.1.2, Table 4-1) --------------------------------

GICD_CTLR, GICD_TYPER, GICD_IIDR = 0x000, 0x004, 0x008
GICD_IGROUPR = 0x080
GICD_ISENABLER, GICD_ICENABLER = 0x100, 0x180
GICD_ISPENDR, GICD_ICPENDR = 0x200, 0x280
GICD_ISACTIVER, GICD_ICACTIVER = 0x300, 0x380
GICD_IPRIORITYR = 0x400
GICD_ITARGETSR = 0x800
GICD_ICFGR = 0xC00
GICD_SGIR = 0xF00
GICD_CPENDSGIR, GICD_SPENDSGIR = 0xF10, 0xF20
GICD_ICPIDR2 = 0xFE8

# GICD_CTLR (GIC 4.3.1, GICv2 without Security Extensions): one enable per group.
CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1 = 1 << 0, 1 << 1
# GICD_TYPER (GIC 4.3.2): ITLinesNumber = lines / 32 - 1, CPUNumber = CPUs - 1
# (0: one), SecurityExtn (bit 10) = 0, LSPI = 0.
TYPER_VALUE = NUM_IRQS // 32 - 1
# GICD_IIDR (GIC 4.3.3) and GICC_IIDR (GIC 4.4.14): implementer Arm (JEP106
# 0x43B); QEMU puts the architecture version (2) in GICC_IIDR.ArchitectureVersion.
GICD_IIDR_VALUE = 0x0000_043B
GICC_IIDR_VALUE = 0x0002_043B
# Identification registers 0xFD0-0xFFC, one byte in the low bits of each word
# (GIC 4.3, "Identification registers"; values as QEMU's gic_id_gicv2).
# ICPIDR2 (0xFE8) = 0x2B: bits [7:4] are ArchRev = 2, which Linux and Xen read
# to tell a GICv2.
_GICD_ID = {0xFD0: 0x04, 0xFD4: 0x00, 0xFD8: 0x00, 0xFDC: 0x00,
            0xFE0: 0x90, 0xFE4: 0xB4, 0xFE8: 0x2B, 0xFEC: 0x00,
            0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}

# -- CPU interface registers (GIC 4.1.3, Table 4-2) ------------------------------

GICC_CTLR, GICC_PMR, GICC_BPR, GICC_IAR, GICC_EOIR = 0x00, 0x04, 0x08, 0x0C, 0x10
GICC_RPR, GICC_HPPIR, GICC_ABPR = 0x14, 0x18, 0x1C
GICC_AIAR, GICC_AEOIR, GICC_AHPPIR = 0x20, 0x24, 0x28
GICC_APR, GICC_NSAPR, GICC_IIDR = 0xD0, 0xE0, 0xFC
GICC_DIR = 0x1000

# GICC_CTLR (GIC 4.4.1, GICv2 without Security Extensions): EnableGrp0,
# EnableGrp1, AckCtl, FIQEn, CBPR, EOImode.  The bypass-disable bits [8:5] are
# not implemented (QEMU's GICC_CTLR_V2_MASK is 0x21F).
GICC_CTLR_ENABLE_GRP0, GICC_CTLR_ENABLE_GRP1 = 1 << 0, 1 << 1
GICC_CTLR_ACK_CTL, GICC_CTLR_FIQ_EN, GICC_CTLR_CBPR = 1 << 2, 1 << 3, 1 << 4
GICC_CTLR_EOI_MODE = 1 << 9
GICC_CTLR_MASK = 0x21F
# Idle running priority: "no active interrupt" (GIC 4.4.6: GICC_RPR reads 0xFF).
IDLE_PRIORITY = 0x100
# Binary points: GICC_BPR's minimum is 0 (group priority [7:1], 128 preemption
# levels, one bit each in GICC_APR0-3); GICC_ABPR's is one more (GIC ch. 3, "Priority grouping").
MIN_BPR, MIN_ABPR = 0, 1
NUM_APRS = 4

# -- GICv2m frame (SBSA "GICv2m", QEMU hw/intc/arm_gicv2m.c) ----------------------

V2M_MSI_TYPER, V2M_MSI_SETSPI_NS, V2M_MSI_IIDR = 0x008, 0x040, 0xFCC
# QEMU virt gives the frame 64 SPIs from SPI 48 (virt.c a15irqmap VIRT_GIC_V2M =
# 48, NUM_GICV2M_SPIS = 64), i.e. interrupt IDs 80-143.
V2M_SPI_BASE, V2M_SPI_COUNT = 32 + 48, 64
# MSI_TYPER: first SPI's ID in bits [25:16], count in bits [9:0].
V2M_TYPER_VALUE = (V2M_SPI_BASE << 16) | V2M_SPI_COUNT
# MSI_IIDR: QEMU's ProductID 'Q' (0x51) in bits [31:20], no implementer.
V2M_IIDR_VALUE = 0x51 << 20

# -- virtual interface control (GIC 5.3) -----------------------------------------

GICH_HCR, GICH_VTR, GICH_VMCR, GICH_MISR = 0x000, 0x004, 0x008, 0x010
GICH_EISR0, GICH_EISR1, GICH_ELRSR0, GICH_ELRSR1 = 0x020, 0x024, 0x030, 0x034
GICH_APR, GICH_LR0 = 0x0F0, 0x100
NUM_LRS = 4  # QEMU: "the number of implemented LRs to 4, as found in most real GICv2"

# GICH_HCR (GIC 5.3.1): En, UIE, LRENPIE, NPIE, VGrp0EIE, VGrp0DIE, VGrp1EIE,
# VGrp1DIE, and EOICount in [31:27].
HCR_EN, HCR_UIE, HCR_LRENPIE, HCR_NPIE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
HCR_VGRP0EIE, HCR_VGRP0DIE, HCR_VGRP1EIE, HCR_VGRP1DIE = 1 << 4, 1 << 5, 1 << 6, 1 << 7
HCR_EOICOUNT_SHIFT = 27
HCR_MASK = 0xFF | (0x1F << HCR_EOICOUNT_SHIFT)
# GICH_VTR (GIC 5.3.2): ListRegs = LRs - 1, PREbits = preemption bits - 1,
# PRIbits = priority bits - 1.  QEMU's virtual CPU interface has 5 priority and
# 5 preemption bits (GIC_VIRT_MAX_GROUP_PRIO_BITS, 7 - GIC_VIRT_MIN_BPR - 1).
VTR_VALUE = (NUM_LRS - 1) | ((5 - 1) << 26) | ((5 - 1) << 29)
# GICH_VMCR (GIC 5.3.3): the virtual CPU interface's GICV_CTLR bits [9:0], ABPR
# [20:18], BPR [23:21], PMR [31:27] (its top 5 bits).  The virtual interface
# keeps QEMU's minimum binary points (2, and 3 for the aliased one).
VIRT_MIN_BPR, VIRT_MIN_ABPR = 2, 3
# GICH_MISR (GIC 5.3.4) bits.
MISR_EOI, MISR_U, MISR_LRENP, MISR_NP = 1 << 0, 1 << 1, 1 << 2, 1 << 3
MISR_VGRP0E, MISR_VGRP0D, MISR_VGRP1E, MISR_VGRP1D = 1 << 4, 1 << 5, 1 << 6, 1 << 7
# GICH_LRn (GIC 5.3.8): VirtualID [9:0], PhysicalID [19:10] (with EOI at bit 19
# when HW = 0), Priority [27:23], State [29:28], Grp1 [30], HW [31]; bits
# [22:20] are reserved.
LR_EOI, LR_HW = 1 << 19, 1 << 31
LR_STATE_SHIFT = 28
LR_MASK = 0xFF8F_FFFF

# The cached highest pending interrupt is out of date (see Gic._highest_pending).
_STALE = -1


def _word_byte(word: int, offset: int) -> int:
    """Byte ``offset & 3`` of a 32-bit register value."""
    return (word >> (8 * (offset & 3))) & 0xFF


class Gic:
    """The GICv2 of QEMU virt with one CPU, its GICv2m frame and its virtual
    interface control registers.

    Each interrupt ID has the state GIC ch. 3 ("Interrupt handling state
    machine") gives it - inactive, pending, active, or active and pending -
    kept as a pending latch and an active bit, plus the level of its input
    line.  A level-sensitive interrupt is pending while its line is high or
    while its latch is set (by GICD_ISPENDR); an edge-triggered one is pending
    while its latch is set, which a rising edge, GICD_ISPENDR or (for SGIs)
    GICD_SGIR sets.  Acknowledging clears the latch; a level input that stays
    high keeps the interrupt pending, so it is "active and pending" until
    deactivated and then signals again.
    """

    name = "gic"

    def __init__(self) -> None:
        n = NUM_IRQS
        # Distributor (reset values: QEMU's arm_gic_common_reset).
        self.dist_ctlr = 0
        self.enabled = [irq < SGI_COUNT for irq in range(n)]  # SGIs always enabled
        # The same, as the IDs: the search for the highest pending interrupt
        # runs at every stop of an idle loop, and most of the 288 are disabled.
        self._enabled_ids = {irq for irq in range(n) if self.enabled[irq]}
        self.latched = [False] * n
        self.active = [False] * n
        self.level = [False] * n
        self.edge = [irq < SGI_COUNT for irq in range(n)]  # SGIs edge, the rest level
        self.group = [0] * n
        self.priority = [0] * n
        # Source CPUs of each pending SGI (GICD_SPENDSGIRn): only CPU 0 exists.
        self.sgi_sources = [0] * SGI_COUNT
        # CPU interface.
        self.cpu_ctlr = 0
        self.pmr = 0
        self.bpr = MIN_BPR
        self.abpr = MIN_ABPR
        self.apr = [0] * NUM_APRS  # Group 0 active priorities
        self.nsapr = [0] * NUM_APRS  # Group 1 active priorities
        # Virtual interface control and the virtual CPU interface state GICH_VMCR
        # stands for.
        self.hcr = 0
        self.vctlr = 0
        self.vabpr = VIRT_MIN_ABPR
        self.vbpr = VIRT_MIN_BPR
        self.vpmr = 0
        self.hapr = 0
        self.lrs = [0] * NUM_LRS
        # The distributor's highest-priority forwarded interrupt, recomputed
        # only after a change of distributor state (interrupt state is changed
        # only through the registers and set_level, which all call _changed),
        # so that polling irq_line() costs little.
        self._forwarded: int | None = _STALE

    def attach(self, guest: Guest) -> None:
        """Map the five regions at QEMU virt's addresses."""
        guest.map_mmio(GICD_BASE, GICD_SIZE, self.dist_read, self.dist_write,
                       what="the GIC distributor")
        guest.map_mmio(GICC_BASE, GICC_SIZE, self.cpu_read, self.cpu_write,
                       what="the GIC CPU interface")
        guest.map_mmio(GICV2M_BASE, GICV2M_SIZE, self.v2m_read, self.v2m_write,
                       what="the GICv2m MSI frame")
        guest.map_mmio(GICH_BASE, GICH_SIZE, self.hyp_read, self.hyp_write,
                       what="the GIC virtual interface control")
        guest.map_mmio(GICV_BASE, GICV_SIZE, self.vcpu_read, self.vcpu_write,
                       what="the GIC virtual CPU interface")

    # -- the machine's side ----------------------------------------------------

    def set_level(self, irq: int, level: bool) -> None:
        """Drive the input line of PPI or SPI ``irq`` (an interrupt ID, 16-287).

        A rising edge latches an edge-triggered interrupt pending; a
        level-sensitive one is pending exactly while the line is high (or its
        latch is set).  SGIs have no line: they come from GICD_SGIR.
        """
        if not SGI_COUNT <= irq < NUM_IRQS:
            raise ValueError(f"interrupt {irq} has no input line (PPIs and SPIs are 16-"
                             f"{NUM_IRQS - 1})")
        level = bool(level)
        if level == self.level[irq]:
            return
        if level and self.edge[irq]:
            self.latched[irq] = True
        self.level[irq] = level
        self._changed()

    def irq_line(self) -> bool:
        """Whether the CPU's IRQ input is asserted.

        It is when the distributor forwards some interrupt (enabled, pending,
        not active, its group enabled in GICD_CTLR) and the highest-priority
        one has its group enabled in GICC_CTLR, a priority higher (lower
        value) than GICC_PMR and a group priority higher than the running
        priority (GIC 3.3, "Interrupt prioritization"), and is not a Group 0
        interrupt that GICC_CTLR.FIQEn sends as FIQ instead (GIC 3.4).
        """
        irq = self._signalled()
        return irq is not None and not self._is_fiq(irq)

    def fiq_line(self) -> bool:
        """Whether the CPU's FIQ input is asserted: as :meth:`irq_line`, for a
        Group 0 interrupt while GICC_CTLR.FIQEn is set.  Linux and Xen on QEMU
        virt leave FIQEn clear, so this stays False for them."""
        irq = self._signalled()
        return irq is not None and self._is_fiq(irq)

    def is_pending(self, irq: int) -> bool:
        """Whether interrupt ``irq`` is pending (active and pending included)."""
        return self.latched[irq] or (not self.edge[irq] and self.level[irq])

    # -- distributor (GIC 4.3) ------------------------------------------------------

    def dist_read(self, offset: int, size: int) -> int:
        """A read of the distributor: every register is read byte by byte, as
        they are all byte-invariant bit or byte arrays (GIC 4.1.4)."""
        value = 0
        for i in range(size):
            value |= self._dist_read_byte(offset + i) << (8 * i)
        return value

    def dist_write(self, offset: int, size: int, value: int) -> None:
        """A write to the distributor.  GICD_SGIR takes only a whole word (GIC
        4.3.15); everything else is written byte by byte."""
        if offset == GICD_SGIR:
            if size >= 4:
                self._write_sgir(value & 0xFFFF_FFFF)
        else:
            for i in range(size):
                self._dist_write_byte(offset + i, (value >> (8 * i)) & 0xFF)
        self._changed()

    def _dist_read_byte(self, offset: int) -> int:
        """One byte of the distributor.  Offsets the GIC does not define, and
        registers of interrupt IDs beyond 287, read as zero."""
        if offset < GICD_IGROUPR:
            word = {GICD_CTLR: self.dist_ctlr, GICD_TYPER: TYPER_VALUE,
                    GICD_IIDR: GICD_IIDR_VALUE}.get(offset & ~3, 0)
            return _word_byte(word, offset)
        if offset < GICD_ISENABLER:
            return self._bits_byte(offset - GICD_IGROUPR, lambda irq: self.group[irq] == 1)
        if offset < GICD_ISPENDR:
            return self._bits_byte((offset - GICD_ISENABLER) % 0x80, self.enabled.__getitem__)
        if offset < GICD_ISACTIVER:
            return self._bits_byte((offset - GICD_ISPENDR) % 0x80, self.is_pending)
        if offset < GICD_IPRIORITYR:
            return self._bits_byte((offset - GICD_ISACTIVER) % 0x80, self.active.__getitem__)
        if offset < GICD_ITARGETSR:
            irq = offset - GICD_IPRIORITYR
            return self.priority[irq] if irq < NUM_IRQS else 0
        if offset < GICD_ICFGR:
            # GICD_ITARGETSRn (GIC 4.3.12): in a uniprocessor implementation every
            # interrupt targets the one processor and these registers are RAZ/WI;
            # so are QEMU's (gic_dist_readb() with num_cpu == 1), SGI/PPI bytes
            # included.
            return 0
        if offset < GICD_ICFGR + NUM_IRQS // 4:
            # GIC 4.3.13: two bits per interrupt, bit 1 of each = edge-triggered;
            # bit 0 (the 1-N model of GICv1) reads as zero.
            first = (offset - GICD_ICFGR) * 4
            return sum(0b10 << (2 * i) for i in range(4) if self.edge[first + i])
        if GICD_CPENDSGIR <= offset < GICD_SPENDSGIR + SGI_COUNT:
            # GIC 4.3.16/4.3.17: one byte per SGI, one bit per source CPU.
            return self.sgi_sources[(offset - GICD_CPENDSGIR) % SGI_COUNT]
        if 0xFD0 <= offset < 0x1000:
            return _GICD_ID.get(offset, 0)
        return 0

    @staticmethod
    def _bits_byte(byte_offset: int, test: Callable[[int], bool]) -> int:
        """Byte ``byte_offset`` of a one-bit-per-interrupt register array."""
        first = byte_offset * 8
        if first >= NUM_IRQS:
            return 0
        return sum(1 << i for i in range(8) if test(first + i))

    def _dist_write_byte(self, offset: int, byte: int) -> None:
        """One byte written to the distributor.  Read-only registers, offsets
        the GIC does not define and IDs beyond 287 ignore writes."""
        if offset < GICD_IGROUPR:
            if offset == GICD_CTLR:
                self.dist_ctlr = byte & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1)
        elif offset < GICD_IPRIORITYR:
            bank, byte_offset = divmod(offset - GICD_IGROUPR, 0x80)
            for i in range(8):
                irq = byte_offset * 8 + i
                if irq < NUM_IRQS:
                    self._write_bit(bank, irq, bool(byte & (1 << i)))
        elif offset < GICD_ITARGETSR:
            # GIC 4.3.11: byte-accessible; QEMU virt implements all 8 bits.
            irq = offset - GICD_IPRIORITYR
            if irq < NUM_IRQS:
                self.priority[irq] = byte
        elif offset < GICD_ICFGR:
            pass  # ITARGETSR: RAZ/WI on a uniprocessor GIC (GIC 4.3.12)
        elif offset < GICD_ICFGR + NUM_IRQS // 4:
            # GIC 4.3.13: whether a PPI's trigger mode is programmable is
            # IMPLEMENTATION DEFINED; QEMU lets PPIs and SPIs be either.
            first = (offset - GICD_ICFGR) * 4
            for i in range(4):
                if first + i >= SGI_COUNT:  # SGIs are always edge-triggered
                    self.edge[first + i] = bool(byte & (0b10 << (2 * i)))
        elif GICD_CPENDSGIR <= offset < GICD_SPENDSGIR + SGI_COUNT:
            sgi = (offset - GICD_CPENDSGIR) % SGI_COUNT
            if offset < GICD_SPENDSGIR:
                self.sgi_sources[sgi] &= ~byte
            else:
                self.sgi_sources[sgi] |= byte & 1  # only CPU 0 can be a source
            self.latched[sgi] = self.sgi_sources[sgi] != 0

    def _write_bit(self, bank: int, irq: int, bit: bool) -> None:
        """Bit ``irq`` written to one of the bit-array banks from GICD_IGROUPR
        (bank 0) to GICD_ICACTIVER (bank 7).  The set and clear banks act on
        ones and ignore zeros."""
        if bank == 0:  # GICD_IGROUPRn (GIC 4.3.4): 0 = Group 0, 1 = Group 1
            self.group[irq] = int(bit)
        elif not bit:
            pass
        elif bank in (1, 2):
            # GICD_ISENABLERn / ICENABLERn (GIC 4.3.5/4.3.6).  Whether SGIs can
            # be disabled is IMPLEMENTATION DEFINED: QEMU's cannot.
            if irq >= SGI_COUNT:
                self.enabled[irq] = bank == 1
                if bank == 1:
                    self._enabled_ids.add(irq)
                else:
                    self._enabled_ids.discard(irq)
        elif bank in (3, 4):
            # GICD_ISPENDRn / ICPENDRn (GIC 4.3.7/4.3.8) set and clear the latch
            # only: a level-sensitive interrupt whose line is high stays
            # pending.  SGI bits are ignored (as QEMU): GICD_SPENDSGIRn and
            # CPENDSGIRn set and clear SGIs.
            if irq >= SGI_COUNT:
                self.latched[irq] = bank == 3
        else:  # GICD_ISACTIVERn / ICACTIVERn (GIC 4.3.9/4.3.10)
            self.active[irq] = bank == 5

    def _write_sgir(self, value: int) -> None:
        """GICD_SGIR (GIC 4.3.15): SGIINTID [3:0], CPUTargetList [23:16],
        TargetListFilter [25:24].  Only CPU 0 exists: it receives the SGI when
        named in the list (filter 0) or as "this CPU" (filter 2); "all but this
        CPU" (filter 1) reaches nobody.  Filter 3 is reserved; QEMU sends to
        every CPU, and so does the model."""
        sgi = value & 0xF
        target_filter = (value >> 24) & 0b11
        to_self = (target_filter == 0 and value & (1 << 16)) or target_filter in (2, 3)
        if to_self:
            self.sgi_sources[sgi] |= 1  # the source is CPU 0
            self.latched[sgi] = True

    # -- CPU interface (GIC 4.4) ------------------------------------------------------

    def cpu_read(self, offset: int, size: int) -> int:
        """A read of the CPU interface (its registers are word-sized, GIC 4.1.4).
        Write-only registers and offsets the GIC does not define read as zero."""
        if offset == GICC_CTLR:
            value = self.cpu_ctlr
        elif offset == GICC_PMR:
            value = self.pmr
        elif offset == GICC_BPR:
            value = self.bpr
        elif offset == GICC_IAR:
            value = self._acknowledge(alias=False)
        elif offset == GICC_RPR:
            # GIC 4.4.6: the running priority, 0xFF when nothing is active.
            value = min(self.running_priority(), 0xFF)
        elif offset == GICC_HPPIR:
            value = self._hppir(alias=False)
        elif offset == GICC_ABPR:
            value = self.abpr
        elif offset == GICC_AIAR:
            value = self._acknowledge(alias=True)
        elif offset == GICC_AHPPIR:
            value = self._hppir(alias=True)
        elif GICC_APR <= offset < GICC_APR + 4 * NUM_APRS and offset % 4 == 0:
            value = self.apr[(offset - GICC_APR) // 4]
        elif GICC_NSAPR <= offset < GICC_NSAPR + 4 * NUM_APRS and offset % 4 == 0:
            value = self.nsapr[(offset - GICC_NSAPR) // 4]
        elif offset == GICC_IIDR:
            value = GICC_IIDR_VALUE
        else:
            value = 0
        return value & ((1 << (8 * size)) - 1)

    def cpu_write(self, offset: int, size: int, value: int) -> None:
        """A write to the CPU interface.  Read-only registers and offsets the
        GIC does not define ignore writes."""
        value &= 0xFFFF_FFFF
        if offset == GICC_CTLR:
            self.cpu_ctlr = value & GICC_CTLR_MASK
        elif offset == GICC_PMR:
            self.pmr = value & 0xFF  # GIC 4.4.2; all 8 bits, as QEMU virt
        elif offset == GICC_BPR:
            self.bpr = max(value & 7, MIN_BPR)  # GIC 4.4.3
        elif offset == GICC_EOIR:
            self._end_of_interrupt(value & 0x3FF, alias=False)
        elif offset == GICC_ABPR:
            self.abpr = max(value & 7, MIN_ABPR)  # GIC 4.4.8
        elif offset == GICC_AEOIR:
            self._end_of_interrupt(value & 0x3FF, alias=True)
        elif GICC_APR <= offset < GICC_APR + 4 * NUM_APRS and offset % 4 == 0:
            self.apr[(offset - GICC_APR) // 4] = value  # GIC 4.4.12
        elif GICC_NSAPR <= offset < GICC_NSAPR + 4 * NUM_APRS and offset % 4 == 0:
            self.nsapr[(offset - GICC_NSAPR) // 4] = value  # GIC 4.4.13
        elif offset == GICC_DIR:
            self._deactivate(value & 0x3FF)

    def running_priority(self) -> int:
        """The running priority: the group priority of the highest-priority
        active interrupt, from the active priorities registers (GIC 4.4.12:
        bit n of GICC_APR0-3 / GICC_NSAPR0-3 is group priority 2n), or
        :data:`IDLE_PRIORITY` when none is active."""
        for regno in range(NUM_APRS):
            bits = self.apr[regno] | self.nsapr[regno]
            if bits:
                lowest = (bits & -bits).bit_length() - 1
                return (regno * 32 + lowest) << (MIN_BPR + 1)
        return IDLE_PRIORITY

    def _group_priority(self, irq: int) -> int:
        """The group priority of ``irq`` (GIC 3.3, "Priority grouping"): the
        priority with its subpriority bits cleared.  Group 0 uses GICC_BPR
        (binary point n: group priority is bits [7:n+1]); Group 1 uses
        GICC_ABPR (binary point n: bits [7:n]) unless GICC_CTLR.CBPR says to
        use GICC_BPR for both."""
        if self.group[irq] == 1 and not self.cpu_ctlr & GICC_CTLR_CBPR:
            shift = self.abpr
        else:
            shift = self.bpr + 1
        return self.priority[irq] & (0xFF << shift) & 0xFF

    def _highest_pending(self) -> int | None:
        """The highest-priority interrupt the distributor forwards to the CPU
        interface (GIC 3.3): enabled, pending, not active, of a group enabled
        in GICD_CTLR.  Of equal priorities the lowest ID wins (as QEMU)."""
        if self._forwarded != _STALE:
            return self._forwarded
        best, best_priority = None, IDLE_PRIORITY
        if self.dist_ctlr:
            for irq in sorted(self._enabled_ids):
                if (not self.active[irq]
                        and self.dist_ctlr & (1 << self.group[irq])
                        and self.priority[irq] < best_priority and self.is_pending(irq)):
                    best, best_priority = irq, self.priority[irq]
        self._forwarded = best
        return best

    def _changed(self) -> None:
        """Distributor state changed: the highest pending interrupt is recomputed
        when next asked for."""
        self._forwarded = _STALE

    def _visible_pending(self) -> int | None:
        """The highest-priority pending interrupt as the CPU interface sees
        it: its group enabled in GICC_CTLR and its priority higher than
        GICC_PMR (GIC 3.3, "Priority masking"); else None."""
        irq = self._highest_pending()
        if irq is None or not self.cpu_ctlr & (1 << self.group[irq]):
            return None
        return irq if self.priority[irq] < self.pmr else None

    def _signalled(self) -> int | None:
        """The interrupt the CPU interface signals to the CPU: the visible
        pending one if its group priority is higher than the running priority
        (it would preempt, GIC 3.3, "Preemption"); else None."""
        irq = self._visible_pending()
        if irq is None or self._group_priority(irq) >= self.running_priority():
            return None
        return irq

    def _is_fiq(self, irq: int) -> bool:
        """Whether ``irq`` is signalled as FIQ: Group 0 with GICC_CTLR.FIQEn
        set (GIC 3.4, "The effect of interrupt grouping on interrupt handling")."""
        return self.group[irq] == 0 and bool(self.cpu_ctlr & GICC_CTLR_FIQ_EN)

    def _hppir(self, *, alias: bool) -> int:
        """GICC_HPPIR (GIC 4.4.7) or, with ``alias``, GICC_AHPPIR (GIC 4.4.11):
        the ID of the highest-priority pending interrupt, 1023 if none.
        Through GICC_HPPIR a Group 1 interrupt shows as 1022 unless
        GICC_CTLR.AckCtl is set; GICC_AHPPIR shows only Group 1 interrupts."""
        irq = self._visible_pending()
        if irq is None:
            return ID_SPURIOUS
        if alias:
            return irq if self.group[irq] == 1 else ID_SPURIOUS
        if self.group[irq] == 1 and not self.cpu_ctlr & GICC_CTLR_ACK_CTL:
            return ID_GROUP1_HIDDEN
        return irq

    def _acknowledge(self, *, alias: bool) -> int:
        """A read of GICC_IAR (GIC 4.4.4) or, with ``alias``, GICC_AIAR (GIC
        4.4.9, Group 1 only).

        The highest-priority pending interrupt, if it is visible and would
        preempt the running priority, becomes active (its pending latch is
        cleared; a level input still high keeps it pending), its group
        priority is recorded in the active priorities registers and becomes
        the running priority, and its ID is returned, with the source CPU
        (always 0) in bits [12:10] for an SGI.  Otherwise the ID is 1023 (or
        1022, see :meth:`_hppir`) and nothing changes (GIC ch. 3, "Special interrupt numbers").
        """
        irq = self._signalled()
        if irq is None:
            return ID_SPURIOUS
        shown = self._hppir(alias=alias)
        if shown != irq:
            return shown
        group_priority = self._group_priority(irq)
        level = group_priority >> (MIN_BPR + 1)
        registers = self.nsapr if self.group[irq] == 1 else self.apr
        registers[level // 32] |= 1 << (level % 32)
        self.active[irq] = True
        if irq < SGI_COUNT:
            self.sgi_sources[irq] &= ~1
            self.latched[irq] = self.sgi_sources[irq] != 0
        else:
            self.latched[irq] = False
        self._changed()
        return irq  # the source CPU ID, bits [12:10], is 0

    def _end_of_interrupt(self, irq: int, *, alias: bool) -> None:
        """A write to GICC_EOIR (GIC 4.4.5) or, with ``alias``, GICC_AEOIR (GIC
        4.4.10, Group 1 only).

        Priority drop: the highest active priority of the interrupt's group is
        removed from the active priorities, so the running priority falls to
        the next active one (or idle).  With GICC_CTLR.EOImode = 0 the
        interrupt is also deactivated; with EOImode = 1 it stays active until
        written to GICC_DIR (GIC ch. 3, "Priority drop and interrupt
        deactivation").  Spurious and nonexistent IDs, and EOIs with nothing
        active, are ignored (as QEMU does for these UNPREDICTABLE cases).
        """
        if irq >= NUM_IRQS or self.running_priority() == IDLE_PRIORITY:
            return
        if alias and self.group[irq] != 1:
            return
        registers = self.nsapr if self.group[irq] == 1 else self.apr
        for regno, bits in enumerate(registers):
            if bits:
                registers[regno] = bits & (bits - 1)  # clear the lowest set bit
                break
        if not self.cpu_ctlr & GICC_CTLR_EOI_MODE:
            self.active[irq] = False
            self._changed()

    def _deactivate(self, irq: int) -> None:
        """A write to GICC_DIR (GIC 4.4.15): deactivate ``irq``.  Only meaningful
        with GICC_CTLR.EOImode = 1; otherwise UNPREDICTABLE, and ignored (as
        QEMU).  Spurious and nonexistent IDs are ignored."""
        if irq < NUM_IRQS and self.cpu_ctlr & GICC_CTLR_EOI_MODE:
            self.active[irq] = False
            self._changed()

    # -- GICv2m MSI frame --------------------------------------------------------------

    def v2m_read(self, offset: int, size: int) -> int:
        """MSI_TYPER and MSI_IIDR; everything else (including the optional
        identification registers) reads as zero.  Like QEMU, only word reads
        answer."""
        if size != 4:
            return 0
        return {V2M_MSI_TYPER: V2M_TYPER_VALUE, V2M_MSI_IIDR: V2M_IIDR_VALUE}.get(offset, 0)

    def v2m_write(self, offset: int, size: int, value: int) -> None:
        """A write of an interrupt ID to MSI_SETSPI_NS pulses that SPI's line,
        if it is one of the frame's (80-143); anything else is ignored.

        The pulse (as QEMU's qemu_irq_pulse) sets an SPI configured
        edge-triggered in GICD_ICFGR pending, which is how Linux configures
        GICv2m SPIs; a level-sensitive SPI sees its line rise and fall again
        and is left as it was.
        """
        if offset != V2M_MSI_SETSPI_NS or size not in (2, 4):
            return
        irq = value & 0x3FF
        if V2M_SPI_BASE <= irq < V2M_SPI_BASE + V2M_SPI_COUNT:
            self.set_level(irq, True)
            self.set_level(irq, False)

    # -- virtual interface control (GIC 5.3) -------------------------------------------

    def hyp_read(self, offset: int, size: int) -> int:
        """A read of GICH.  Offsets the GIC does not define, and list registers
        beyond the fourth, read as zero."""
        if offset == GICH_HCR:
            value = self.hcr
        elif offset == GICH_VTR:
            value = VTR_VALUE
        elif offset == GICH_VMCR:
            value = (self.vctlr | (self.vabpr << 18) | (self.vbpr << 21)
                     | ((self.vpmr >> 3) << 27))
        elif offset == GICH_MISR:
            value = self.misr()
        elif offset == GICH_EISR0:
            value = sum(1 << n for n, lr in enumerate(self.lrs) if _lr_awaits_eoi(lr))
        elif offset == GICH_ELRSR0:
            value = sum(1 << n for n, lr in enumerate(self.lrs) if _lr_is_empty(lr))
        elif offset == GICH_APR:
            value = self.hapr
        elif GICH_LR0 <= offset < GICH_LR0 + 4 * NUM_LRS and offset % 4 == 0:
            value = self.lrs[(offset - GICH_LR0) // 4]
        else:
            value = 0  # GICH_EISR1, GICH_ELRSR1: no list registers 32-63
        return value & ((1 << (8 * size)) - 1)

    def hyp_write(self, offset: int, size: int, value: int) -> None:
        """A write to GICH: the list registers, GICH_HCR, GICH_VMCR and GICH_APR
        hold what is written (reserved bits cleared); the status registers are
        read-only.  Then the maintenance interrupt follows GICH_MISR."""
        value &= 0xFFFF_FFFF
        if offset == GICH_HCR:
            self.hcr = value & HCR_MASK
        elif offset == GICH_VMCR:
            self.vctlr = value & GICC_CTLR_MASK
            self.vabpr = max((value >> 18) & 7, VIRT_MIN_ABPR)
            self.vbpr = max((value >> 21) & 7, VIRT_MIN_BPR)
            self.vpmr = ((value >> 27) & 0x1F) << 3
        elif offset == GICH_APR:
            self.hapr = value
        elif GICH_LR0 <= offset < GICH_LR0 + 4 * NUM_LRS and offset % 4 == 0:
            self.lrs[(offset - GICH_LR0) // 4] = value & LR_MASK
        else:
            return
        self._update_maintenance()

    def misr(self) -> int:
        """GICH_MISR (GIC 5.3.4): which maintenance conditions hold, each gated
        by its enable in GICH_HCR (EOI has no enable: it is any list register
        waiting for an EOI maintenance interrupt)."""
        hcr, value = self.hcr, 0
        if any(_lr_awaits_eoi(lr) for lr in self.lrs):
            value |= MISR_EOI
        valid = sum(1 for lr in self.lrs if (lr >> LR_STATE_SHIFT) & 3)
        pending = sum(1 for lr in self.lrs if (lr >> LR_STATE_SHIFT) & 3 == 1)
        if hcr & HCR_UIE and valid < 2:
            value |= MISR_U  # "underflow": at most one valid list register
        if hcr & HCR_LRENPIE and hcr >> HCR_EOICOUNT_SHIFT:
            value |= MISR_LRENP
        if hcr & HCR_NPIE and pending == 0:
            value |= MISR_NP
        grp0, grp1 = self.vctlr & GICC_CTLR_ENABLE_GRP0, self.vctlr & GICC_CTLR_ENABLE_GRP1
        for enable, condition, bit in ((HCR_VGRP0EIE, grp0, MISR_VGRP0E),
                                       (HCR_VGRP0DIE, not grp0, MISR_VGRP0D),
                                       (HCR_VGRP1EIE, grp1, MISR_VGRP1E),
                                       (HCR_VGRP1DIE, not grp1, MISR_VGRP1D)):
            if hcr & enable and condition:
                value |= bit
        return value

    def _update_maintenance(self) -> None:
        """The maintenance interrupt (PPI 25 on QEMU virt) is asserted while
        GICH_HCR.En is set and some GICH_MISR condition holds (GIC 5.3.4)."""
        self.set_level(MAINTENANCE_PPI, bool(self.hcr & HCR_EN) and self.misr() != 0)

    # -- virtual CPU interface (GIC 5.4) ----------------------------------------------

    def vcpu_read(self, offset: int, size: int) -> int:
        """GICV is not modelled (no virtual interrupt is delivered): it reads
        as zero."""
        return 0

    def vcpu_write(self, offset: int, size: int, value: int) -> None:
        """GICV is not modelled: writes are ignored."""


def _lr_awaits_eoi(lr: int) -> bool:
    """A list register that would raise an EOI maintenance interrupt (GIC
    5.3.5): invalid state, software interrupt (HW = 0) with EOI set."""
    return (lr >> LR_STATE_SHIFT) & 3 == 0 and not lr & LR_HW and bool(lr & LR_EOI)


def _lr_is_empty(lr: int) -> bool:
    """A list register free for a new entry (GIC 5.3.6): invalid state and not
    waiting for an EOI maintenance interrupt."""
    return (lr >> LR_STATE_SHIFT) & 3 == 0 and (bool(lr & LR_HW) or not lr & LR_EOI)
