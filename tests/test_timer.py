"""The generic timer on virtual time, against the Arm ARM's definitions.

DDI 0487 D11.2 "The AArch64 view of the Generic Timer": a timer's condition
is met when the counter reaches CVAL; TVAL reads CVAL - counter (32 bits,
signed) and a TVAL write sets CVAL = counter + SignExtend(TVAL); ISTATUS
reports the condition while the timer is enabled; the output is asserted when
enabled, not masked and the condition holds.  The frequency is QEMU virt's
62.5 MHz (target/arm/cpu.h GTIMER_SCALE: 16 ns a tick), which QEMU's CNTFRQ
reports.
"""

from __future__ import annotations

from emu.board.timer import PPI_HYP_PHYS, PPI_PHYS, PPI_VIRT, GenericTimer


class Clock:
    """Instructions executed, as the machine would report them."""

    def __init__(self) -> None:
        self.executed = 0


def timer_on(clock: Clock) -> GenericTimer:
    return GenericTimer(lambda: clock.executed)


def test_counter_runs_at_62_5_mhz_of_virtual_time() -> None:
    clock = Clock()
    timer = timer_on(clock)
    assert timer.read("CNTFRQ_EL0") == 62_500_000
    clock.executed = 1_000_000  # 1 ms at one instruction a nanosecond
    assert timer.read("CNTPCT_EL0") == 62_500


def test_virtual_count_is_physical_minus_cntvoff() -> None:
    clock = Clock()
    timer = timer_on(clock)
    clock.executed = 16 * 1000
    timer.write("CNTVOFF_EL2", 400)
    assert timer.read("CNTVCT_EL0") == 600


def test_tval_write_sets_cval_relative_to_the_counter_and_reads_back_the_difference() -> None:
    clock = Clock()
    timer = timer_on(clock)
    clock.executed = 16 * 100
    timer.write("CNTHP_TVAL_EL2", 50)
    assert timer.read("CNTHP_CVAL_EL2") == 150
    clock.executed = 16 * 120
    assert timer.read("CNTHP_TVAL_EL2") == 30
    clock.executed = 16 * 160
    assert timer.read("CNTHP_TVAL_EL2") == (-10) & 0xFFFF_FFFF  # past due: negative


def test_negative_tval_is_sign_extended() -> None:
    clock = Clock()
    timer = timer_on(clock)
    clock.executed = 16 * 100
    timer.write("CNTP_TVAL_EL0", (-20) & 0xFFFF_FFFF)
    assert timer.read("CNTP_CVAL_EL0") == 80


def test_istatus_and_the_output_follow_enable_imask_and_the_condition() -> None:
    clock = Clock()
    timer = timer_on(clock)
    timer.write("CNTV_CVAL_EL0", 10)
    assert timer.read("CNTV_CTL_EL0") == 0  # disabled: ISTATUS is 0
    timer.write("CNTV_CTL_EL0", 1)
    assert timer.read("CNTV_CTL_EL0") == 1 and not timer.levels()[PPI_VIRT]
    clock.executed = 16 * 10
    assert timer.read("CNTV_CTL_EL0") == 0b101 and timer.levels()[PPI_VIRT]
    timer.write("CNTV_CTL_EL0", 0b11)  # masked: condition still reported, output low
    assert timer.read("CNTV_CTL_EL0") == 0b111 and not timer.levels()[PPI_VIRT]
    assert not timer.levels()[PPI_PHYS] and not timer.levels()[PPI_HYP_PHYS]


def test_deadline_is_the_earliest_enabled_unmasked_timer_and_idling_reaches_it() -> None:
    clock = Clock()
    timer = timer_on(clock)
    assert timer.next_deadline_ns() is None
    timer.write("CNTP_CVAL_EL0", 1000)
    timer.write("CNTP_CTL_EL0", 1)
    timer.write("CNTHP_CVAL_EL2", 500)
    timer.write("CNTHP_CTL_EL2", 0b11)  # masked: no interrupt, no deadline
    assert timer.next_deadline_ns() == 16 * 1000
    timer.skip_to(16 * 1000)
    assert timer.read("CNTPCT_EL0") == 1000 and timer.levels()[PPI_PHYS]
    timer.skip_to(0)  # time never runs backwards
    assert timer.read("CNTPCT_EL0") == 1000


def test_virtual_timer_deadline_accounts_for_cntvoff() -> None:
    clock = Clock()
    timer = timer_on(clock)
    timer.write("CNTVOFF_EL2", 100)
    timer.write("CNTV_CVAL_EL0", 50)
    timer.write("CNTV_CTL_EL0", 1)
    # Fires when CNTPCT - CNTVOFF reaches 50, i.e. at a physical count of 150.
    assert timer.next_deadline_ns() == 16 * 150
