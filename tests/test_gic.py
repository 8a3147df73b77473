"""The GICv2 model (emu.board.gic), driven through its MMIO accessors.

Behaviour is checked against Arm's GIC architecture specification v2 (IHI
0048B, cited as "GIC" with section numbers); identification values against what
QEMU's GICv2 returns on ``-M virt,gic-version=2,virtualization=on`` (QEMU's
source is cited as the outside truth).  The last test boots a small program
that programs the GIC through real loads and stores.
"""

from __future__ import annotations

import pytest
from conftest import Tables, build_image

from emu.board.gic import (
    GICC_ABPR,
    GICC_AEOIR,
    GICC_AHPPIR,
    GICC_AIAR,
    GICC_APR,
    GICC_BPR,
    GICC_CTLR,
    GICC_DIR,
    GICC_EOIR,
    GICC_HPPIR,
    GICC_IAR,
    GICC_IIDR,
    GICC_PMR,
    GICC_RPR,
    GICD_BASE,
    GICD_CPENDSGIR,
    GICD_CTLR,
    GICD_ICACTIVER,
    GICD_ICENABLER,
    GICD_ICFGR,
    GICD_ICPENDR,
    GICD_IGROUPR,
    GICD_IIDR,
    GICD_IPRIORITYR,
    GICD_ISACTIVER,
    GICD_ISENABLER,
    GICD_ISPENDR,
    GICD_ITARGETSR,
    GICD_SGIR,
    GICD_SPENDSGIR,
    GICD_TYPER,
    GICH_APR,
    GICH_EISR0,
    GICH_ELRSR0,
    GICH_HCR,
    GICH_LR0,
    GICH_MISR,
    GICH_VMCR,
    GICH_VTR,
    MAINTENANCE_PPI,
    V2M_MSI_IIDR,
    V2M_MSI_SETSPI_NS,
    V2M_MSI_TYPER,
    Gic,
)
from emu.machine.machine import Machine
from emu.machine.stop import StopKind

SPI = 40
TIMER_PPI = 30  # the EL1 physical timer's PPI on QEMU virt


# -- helpers: word accesses, as boot code makes them -----------------------------

def dist(gic: Gic, offset: int, value: int | None = None) -> int:
    if value is None:
        return gic.dist_read(offset, 4)
    gic.dist_write(offset, 4, value)
    return value


def cpu(gic: Gic, offset: int, value: int | None = None) -> int:
    if value is None:
        return gic.cpu_read(offset, 4)
    gic.cpu_write(offset, 4, value)
    return value


def bit(irq: int) -> tuple[int, int]:
    """(byte offset of irq's word in a bit-array bank, its bit in that word)."""
    return 4 * (irq // 32), 1 << (irq % 32)


def set_bit(gic: Gic, bank: int, irq: int) -> None:
    offset, mask = bit(irq)
    dist(gic, bank + offset, mask)


def is_set(gic: Gic, bank: int, irq: int) -> bool:
    offset, mask = bit(irq)
    return bool(dist(gic, bank + offset) & mask)


def set_priority(gic: Gic, irq: int, priority: int) -> None:
    gic.dist_write(GICD_IPRIORITYR + irq, 1, priority)


def enabled_gic(pmr: int = 0xF0, cpu_ctlr: int = 1) -> Gic:
    """A GIC as boot code leaves it: distributor and CPU interface on for
    Group 0, priority mask ``pmr``."""
    gic = Gic()
    dist(gic, GICD_CTLR, 1)
    cpu(gic, GICC_PMR, pmr)
    cpu(gic, GICC_CTLR, cpu_ctlr)
    return gic


def pending_spi(gic: Gic, irq: int, priority: int) -> None:
    set_priority(gic, irq, priority)
    set_bit(gic, GICD_ISENABLER, irq)
    set_bit(gic, GICD_ISPENDR, irq)


# -- identification: what QEMU returns ------------------------------------------

def test_typer_reads_288_lines_one_cpu_no_security_extensions_as_qemu() -> None:
    gic = Gic()
    # QEMU hw/intc/arm_gic.c gic_dist_readb(), GICD_TYPER byte 0:
    #   ((s->num_irq / 32) - 1) | ((s->num_cpu - 1) << 5), byte 1: security_extn << 2,
    # with hw/arm/virt.c create_gic() setting num-irq = NUM_IRQS + 32 = 288 and
    # num-cpu = 1: ITLinesNumber 8, CPUNumber 0, SecurityExtn 0 (GIC 4.3.2).
    assert dist(gic, GICD_TYPER) == 0x0000_0008
    assert gic.dist_read(GICD_TYPER, 1) == 8
    # GIC 4.3.2: the number of lines is 32 * (ITLinesNumber + 1).
    assert 32 * ((dist(gic, GICD_TYPER) & 0x1F) + 1) == 288


def test_iidr_and_id_registers_read_what_qemu_returns() -> None:
    gic = Gic()
    # QEMU hw/intc/arm_gic.c gic_dist_readb(): GICD_IIDR bytes 0x3b, 0x04 ("Arm
    # JEP106 identity"), the rest RAZ (commit "hw/intc: add implementation of
    # GICD_IIDR to Arm GIC", Nov 2022).
    assert dist(gic, GICD_IIDR) == 0x0000_043B
    # QEMU gic_cpu_read(), case 0xfc: (s->revision << 16) | 0x43b, revision 2.
    assert cpu(gic, GICC_IIDR) == 0x0002_043B
    # QEMU gic_id_gicv2[] = {0x04, 0x00, 0x00, 0x00, 0x90, 0xb4, 0x2b, 0x00,
    # 0x0d, 0xf0, 0x05, 0xb1} at 0xFD0-0xFFC, one byte per word.
    ids = [dist(gic, offset) for offset in range(0xFD0, 0x1000, 4)]
    assert ids == [0x04, 0x00, 0x00, 0x00, 0x90, 0xB4, 0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1]
    # ICPIDR2 bits [7:4] are ArchRev: 2 for GICv2 (GIC 4.3, "Identification
    # registers"), what Linux and Xen read to recognise the GIC.
    assert (dist(gic, 0xFE8) >> 4) & 0xF == 2


def test_reset_state_sgis_enabled_and_edge_ppis_and_spis_level() -> None:
    gic = Gic()
    # QEMU arm_gic_common_reset: SGIs enabled and edge-triggered, permanently
    # (gic_dist_writeb() forces ISENABLER/ICENABLER bits of SGIs); GIC 4.3.5
    # leaves it IMPLEMENTATION DEFINED whether SGIs can be disabled.
    assert dist(gic, GICD_ISENABLER) == 0x0000_FFFF
    dist(gic, GICD_ICENABLER, 0xFFFF_FFFF)
    assert dist(gic, GICD_ISENABLER) == 0x0000_FFFF
    # GIC 4.3.13: Int_config bit 1 = edge; SGIs read 0b10, PPIs and SPIs reset level.
    assert dist(gic, GICD_ICFGR) == 0xAAAA_AAAA
    assert dist(gic, GICD_ICFGR + 4) == 0
    assert dist(gic, GICD_ICFGR + 8) == 0
    assert dist(gic, GICD_CTLR) == 0 and cpu(gic, GICC_CTLR) == 0
    assert cpu(gic, GICC_PMR) == 0
    assert cpu(gic, GICC_RPR) == 0xFF  # GIC 4.4.6: idle
    assert cpu(gic, GICC_IAR) == 1023
    assert not gic.irq_line()


def test_itargetsr_is_raz_wi_on_a_uniprocessor_gic() -> None:
    gic = Gic()
    # GIC 4.3.12: in a uniprocessor implementation GICD_ITARGETSRn are RAZ/WI;
    # QEMU gic_dist_readb(): "For uniprocessor GICs these RAZ/WI".
    for offset in (GICD_ITARGETSR, GICD_ITARGETSR + 28, GICD_ITARGETSR + SPI):
        dist(gic, offset, 0x0101_0101)
        assert dist(gic, offset) == 0
    # Every SPI still reaches the one CPU.
    gic = enabled_gic()
    pending_spi(gic, SPI, 0x80)
    assert gic.irq_line()


def test_unknown_offsets_read_zero_and_ignore_writes() -> None:
    gic = Gic()
    for offset in (0x00C, 0x040, 0xE00, 0xF04, 0xF40, 0x1000, 0x8000):
        gic.dist_write(offset, 4, 0xFFFF_FFFF)
        assert gic.dist_read(offset, 4) == 0
    for offset in (0x2C, 0x40, 0xCC, 0x2000):
        gic.cpu_write(offset, 4, 0xFFFF_FFFF)
        assert gic.cpu_read(offset, 4) == 0
    # Registers of interrupt IDs beyond 287 do not exist.
    dist(gic, GICD_ISENABLER + 36, 0xFFFF_FFFF)
    assert dist(gic, GICD_ISENABLER + 36) == 0
    assert Gic().dist_read(0, 4) == dist(gic, 0)  # nothing else changed


# -- enable, priority, acknowledge, end of interrupt -------------------------------

def test_acknowledge_and_eoi_of_a_pending_spi() -> None:
    gic = Gic()
    pending_spi(gic, SPI, 0xA0)
    # GIC 4.3.1 / 4.4.1: nothing is signalled while the distributor or the CPU
    # interface is disabled.
    assert not gic.irq_line()
    dist(gic, GICD_CTLR, 1)
    assert not gic.irq_line()
    cpu(gic, GICC_CTLR, 1)
    assert not gic.irq_line()  # GICC_PMR resets to 0: every priority masked
    cpu(gic, GICC_PMR, 0xF0)
    assert gic.irq_line()
    assert cpu(gic, GICC_HPPIR) == SPI  # GIC 4.4.7
    # GIC 4.4.4: reading GICC_IAR returns the ID and makes it active; the
    # running priority becomes its priority (GIC 4.4.6).
    assert cpu(gic, GICC_IAR) == SPI
    assert is_set(gic, GICD_ISACTIVER, SPI)
    assert not is_set(gic, GICD_ISPENDR, SPI)
    assert cpu(gic, GICC_RPR) == 0xA0
    # GIC 4.4.12: one bit per group priority (128 levels with GICC_BPR = 0):
    # 0xA0 is level 80, bit 16 of GICC_APR2.
    assert cpu(gic, GICC_APR + 8) == 1 << 16
    assert not gic.irq_line()
    # GIC ch. 3, "Special interrupt numbers": nothing left to acknowledge.
    assert cpu(gic, GICC_IAR) == 1023
    # GIC 4.4.5 with EOImode = 0: priority drop and deactivation together.
    cpu(gic, GICC_EOIR, SPI)
    assert not is_set(gic, GICD_ISACTIVER, SPI)
    assert cpu(gic, GICC_RPR) == 0xFF
    assert cpu(gic, GICC_APR + 8) == 0
    assert not gic.irq_line()


def test_priorities_are_byte_and_word_accessible() -> None:
    gic = Gic()
    # GIC 4.3.11: GICD_IPRIORITYRn are byte-accessible, one byte per ID.
    dist(gic, GICD_IPRIORITYR + 40, 0x10_20_30_40)
    assert [gic.dist_read(GICD_IPRIORITYR + irq, 1) for irq in range(40, 44)] == [
        0x40, 0x30, 0x20, 0x10]
    gic.dist_write(GICD_IPRIORITYR + 42, 1, 0xFF)
    assert dist(gic, GICD_IPRIORITYR + 40) == 0x10_FF_30_40
    assert gic.dist_read(GICD_IPRIORITYR + 41, 2) == 0xFF30


def test_the_highest_priority_pending_interrupt_is_acknowledged_first() -> None:
    gic = enabled_gic()
    pending_spi(gic, 50, 0x90)
    pending_spi(gic, 60, 0x40)
    pending_spi(gic, 70, 0x40)
    # GIC 3.3: lower value = higher priority; on a tie the model (as QEMU) takes
    # the lowest ID.
    assert cpu(gic, GICC_IAR) == 60
    cpu(gic, GICC_EOIR, 60)
    assert cpu(gic, GICC_IAR) == 70
    cpu(gic, GICC_EOIR, 70)
    assert cpu(gic, GICC_IAR) == 50
    cpu(gic, GICC_EOIR, 50)
    assert cpu(gic, GICC_IAR) == 1023


def test_a_disabled_interrupt_stays_pending_but_is_not_forwarded() -> None:
    gic = enabled_gic()
    pending_spi(gic, SPI, 0x80)
    set_bit(gic, GICD_ICENABLER, SPI)  # GIC 4.3.6
    assert is_set(gic, GICD_ISPENDR, SPI)
    assert not gic.irq_line() and cpu(gic, GICC_IAR) == 1023
    set_bit(gic, GICD_ICPENDR, SPI)  # GIC 4.3.8
    set_bit(gic, GICD_ISENABLER, SPI)
    assert not gic.irq_line()


def test_pmr_masks_priorities_equal_or_lower() -> None:
    # GIC 3.3 "Priority masking", 4.4.2: only priorities strictly higher (numerically lower)
    # than GICC_PMR are signalled.
    gic = enabled_gic(pmr=0x80)
    pending_spi(gic, SPI, 0x80)
    assert not gic.irq_line()
    assert cpu(gic, GICC_IAR) == 1023
    assert cpu(gic, GICC_HPPIR) == 1023
    cpu(gic, GICC_PMR, 0x81)
    assert gic.irq_line()
    assert cpu(gic, GICC_IAR) == SPI


def test_running_priority_decides_preemption() -> None:
    gic = enabled_gic()
    pending_spi(gic, 50, 0xA0)
    assert cpu(gic, GICC_IAR) == 50
    # GIC 3.3, "Preemption": while 50 is active at 0xA0, an interrupt of equal
    # or lower priority is not signalled; a higher one is, and is acknowledged.
    pending_spi(gic, 60, 0xA0)
    pending_spi(gic, 61, 0xC0)
    assert not gic.irq_line() and cpu(gic, GICC_IAR) == 1023
    assert cpu(gic, GICC_HPPIR) == 60  # pending, just not preempting
    pending_spi(gic, 70, 0x40)
    assert gic.irq_line()
    assert cpu(gic, GICC_IAR) == 70
    assert cpu(gic, GICC_RPR) == 0x40
    # Nested EOIs drop the priority in order: back to 0xA0, then idle.
    cpu(gic, GICC_EOIR, 70)
    assert cpu(gic, GICC_RPR) == 0xA0
    assert not gic.irq_line()
    cpu(gic, GICC_EOIR, 50)
    assert cpu(gic, GICC_RPR) == 0xFF
    assert cpu(gic, GICC_IAR) == 60


def test_binary_point_groups_priorities_for_preemption() -> None:
    gic = enabled_gic()
    # GIC 3.3 "Priority grouping": GICC_BPR = 3 makes bits [7:4] the group priority.  While 0x48
    # is active the running priority is its group priority 0x40; 0x41 is a
    # higher priority but in the same group, so it cannot preempt; 0x3F can.
    cpu(gic, GICC_BPR, 3)
    assert cpu(gic, GICC_BPR) == 3
    pending_spi(gic, 50, 0x48)
    assert cpu(gic, GICC_IAR) == 50
    assert cpu(gic, GICC_RPR) == 0x40
    pending_spi(gic, 60, 0x41)
    assert not gic.irq_line()
    assert cpu(gic, GICC_HPPIR) == 60
    pending_spi(gic, 61, 0x3F)
    assert gic.irq_line() and cpu(gic, GICC_IAR) == 61
    assert cpu(gic, GICC_RPR) == 0x30
    # GICC_ABPR's minimum is 1 (GIC 4.4.8, QEMU GIC_MIN_ABPR).
    cpu(gic, GICC_ABPR, 0)
    assert cpu(gic, GICC_ABPR) == 1


def test_eoimode_1_splits_priority_drop_from_deactivation() -> None:
    # GIC 4.4.1: GICC_CTLR.EOImode (bit 9) = 1: GICC_EOIR only drops the
    # priority; GICC_DIR (GIC 4.4.15) deactivates (GIC ch. 3, "Priority drop
    # and interrupt deactivation").
    gic = enabled_gic(cpu_ctlr=1 | (1 << 9))
    assert cpu(gic, GICC_CTLR) == 0x201
    pending_spi(gic, SPI, 0x80)
    assert cpu(gic, GICC_IAR) == SPI
    cpu(gic, GICC_EOIR, SPI)
    assert cpu(gic, GICC_RPR) == 0xFF
    assert is_set(gic, GICD_ISACTIVER, SPI)
    set_bit(gic, GICD_ISPENDR, SPI)
    assert not gic.irq_line()  # still active: not forwarded again
    cpu(gic, GICC_DIR, SPI)
    assert not is_set(gic, GICD_ISACTIVER, SPI)
    assert gic.irq_line()


def test_dir_is_ignored_with_eoimode_0() -> None:
    # GIC 4.4.15: GICC_DIR with EOImode = 0 is UNPREDICTABLE; the model (as
    # QEMU gic_deactivate_irq()) ignores it.
    gic = enabled_gic()
    pending_spi(gic, SPI, 0x80)
    assert cpu(gic, GICC_IAR) == SPI
    cpu(gic, GICC_DIR, SPI)
    assert is_set(gic, GICD_ISACTIVER, SPI)
    cpu(gic, GICC_EOIR, SPI)
    assert not is_set(gic, GICD_ISACTIVER, SPI)


def test_spurious_ids_written_to_eoir_are_ignored() -> None:
    gic = enabled_gic()
    pending_spi(gic, SPI, 0x80)
    assert cpu(gic, GICC_IAR) == SPI
    cpu(gic, GICC_EOIR, 1023)
    cpu(gic, GICC_EOIR, 500)  # no such interrupt
    assert cpu(gic, GICC_RPR) == 0x80
    assert is_set(gic, GICD_ISACTIVER, SPI)


def test_active_bits_can_be_set_and_cleared_directly() -> None:
    gic = enabled_gic()
    pending_spi(gic, SPI, 0x80)
    set_bit(gic, GICD_ISACTIVER, SPI)  # GIC 4.3.9
    assert not gic.irq_line()
    set_bit(gic, GICD_ICACTIVER, SPI)  # GIC 4.3.10
    assert not is_set(gic, GICD_ISACTIVER, SPI) and gic.irq_line()


# -- level and edge inputs ---------------------------------------------------------------

def test_a_level_ppi_is_pending_while_its_line_is_high() -> None:
    gic = enabled_gic()
    set_priority(gic, TIMER_PPI, 0xA0)
    set_bit(gic, GICD_ISENABLER, TIMER_PPI)
    gic.set_level(TIMER_PPI, True)
    assert is_set(gic, GICD_ISPENDR, TIMER_PPI)
    assert gic.irq_line()
    # GIC ch. 3, "Interrupt handling state machine": acknowledging a level
    # interrupt whose line is still high makes it active and pending.
    assert cpu(gic, GICC_IAR) == TIMER_PPI
    assert is_set(gic, GICD_ISACTIVER, TIMER_PPI)
    assert is_set(gic, GICD_ISPENDR, TIMER_PPI)
    assert not gic.irq_line()
    # GIC 4.3.8: clearing the pending state of a level interrupt whose line is
    # asserted has no effect.
    set_bit(gic, GICD_ICPENDR, TIMER_PPI)
    assert is_set(gic, GICD_ISPENDR, TIMER_PPI)
    # The handler silences the device (the timer): the line drops, the
    # interrupt is only active; after EOI nothing is pending.
    gic.set_level(TIMER_PPI, False)
    assert not is_set(gic, GICD_ISPENDR, TIMER_PPI)
    cpu(gic, GICC_EOIR, TIMER_PPI)
    assert not gic.irq_line()
    assert cpu(gic, GICC_IAR) == 1023


def test_a_level_line_left_high_signals_again_after_eoi() -> None:
    gic = enabled_gic()
    set_bit(gic, GICD_ISENABLER, TIMER_PPI)
    set_priority(gic, TIMER_PPI, 0x80)
    gic.set_level(TIMER_PPI, True)
    assert cpu(gic, GICC_IAR) == TIMER_PPI
    cpu(gic, GICC_EOIR, TIMER_PPI)
    assert gic.irq_line()
    assert cpu(gic, GICC_IAR) == TIMER_PPI


def test_an_edge_spi_latches_its_rising_edge() -> None:
    gic = enabled_gic()
    set_bit(gic, GICD_ISENABLER, SPI)
    offset, shift = divmod(SPI, 16)
    dist(gic, GICD_ICFGR + 4 * offset, 0b10 << (2 * shift))  # GIC 4.3.13: edge
    gic.set_level(SPI, True)
    gic.set_level(SPI, False)
    assert is_set(gic, GICD_ISPENDR, SPI) and gic.irq_line()
    assert cpu(gic, GICC_IAR) == SPI
    assert not is_set(gic, GICD_ISPENDR, SPI)
    cpu(gic, GICC_EOIR, SPI)
    assert not gic.irq_line()


def test_sgis_have_no_input_line() -> None:
    with pytest.raises(ValueError):
        Gic().set_level(3, True)
    with pytest.raises(ValueError):
        Gic().set_level(288, True)


# -- SGIs ------------------------------------------------------------------------

def test_sgir_sends_sgis_to_this_cpu() -> None:
    gic = enabled_gic()
    # GIC 4.3.15: TargetListFilter 0b10 = "this CPU".
    dist(gic, GICD_SGIR, (0b10 << 24) | 3)
    assert gic.irq_line()
    assert gic.dist_read(GICD_SPENDSGIR + 3, 1) == 0x01  # GIC 4.3.17: from CPU 0
    # GIC 4.4.4: an SGI's IAR value carries the source CPU in bits [12:10] (0).
    assert cpu(gic, GICC_IAR) == 3
    assert gic.dist_read(GICD_SPENDSGIR + 3, 1) == 0
    cpu(gic, GICC_EOIR, 3)
    # Filter 0 with CPU 0 in the target list reaches it; other targets and
    # "all other CPUs" (filter 0b01) reach no one on a one-CPU GIC.
    dist(gic, GICD_SGIR, (0b01 << 24) | 5)
    dist(gic, GICD_SGIR, (0x02 << 16) | 6)
    assert not gic.irq_line()
    dist(gic, GICD_SGIR, (0x01 << 16) | 7)
    assert cpu(gic, GICC_IAR) == 7
    cpu(gic, GICC_EOIR, 7)
    # GICD_SGIR is a word register: a byte write does nothing.
    gic.dist_write(GICD_SGIR, 1, 0x08)
    assert not gic.irq_line()


def test_sgi_pending_state_through_spendsgir_and_cpendsgir() -> None:
    gic = enabled_gic()
    # GIC 4.3.7: GICD_ISPENDR bits of SGIs are not how SGIs are made pending
    # (QEMU ignores them); GICD_SPENDSGIRn / CPENDSGIRn are (GIC 4.3.16/17).
    dist(gic, GICD_ISPENDR, 0xFFFF)
    assert dist(gic, GICD_ISPENDR) == 0
    gic.dist_write(GICD_SPENDSGIR + 2, 1, 0x01)
    assert dist(gic, GICD_ISPENDR) == 1 << 2
    gic.dist_write(GICD_CPENDSGIR + 2, 1, 0x01)
    assert dist(gic, GICD_ISPENDR) == 0
    assert not gic.irq_line()


# -- groups ------------------------------------------------------------------------

def test_group1_interrupts_need_ackctl_or_the_aliased_registers() -> None:
    gic = Gic()
    dist(gic, GICD_CTLR, 0b11)  # GIC 4.3.1: EnableGrp0 and EnableGrp1
    cpu(gic, GICC_CTLR, 0b11)
    cpu(gic, GICC_PMR, 0xFF)
    pending_spi(gic, SPI, 0x80)
    set_bit(gic, GICD_IGROUPR, SPI)  # GIC 4.3.4: Group 1
    assert is_set(gic, GICD_IGROUPR, SPI)
    assert gic.irq_line()
    # GIC 4.4.4 / 3.4.2: with AckCtl = 0, GICC_IAR shows a Group 1 interrupt as
    # 1022 and leaves it pending; GICC_AIAR (GIC 4.4.9) acknowledges it.
    assert cpu(gic, GICC_HPPIR) == 1022
    assert cpu(gic, GICC_IAR) == 1022
    assert cpu(gic, GICC_AHPPIR) == SPI
    assert cpu(gic, GICC_AIAR) == SPI
    assert is_set(gic, GICD_ISACTIVER, SPI)
    cpu(gic, GICC_AEOIR, SPI)
    assert not is_set(gic, GICD_ISACTIVER, SPI)
    # With AckCtl (bit 2) set, GICC_IAR acknowledges it too.
    set_bit(gic, GICD_ISPENDR, SPI)
    cpu(gic, GICC_CTLR, 0b111)
    assert cpu(gic, GICC_IAR) == SPI
    cpu(gic, GICC_EOIR, SPI)
    # A disabled group is not forwarded (GIC 4.3.1).
    dist(gic, GICD_CTLR, 0b01)
    set_bit(gic, GICD_ISPENDR, SPI)
    assert not gic.irq_line()


def test_group0_with_fiqen_signals_fiq_not_irq() -> None:
    # GIC 4.4.1: FIQEn (bit 3) = 1 signals Group 0 interrupts as FIQ.
    gic = enabled_gic(cpu_ctlr=0b1001)
    pending_spi(gic, SPI, 0x80)
    assert gic.fiq_line() and not gic.irq_line()
    cpu(gic, GICC_CTLR, 0b0001)
    assert gic.irq_line() and not gic.fiq_line()


def test_apr_writes_set_the_running_priority() -> None:
    gic = enabled_gic()
    # GIC 4.4.12: software may restore GICC_APRn; bit n of GICC_APR0 is group
    # priority 2n.
    cpu(gic, GICC_APR, 1 << (0x20 >> 1))
    assert cpu(gic, GICC_RPR) == 0x20
    pending_spi(gic, SPI, 0x20)
    assert not gic.irq_line()
    cpu(gic, GICC_APR, 0)
    assert gic.irq_line()


# -- GICv2m --------------------------------------------------------------------------

def test_gicv2m_frame_reads_what_qemu_virt_returns() -> None:
    gic = Gic()
    # QEMU hw/intc/arm_gicv2m.c gicv2m_read(): MSI_TYPER = (base_spi + 32) << 16 |
    # num_spi, with hw/arm/virt.c a15irqmap[VIRT_GIC_V2M] = 48 and
    # NUM_GICV2M_SPIS = 64: first ID 80, 64 SPIs.
    assert gic.v2m_read(V2M_MSI_TYPER, 4) == 0x0050_0040
    # MSI_IIDR = PRODUCT_ID_QEMU (0x51) << 20.
    assert gic.v2m_read(V2M_MSI_IIDR, 4) == 0x0510_0000
    assert gic.v2m_read(0xFE8, 4) == 0  # no identification registers


def test_gicv2m_setspi_pulses_an_spi_of_the_frame() -> None:
    gic = enabled_gic()
    for irq in (80, 143, 100):
        set_bit(gic, GICD_ISENABLER, irq)
    offset, shift = divmod(80, 16)
    dist(gic, GICD_ICFGR + 4 * offset, 0b10 << (2 * shift))  # 80 edge-triggered
    gic.v2m_write(V2M_MSI_SETSPI_NS, 4, 80)
    assert is_set(gic, GICD_ISPENDR, 80)
    # Outside the frame's 80-143: ignored.
    gic.v2m_write(V2M_MSI_SETSPI_NS, 4, 79)
    gic.v2m_write(V2M_MSI_SETSPI_NS, 4, 144)
    assert not is_set(gic, GICD_ISPENDR, 79) and not is_set(gic, GICD_ISPENDR, 144)
    # A level-sensitive SPI sees a pulse of its line (QEMU qemu_irq_pulse())
    # and is not left pending.
    gic.v2m_write(V2M_MSI_SETSPI_NS, 4, 100)
    assert not is_set(gic, GICD_ISPENDR, 100)
    assert cpu(gic, GICC_IAR) == 80


# -- virtual interface control ----------------------------------------------------------

def test_gich_vtr_and_list_registers_as_qemu() -> None:
    gic = Gic()
    # QEMU gic_hyp_read(), A_GICH_VTR: ListRegs = num_lrs - 1 (4 LRs), PREbits =
    # GIC_VIRT_MAX_GROUP_PRIO_BITS - 1 = 4, PRIbits = (7 - GIC_VIRT_MIN_BPR) - 1 =
    # 4; GIC 5.3.2 fields [5:0], [28:26], [31:29].
    assert gic.hyp_read(GICH_VTR, 4) == 0x9000_0003
    assert (gic.hyp_read(GICH_VTR, 4) & 0x3F) + 1 == 4  # how Xen counts LRs
    # GIC 5.3.6: all four list registers empty at reset.
    assert gic.hyp_read(GICH_ELRSR0, 4) == 0xF
    assert gic.hyp_read(GICH_ELRSR0 + 4, 4) == 0
    # GIC 5.3.8: list registers hold what is written, reserved bits [22:20] clear.
    lr = (1 << 28) | (0xA << 23) | 27  # pending, priority 0x50, virtual ID 27
    gic.hyp_write(GICH_LR0 + 4, 4, lr | (0b111 << 20))
    assert gic.hyp_read(GICH_LR0 + 4, 4) == lr
    assert gic.hyp_read(GICH_ELRSR0, 4) == 0b1101
    # LRs beyond the fourth do not exist.
    gic.hyp_write(GICH_LR0 + 16, 4, lr)
    assert gic.hyp_read(GICH_LR0 + 16, 4) == 0
    gic.hyp_write(GICH_APR, 4, 0x8000_0001)
    assert gic.hyp_read(GICH_APR, 4) == 0x8000_0001


def test_gich_vmcr_keeps_the_virtual_interface_fields() -> None:
    gic = Gic()
    # GIC 5.3.3; QEMU resets the virtual BPR/ABPR to their minimums 2 and 3.
    assert gic.hyp_read(GICH_VMCR, 4) == (3 << 18) | (2 << 21)
    vmcr = (0x1F << 27) | (4 << 21) | (5 << 18) | 0x201
    gic.hyp_write(GICH_VMCR, 4, vmcr)
    assert gic.hyp_read(GICH_VMCR, 4) == vmcr
    gic.hyp_write(GICH_VMCR, 4, 0)
    assert gic.hyp_read(GICH_VMCR, 4) == (3 << 18) | (2 << 21)


def test_gich_misr_and_the_maintenance_interrupt() -> None:
    gic = enabled_gic()
    set_bit(gic, GICD_ISENABLER, MAINTENANCE_PPI)
    set_priority(gic, MAINTENANCE_PPI, 0x80)
    # GIC 5.3.4: NP ("no pending") holds with no pending list register, but
    # raises the maintenance interrupt only with GICH_HCR.En and NPIE.
    gic.hyp_write(GICH_HCR, 4, 1 << 3)
    assert gic.hyp_read(GICH_MISR, 4) == 1 << 3
    assert not gic.irq_line()
    gic.hyp_write(GICH_HCR, 4, (1 << 3) | 1)
    assert gic.irq_line()
    assert cpu(gic, GICC_IAR) == MAINTENANCE_PPI
    cpu(gic, GICC_EOIR, MAINTENANCE_PPI)
    # A pending list register clears NP, and the (level) interrupt goes away.
    gic.hyp_write(GICH_LR0, 4, (1 << 28) | 27)
    assert gic.hyp_read(GICH_MISR, 4) == 0
    assert not gic.irq_line()
    # EOI (GIC 5.3.5): an invalid, non-hardware LR with its EOI bit set.
    gic.hyp_write(GICH_LR0, 4, (1 << 19) | 27)
    assert gic.hyp_read(GICH_EISR0, 4) == 1
    assert gic.hyp_read(GICH_ELRSR0, 4) == 0b1110
    assert gic.hyp_read(GICH_MISR, 4) & 1
    gic.hyp_write(GICH_HCR, 4, 0)
    assert not gic.irq_line()


def test_gicv_reads_zero_and_ignores_writes() -> None:
    gic = Gic()
    gic.vcpu_write(0, 4, 1)
    assert gic.vcpu_read(0, 4) == 0
    assert gic.vcpu_read(0xFC, 4) == 0


# -- through the machine -----------------------------------------------------------------

GIC_PROGRAM = f"""
_start:
    ldr x0, ={GICD_BASE:#x}
    ldr x1, ={GICD_BASE + 0x1_0000:#x}
    mov w2, #1
    str w2, [x0]                        // GICD_CTLR: EnableGrp0
    ldr w3, [x0, #{GICD_TYPER:#x}]
    ldr w4, [x0, #{GICD_IIDR:#x}]
    mov w2, #0xa0
    strb w2, [x0, #{GICD_IPRIORITYR + SPI:#x}]
    ldrb w5, [x0, #{GICD_IPRIORITYR + SPI:#x}]
    mov w2, #{1 << (SPI % 32):#x}
    str w2, [x0, #{GICD_ISENABLER + 4 * (SPI // 32):#x}]
    str w2, [x0, #{GICD_ISPENDR + 4 * (SPI // 32):#x}]
    mov w2, #0xf0
    str w2, [x1, #{GICC_PMR:#x}]
    mov w2, #1
    str w2, [x1, #{GICC_CTLR:#x}]
    ldr w6, [x1, #{GICC_IAR:#x}]
    ldr w7, [x1, #{GICC_RPR:#x}]
    str w6, [x1, #{GICC_EOIR:#x}]
    ldr w8, [x1, #{GICC_RPR:#x}]
    ldr w9, [x1, #{GICC_IAR:#x}]
    ldr w10, [x0, #0xfe8]               // ICPIDR2
    ldr w11, [x1, #{GICC_PMR:#x}]
done:
    b done
.ltorg
"""


def test_boot_code_programs_the_gic_through_mmio(tables: Tables) -> None:
    image = build_image(GIC_PROGRAM, tables)
    machine = Machine(image)
    # A machine whose board has a GIC has attached one; otherwise attach it here.
    gic = getattr(machine.devices, "gic", None)
    if gic is None:
        gic = Gic()
        gic.attach(machine)
    stop = machine.run([image.symbols["done"]], max_insns=1000)
    assert stop.kind is StopKind.ARRIVED, stop.message
    values = {name: machine.reg(name) for name in
              ("x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11")}
    assert values == {"x3": 0x8, "x4": 0x43B, "x5": 0xA0, "x6": SPI, "x7": 0xA0,
                      "x8": 0xFF, "x9": 1023, "x10": 0x2B, "x11": 0xF0}
    assert not gic.active[SPI] and not gic.is_pending(SPI)
    assert not gic.irq_line()
