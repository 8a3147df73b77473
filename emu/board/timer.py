"""The Arm generic timer of one CPU, driven by virtual time instead of the host's
clock, so that a run is the same every time.

Virtual time advances one nanosecond per instruction executed, and jumps
forward while the CPU idles in WFI (see :meth:`GenericTimer.skip_to`).  The
system counter runs at QEMU virt's 62.5 MHz (one tick every 16 ns), so a
guest reads CNTFRQ_EL0 and computes delays exactly as under QEMU.

Three timers are modelled (DDI 0487 D11.2 "The AArch64 view of the Generic
Timer"): the EL1 physical timer (CNTP_*), the virtual timer (CNTV_*, offset
by CNTVOFF_EL2) and the EL2 physical timer (CNTHP_*).  Each drives a PPI of
the interrupt controller: a timer's output is high while it is enabled, not
masked (IMASK) and its condition holds (counter >= CVAL).  The numbers are
QEMU virt's, which its device tree advertises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

COUNTER_HZ = 62_500_000
NS_PER_TICK = 1_000_000_000 // COUNTER_HZ  # 16
MASK64 = (1 << 64) - 1

# CNTx_CTL bits (D13.8.x): ENABLE, IMASK, ISTATUS (read-only).
CTL_ENABLE, CTL_IMASK, CTL_ISTATUS = 1, 2, 4

# Interrupt IDs (PPI 16 + n): QEMU virt's ARCH_TIMER_*_IRQ + 16.
PPI_HYP_PHYS = 26
PPI_VIRT = 27
PPI_PHYS = 30


@dataclass
class _Timer:
    """One timer: its control bits the guest wrote, its compare value, its PPI."""

    prefix: str
    ppi: int
    virtual: bool
    ctl: int = 0
    cval: int = 0


class GenericTimer:
    """The system counter and the EL1 physical, virtual and EL2 physical timers.

    ``executed`` reports how many instructions the CPU has executed; virtual
    time is that plus whatever :meth:`skip_to` added while the CPU idled.
    """

    def __init__(self, executed: Callable[[], int]) -> None:
        self._executed = executed
        self.idle_ns = 0
        self.cntvoff = 0
        self.timers = (_Timer("CNTP", PPI_PHYS, False), _Timer("CNTV", PPI_VIRT, True),
                       _Timer("CNTHP", PPI_HYP_PHYS, False))
        self._by_prefix = {timer.prefix: timer for timer in self.timers}
        # Registers that only hold what the guest wrote (trap and access controls).
        self._plain = {"CNTKCTL_EL1": 0, "CNTHCTL_EL2": 0}

    # -- time ------------------------------------------------------------------

    def now_ns(self) -> int:
        """Virtual nanoseconds since reset."""
        return self._executed() + self.idle_ns

    def count(self) -> int:
        """The physical count (CNTPCT_EL0)."""
        return self.now_ns() // NS_PER_TICK

    def skip_to(self, ns: int) -> None:
        """Let virtual time jump forward to ``ns`` while the CPU executes nothing."""
        self.idle_ns += max(0, ns - self.now_ns())

    # -- registers -------------------------------------------------------------

    def handles(self, name: str) -> bool:
        """Whether ``name`` is a register of this device."""
        return name in _REGISTERS

    def read(self, name: str) -> int:
        """MRS of a timer register."""
        if name == "CNTFRQ_EL0":
            return COUNTER_HZ
        if name == "CNTPCT_EL0":
            return self.count()
        if name == "CNTVCT_EL0":
            return (self.count() - self.cntvoff) & MASK64
        if name == "CNTVOFF_EL2":
            return self.cntvoff
        if name in self._plain:
            return self._plain[name]
        timer, field = self._timer_field(name)
        now = self._timer_count(timer)
        if field == "CTL":
            status = CTL_ISTATUS if timer.ctl & CTL_ENABLE and now >= timer.cval else 0
            return (timer.ctl & (CTL_ENABLE | CTL_IMASK)) | status
        if field == "CVAL":
            return timer.cval
        return (timer.cval - now) & 0xFFFF_FFFF  # TVAL: CVAL - count, 32 bits

    def write(self, name: str, value: int) -> None:
        """MSR of a timer register (CNTFRQ and the counters are read-only here)."""
        if name == "CNTVOFF_EL2":
            self.cntvoff = value & MASK64
            return
        if name in self._plain:
            self._plain[name] = value
            return
        if name in ("CNTFRQ_EL0", "CNTPCT_EL0", "CNTVCT_EL0"):
            return  # CNTFRQ is firmware's to set; QEMU's is fixed, so is ours
        timer, field = self._timer_field(name)
        if field == "CTL":
            timer.ctl = value & (CTL_ENABLE | CTL_IMASK)
        elif field == "CVAL":
            timer.cval = value & MASK64
        else:
            # TVAL writes set CVAL = count + SignExtend(TVAL<31:0>) (D11.2.4).
            offset = value & 0xFFFF_FFFF
            if offset & 0x8000_0000:
                offset -= 1 << 32
            timer.cval = (self._timer_count(timer) + offset) & MASK64

    # -- outputs ---------------------------------------------------------------

    def levels(self) -> dict[int, bool]:
        """Each timer's interrupt output, by PPI number."""
        return {timer.ppi: self._asserted(timer) for timer in self.timers}

    def next_deadline_ns(self) -> int | None:
        """The virtual time at which the next enabled, unmasked timer fires (None: never)."""
        deadlines = []
        for timer in self.timers:
            if timer.ctl & CTL_ENABLE and not timer.ctl & CTL_IMASK:
                cval = timer.cval + (self.cntvoff if timer.virtual else 0)
                if cval <= MASK64 // NS_PER_TICK:
                    deadlines.append(cval * NS_PER_TICK)
        return min(deadlines) if deadlines else None

    def _asserted(self, timer: _Timer) -> bool:
        return (timer.ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE
                and self._timer_count(timer) >= timer.cval)

    def _timer_count(self, timer: _Timer) -> int:
        return (self.count() - self.cntvoff) & MASK64 if timer.virtual else self.count()

    def _timer_field(self, name: str) -> tuple[_Timer, str]:
        prefix, _, rest = name.partition("_")
        return self._by_prefix[prefix], rest.split("_")[0]


_REGISTERS = frozenset({
    "CNTFRQ_EL0", "CNTPCT_EL0", "CNTVCT_EL0", "CNTVOFF_EL2", "CNTKCTL_EL1", "CNTHCTL_EL2",
    "CNTP_CTL_EL0", "CNTP_CVAL_EL0", "CNTP_TVAL_EL0",
    "CNTV_CTL_EL0", "CNTV_CVAL_EL0", "CNTV_TVAL_EL0",
    "CNTHP_CTL_EL2", "CNTHP_CVAL_EL2", "CNTHP_TVAL_EL2",
})
