"""Benchmark: real Debian images (Xen 4.17, Linux 6.1) against bare Unicorn and QEMU.

The images are Debian bookworm's arm64 packages, fetched and cached by
tests/debian.py: Xen 4.17's hypervisor (``xen-hypervisor-4.17-arm64``,
/boot/xen-4.17-arm64, an arm64 Image) and the generic Linux 6.1 kernel
(``linux-image-6.1.0-*-arm64``, /boot/vmlinuz-*, an EFI-stub arm64 Image).
Every boot is on the board QEMU's ``-M virt,virtualization=on,gic-version=2
-cpu cortex-a72`` gives: entry at EL2, RAM at 0x40000000.  Times are wall
clock, from building the machine (bootemu: ``Machine``/``check_image``, device
tree included; bare: ``Uc`` set-up) to the stop; reading the image file is not
counted.  "M/s" is millions of guest instructions per second of that time.

Xen 4.17 (RAM 2 GiB as QEMU's ``-m 2048``, bootargs
``console=dtuart dtuart=/pl011@9000000``), two rows:

* ``to first MMIO access``: the prefix both can run identically.  Bare Unicorn
  (no hooks at all, QEMU's own page-table walker, the same RAM, image, BSS
  fill, device tree and EL2 entry state as bootemu) runs from the entry until
  it faults on the first device access (the PL011, which it does not have);
  bootemu runs to the first arrival at that instruction.  The bench checks that
  both stop with the same registers (``identical``).  ``instructions`` is the
  true count, taken from the bare run twice (the native block counter, then
  Unicorn's own ``count`` stopping exactly there); bootemu's own count at that
  point is given beside it when it differs.
* ``budget #N``: ``bootemu check --until '#N'`` (and ``bootemu run``) over a
  fixed budget; Xen prints its banner, finds no dom0 kernel, panics and spins
  in its five-second reboot delay.  Bare Unicorn cannot go there (no UART, GIC
  or timer), so there is no ratio.

Columns: ``bare Unicorn``, ``bootemu run`` (the Python MMU model and devices,
no rules), ``bootemu check`` (every rule), each as time (M insn/s); then
``run / bare`` and ``check / bare``.

Linux 6.1 (RAM 1 GiB as ``-m 1024``, bootargs ``nokaslr console=ttyAMA0 earlycon``):

* bootemu ``run``, one machine, timed at the instruction budgets (10M, 30M)
  and at the console milestone ``Linux version`` (the banner; a console
  listener notes the time and instruction count when it is printed);
* QEMU 7.2 (``qemu-system-aarch64 -M virt,virtualization=on,gic-version=2
  -cpu cortex-a72 -m 1024 -nographic -nic none -kernel IMAGE -append ...
  -icount shift=0``: one instruction per virtual nanosecond, deterministic
  in-order TCG like bootemu), wall time from starting the process to the
  banner and to the root-fs panic ``VFS: Unable to mount root fs``.  ``QEMU
  start-up`` is the same command booting a three-instruction image that
  powers off through PSCI: the process's fixed cost;
* ``bootemu / QEMU`` at the banner, the one milestone both reach here.
  bootemu's time to the VFS panic is measured only with ``--vfs`` (capped by
  ``--cap`` seconds); otherwise, or when the cap is hit, it is not reached and
  the table says so.

The Linux bootemu run takes minutes, so it is run once whatever ``--repeat``
says; everything else is the best of ``--repeat`` runs.

Usage: python bench/bench_real.py [--repeat K] [--record FILE] [--quick]
                                  [--xen-budget N] [--xen-only] [--vfs] [--cap SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_PROT_ALL, Uc, UcError
from unicorn import arm64_const as a64

from emu.board.board import Board
from emu.board.cpu import UNICORN_MODELS
from emu.board.spec import BootSpec
from emu.checks.run import check_image
from emu.image.boot_image import BootImage
from emu.machine.counter import BlockCounter
from emu.machine.machine import PSTATE_EL2H, SCR_EL3_BOOT, Machine
from emu.machine.mmu import cp_reg
from emu.machine.stop import Stop, StopKind

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from debian import GENERIC_LINUX, XEN, debian_file  # noqa: E402

RAM_BASE = 0x4000_0000
GIB = 1 << 30
CPU = "cortex-a72"
XEN_BOOTARGS = "console=dtuart dtuart=/pl011@9000000"
# nokaslr: with KASLR (and so KPTI) the kernel still dies in gic_init_bases on
# bootemu, before its VFS panic; both machines get the same command line.
LINUX_BOOTARGS = "nokaslr console=ttyAMA0 earlycon"
BANNER = b"Linux version"
VFS_PANIC = b"VFS: Unable to mount root fs"
QEMU = "qemu-system-aarch64"
QEMU_TIMEOUT = 120.0

# x0-x30, SP, PC: what "identical" compares between bare Unicorn and bootemu.
_REGS = ([getattr(a64, f"UC_ARM64_REG_X{i}") for i in range(31)]
         + [a64.UC_ARM64_REG_SP, a64.UC_ARM64_REG_PC])


def _registers(uc: Uc) -> list[int]:
    return [uc.reg_read(reg) for reg in _REGS]


def load(path: Path, ram_size: int, bootargs: str) -> tuple[BootImage, Board]:
    spec = BootSpec(path, ram=(RAM_BASE, ram_size), bootargs=bootargs, cpu=CPU)
    return spec.load()


# -- bare Unicorn --------------------------------------------------------------


def bare_machine(image: BootImage, board: Board) -> Uc:
    """Unicorn with bootemu's memory and entry state and nothing else: no hooks,
    no devices, QEMU's own walker (UC_TLB_CPU, Unicorn's default)."""
    plan = board.plan(image)
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_cpu_model(UNICORN_MODELS[board.cpu])
    uc.mem_map(plan.ram_base, plan.ram_size, UC_PROT_ALL)
    for region in image.regions():
        uc.mem_write(region.physical, region.data)
    if image.bss:
        uc.mem_write(image.bss[0], b"\xa5" * (image.bss[1] - image.bss[0]))
    uc.mem_write(plan.dtb_address, plan.dtb)
    scr = cp_reg("SCR_EL3") + (SCR_EL3_BOOT,)
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, scr)
    uc.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE_EL2H)
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, scr)  # rebuilds the cached flags (unicorn #2333)
    uc.reg_write(a64.UC_ARM64_REG_X0, plan.dtb_address)
    for reg in (a64.UC_ARM64_REG_X1, a64.UC_ARM64_REG_X2, a64.UC_ARM64_REG_X3):
        uc.reg_write(reg, 0)
    uc.reg_write(a64.UC_ARM64_REG_PC, image.entry)
    return uc


@dataclass
class BareEnd:
    seconds: float
    pc: int
    error: str
    registers: list[int]


def bare_to_fault(image: BootImage, board: Board) -> BareEnd:
    """Bare Unicorn from the entry until it stops by itself (the first access to
    a device it does not have), timed with no hook installed."""
    uc = bare_machine(image, board)
    start = time.perf_counter()
    try:
        uc.emu_start(image.entry, 0)
        error = "no fault"
    except UcError as err:
        error = str(err)
    seconds = time.perf_counter() - start
    return BareEnd(seconds, uc.reg_read(a64.UC_ARM64_REG_PC), error, _registers(uc))


def bare_count(image: BootImage, board: Board, pc: int) -> int:
    """The true number of instructions bare Unicorn executes before it faults at
    ``pc``: counted by the native block counter, confirmed by Unicorn's own
    ``count`` (which must stop exactly at ``pc``, without the fault)."""
    uc = bare_machine(image, board)
    counter = BlockCounter()
    counter.install(uc)
    with contextlib.suppress(UcError):  # the fault ends the run
        uc.emu_start(image.entry, 0)
    if uc.reg_read(a64.UC_ARM64_REG_PC) != pc:
        raise RuntimeError("bare Unicorn does not fault at the same place twice")
    count = counter.index_at(pc)
    uc = bare_machine(image, board)
    uc.emu_start(image.entry, 0, 0, count)  # raises if the fault came earlier
    if uc.reg_read(a64.UC_ARM64_REG_PC) != pc:
        raise RuntimeError(f"Unicorn's count disagrees: {count} instructions end at "
                           f"{uc.reg_read(a64.UC_ARM64_REG_PC):#x}, not {pc:#x}")
    return count


# -- bootemu -------------------------------------------------------------------


def bootemu_run_to(image: BootImage, board: Board, pc: int) -> tuple[float, Stop, list[int]]:
    """``bootemu run --until ADDRESS``: seconds, the stop, the registers there."""
    start = time.perf_counter()
    machine = Machine(image, board)
    stop = machine.run([pc], max_insns=10**10)
    seconds = time.perf_counter() - start
    return seconds, stop, _registers(machine.uc)


def bootemu_run_budget(image: BootImage, board: Board, budget: int) -> tuple[float, Stop]:
    """``bootemu run --until '#N'`` (the budget is the target)."""
    start = time.perf_counter()
    machine = Machine(image, board)
    stop = machine.run(max_insns=budget)
    return time.perf_counter() - start, stop


def bootemu_check(image: BootImage, board: Board, until: str,
                  max_insns: int) -> tuple[float, int, str, int]:
    """``bootemu check --until TARGET``: seconds, instructions, verdict, findings."""
    start = time.perf_counter()
    run = check_image(image, until=until, max_insns=max_insns, board=board)
    seconds = time.perf_counter() - start
    return seconds, run.executed, run.verdict, len(run.findings)


@dataclass
class ConsoleRun:
    """One bootemu machine booting Linux, timed at budgets and console milestones."""

    setup_s: float = 0.0
    budgets: dict[int, float] = field(default_factory=dict)   # instructions -> seconds
    milestones: dict[bytes, tuple[float, int]] = field(default_factory=dict)  # (s, index)
    last: tuple[float, int] = (0.0, 0)                        # where the run ended
    cpu_s: float = 0.0                                        # this process's CPU time
    stop: str = ""


def bootemu_console_run(image: BootImage, board: Board, budgets: list[int],
                        wanted: list[bytes], cap_s: float, chunk: int = 1_000_000) -> ConsoleRun:
    """Run one machine through ``budgets`` (noting the time at each), then on in
    ``chunk`` steps until every ``wanted`` console text has been printed or
    ``cap_s`` seconds have passed (checked between steps: a step takes up to
    half a minute in Linux's slowest stretches); a console listener notes when each text
    appears and stops the run after the last one."""
    result = ConsoleRun()
    cpu = time.process_time()
    start = time.perf_counter()
    machine = Machine(image, board)
    result.setup_s = time.perf_counter() - start
    printed = bytearray()

    def listen(_device: str, data: bytes) -> None:
        printed.extend(data)
        for text in wanted:
            if text in result.milestones:
                continue
            if printed.find(text, max(0, len(printed) - len(data) - len(text))) >= 0:
                index = machine.index_now()
                result.milestones[text] = (time.perf_counter() - start, index)
                if all(t in result.milestones for t in wanted):
                    machine.request_stop(Stop(StopKind.ARRIVED, machine.pc, index,
                                              f"printed {text.decode()!r}"))

    machine.console.listeners.append(listen)
    targets = sorted(budgets)
    stop = None
    while True:
        if targets:
            budget = targets.pop(0)
        elif (all(t in result.milestones for t in wanted)
              or time.perf_counter() - start >= cap_s):
            break
        else:
            budget = machine.executed + chunk
        stop = machine.run(max_insns=budget)
        now = time.perf_counter() - start
        if stop.kind is StopKind.BUDGET:
            if budget in budgets:
                result.budgets[budget] = now
            continue
        break  # arrived at the last milestone, or the guest stopped
    result.last = (time.perf_counter() - start, machine.executed)
    result.cpu_s = time.process_time() - cpu
    result.stop = stop.message if stop is not None else ""
    return result


# -- QEMU ----------------------------------------------------------------------


def qemu_command(kernel: Path, ram_mib: int, append: str) -> list[str]:
    return [QEMU, "-M", "virt,virtualization=on,gic-version=2", "-cpu", CPU,
            "-m", str(ram_mib), "-nographic", "-nic", "none", "-no-reboot",
            "-kernel", str(kernel), "-append", append, "-icount", "shift=0"]


def qemu_milestones(kernel: Path, ram_mib: int, append: str,
                    wanted: list[bytes]) -> dict[bytes, float]:
    """Seconds from starting QEMU to each text of ``wanted`` on its console; the
    process is killed after the last one (or after QEMU_TIMEOUT)."""
    start = time.perf_counter()
    process = subprocess.Popen(qemu_command(kernel, ram_mib, append), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    printed = bytearray()
    seen: dict[bytes, float] = {}
    try:
        while len(seen) < len(wanted) and time.perf_counter() - start < QEMU_TIMEOUT:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if not ready:
                continue
            data = os.read(process.stdout.fileno(), 1 << 16)
            if not data:
                break
            printed.extend(data)
            now = time.perf_counter() - start
            for text in wanted:
                if text not in seen and text in printed:
                    seen[text] = now
    finally:
        process.kill()
        process.wait()
    return seen


def qemu_startup(scratch: Path) -> float:
    """Seconds for QEMU to start, run a three-instruction image that calls PSCI
    SYSTEM_OFF (``mov w0, #0x84000008; smc #0``) and exit."""
    image = scratch / "system-off.bin"
    image.write_bytes(struct.pack("<3I", 0x52800100, 0x72B08000, 0xD4000003))
    start = time.perf_counter()
    subprocess.run(qemu_command(image, 1024, "x"), stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=QEMU_TIMEOUT, check=True)
    return time.perf_counter() - start


# -- the tables ----------------------------------------------------------------


def cell(seconds: float | None, instructions: int) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.2f} s ({instructions / seconds / 1e6:.2f} M/s)"


def ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None:
        return "—"
    return f"{numerator / denominator:.1f}x"


def xen_rows(xen: Path, budget: int, repeat: int) -> tuple[list[str], list[str]]:
    image, board = load(xen, 2 * GIB, XEN_BOOTARGS)
    notes = []
    bares = [bare_to_fault(image, board) for _ in range(repeat)]
    fault = bares[0]
    if any(b.pc != fault.pc for b in bares):
        raise RuntimeError("bare Unicorn faults at different places")
    count = bare_count(image, board, fault.pc)
    bare_s = min(b.seconds for b in bares)
    runs = [bootemu_run_to(image, board, fault.pc) for _ in range(repeat)]
    run_s = min(seconds for seconds, _, _ in runs)
    _, stop, registers = runs[0]
    if stop.kind is not StopKind.ARRIVED:
        raise RuntimeError(f"bootemu did not arrive at {fault.pc:#x}: {stop.message}")
    identical = registers == fault.registers
    checks = [bootemu_check(image, board, f"{fault.pc:#x}", 10**10) for _ in range(repeat)]
    check_s = min(c[0] for c in checks)
    _, check_index, verdict, findings = checks[0]
    own = "" if stop.index == count else f" (bootemu counts {stop.index:,})"
    rows = [f"| Xen 4.17 to first MMIO access (PC {fault.pc:#x}) | {count:,}{own} | "
            f"{cell(bare_s, count)} | {cell(run_s, count)} | {cell(check_s, count)} | "
            f"{ratio(run_s, bare_s)} | {ratio(check_s, bare_s)} | "
            f"{'yes' if identical else 'NO'} |"]
    notes.append(f"Xen prefix: bare Unicorn stops with `{fault.error}` at PC {fault.pc:#x}; "
                 f"check verdict `{verdict}` ({findings} findings) at #{check_index:,}.")
    budget_runs = [bootemu_run_budget(image, board, budget) for _ in range(repeat)]
    brun_s = min(seconds for seconds, _ in budget_runs)
    bchecks = [bootemu_check(image, board, f"#{budget}", budget) for _ in range(repeat)]
    bcheck_s = min(c[0] for c in bchecks)
    rows.append(f"| Xen 4.17, budget #{budget:,} (to its panic and reboot delay) | {budget:,} | "
                f"— (faults at #{count:,}) | {cell(brun_s, budget)} | {cell(bcheck_s, budget)} | "
                f"— | — | — |")
    notes.append(f"Xen budget: `bootemu run` stopped: {budget_runs[0][1].message}; "
                 f"check verdict `{bchecks[0][2]}` ({bchecks[0][3]} findings).")
    return rows, notes


def linux_rows(linux: Path, budgets: list[int], repeat: int, vfs: bool,
               cap_s: float) -> tuple[list[str], list[str]]:
    image, board = load(linux, 1 * GIB, LINUX_BOOTARGS)
    notes = []
    wanted = [BANNER, VFS_PANIC] if vfs else [BANNER]
    with tempfile.TemporaryDirectory() as scratch:
        startup = min(qemu_startup(Path(scratch)) for _ in range(repeat))
    qemus = [qemu_milestones(linux, 1024, LINUX_BOOTARGS, [BANNER, VFS_PANIC])
             for _ in range(repeat)]

    def best(text: bytes) -> float | None:
        times = [q[text] for q in qemus if text in q]
        return min(times) if times else None

    q_banner, q_vfs = best(BANNER), best(VFS_PANIC)
    ran = bootemu_console_run(image, board, budgets, wanted, cap_s)
    rows = []
    for budget in sorted(budgets):
        seconds = ran.budgets.get(budget)
        rows.append(f"| Linux 6.1 `run`, budget #{budget:,} | {cell(seconds, budget)} | — | — |")
    banner = ran.milestones.get(BANNER)
    if banner is None:
        rows.append(f"| Linux 6.1 to `Linux version` | not reached in {ran.last[0]:.0f} s "
                    f"(#{ran.last[1]:,}) | {q_banner:.2f} s | — |")
    else:
        rows.append(f"| Linux 6.1 to `Linux version` (bootemu #{banner[1]:,}) | "
                    f"{cell(banner[0], banner[1])} | {q_banner:.2f} s | "
                    f"{ratio(banner[0], q_banner)} |")
    vfs_at = ran.milestones.get(VFS_PANIC)
    q_vfs_text = f"{q_vfs:.2f} s" if q_vfs is not None else "not reached"
    if vfs_at is not None:
        rows.append(f"| Linux 6.1 to `VFS: Unable to mount root fs` (bootemu #{vfs_at[1]:,}) | "
                    f"{cell(vfs_at[0], vfs_at[1])} | {q_vfs_text} | {ratio(vfs_at[0], q_vfs)} |")
    else:
        why = (f"not reached: stopped after {ran.last[0]:.0f} s at #{ran.last[1]:,} (cap)"
               if vfs else "not run (no --vfs)")
        rows.append(f"| Linux 6.1 to `VFS: Unable to mount root fs` | {why} | {q_vfs_text} | — |")
    rows.append(f"| QEMU start-up (PSCI SYSTEM_OFF after 3 instructions) | — | "
                f"{startup:.2f} s | — |")
    notes.append(f"Linux: bootemu machine set-up {ran.setup_s:.2f} s; the run ended at "
                 f"#{ran.last[1]:,} after {ran.last[0]:.1f} s wall, {ran.cpu_s:.1f} s CPU "
                 f"({ran.stop}).")
    if banner is not None and budgets:
        before = [b for b in sorted(budgets) if b <= banner[1]]
        if before:
            b0 = before[-1]
            span = banner[1] - b0
            secs = banner[0] - ran.budgets[b0]
            notes.append(f"Linux: from #{b0:,} to the banner (#{banner[1]:,}): "
                         f"{span:,} instructions in {secs:.1f} s ({span / secs / 1e6:.3f} M/s).")
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3,
                        help="best of K runs (the long Linux bootemu run is done once)")
    parser.add_argument("--record", type=Path, default=None,
                        help="append the results as a Markdown section to this file")
    parser.add_argument("--quick", action="store_true",
                        help="one run each, Xen budget 5M, Linux budget 10M only (banner "
                             "not waited for), a few minutes")
    parser.add_argument("--xen-budget", type=int, default=20_000_000)
    parser.add_argument("--xen-only", action="store_true",
                        help="only the Xen rows (a minute or two, no Linux run)")
    parser.add_argument("--linux-budgets", default="10000000,30000000",
                        help="comma list of instruction budgets for the Linux bootemu run")
    parser.add_argument("--vfs", action="store_true",
                        help="run bootemu on to Linux's VFS panic (capped by --cap)")
    parser.add_argument("--cap", type=float, default=600.0,
                        help="seconds after which the Linux bootemu run gives up on a milestone")
    args = parser.parse_args()
    if shutil.which(QEMU) is None:
        sys.exit(f"bench_real: {QEMU} is not installed")
    budgets = [int(b) for b in args.linux_budgets.split(",") if b]
    if args.quick:
        args.repeat, args.xen_budget, budgets, args.vfs, args.cap = 1, 5_000_000, [10_000_000], \
            False, 0.0
    xen = debian_file(XEN, "boot/xen-4.17-arm64")
    linux = debian_file(GENERIC_LINUX, "boot/vmlinuz-6.1.0-*-arm64")
    load_before = os.getloadavg()[0]
    wall = time.perf_counter()
    xen_table, xen_notes = xen_rows(xen, args.xen_budget, args.repeat)
    linux_table, linux_notes = ([], []) if args.xen_only else linux_rows(
        linux, budgets, args.repeat, args.vfs, args.cap)
    wall = time.perf_counter() - wall
    load_after = os.getloadavg()[0]
    header = [
        f"## {datetime.date.today()} — real Debian images (bench_real.py), "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, best of {args.repeat}",
        "",
        f"Images: `{xen.parent.parent.name[2:]}` {xen.name}"
        + ("" if args.xen_only else f", `{linux.parent.parent.name[2:]}` {linux.name}")
        + f"; the bench took {wall:.0f} s; "
        f"1-minute load average {load_before:.1f} at the start, {load_after:.1f} at the end.",
        "",
        "| Xen run | instructions | bare Unicorn | bootemu run | bootemu check | "
        "run / bare | check / bare | identical |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    linux_header = [
        "",
        "| Linux run | bootemu run | QEMU -icount shift=0 | bootemu / QEMU |",
        "|---|---:|---:|---:|",
    ]
    notes = [""] + [f"* {note}" for note in xen_notes + linux_notes]
    if args.xen_only:
        linux_header = []
    text = "\n".join(header + xen_table + linux_header + linux_table + notes) + "\n"
    print(text)
    if args.record:
        with args.record.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
