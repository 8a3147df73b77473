"""Benchmark: what one Python TLB fill costs, the floor under checking speed.

bootemu's MMU model is Python: Unicorn runs in ``UC_TLB_VIRTUAL`` mode and
calls a Python hook for every softmmu page (1 KiB) it has not translated
since its last flush.  However little that hook does, each call crosses from
C into Python.  This bench measures the crossing alone, side by side in one
run, on the same guest code:

* ``bare``: Unicorn with its own TLB (QEMU's walker; the MMU is off, so it
  maps VA to PA itself), no hooks;
* ``identity hook``: ``UC_TLB_VIRTUAL`` with a Python fill hook that does the
  least a hook can do (map the page to itself, all permissions) - no walk,
  no model.

The guest zeroes ``--mib`` MiB with one store per 64 bytes (the shape of a
boot's memset: Xen 4.17 zeroes 28 MiB with DC ZVA), so every 1 KiB page is
filled exactly once.  ``per fill`` is the difference divided by the fills.
Multiplying it by the fills of a real boot (bootemu's ``MmuUnit.fills``)
gives the least time any Python MMU model adds to that boot.

Usage: python bench/bench_fill.py [--mib N] [--repeat K]
"""

from __future__ import annotations

import argparse
import time

from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks
from unicorn import (
    UC_ARCH_ARM64,
    UC_HOOK_TLB_FILL,
    UC_MODE_ARM,
    UC_PROT_ALL,
    UC_TLB_VIRTUAL,
    Uc,
)

CODE = 0x4000_0000
BUFFER = 0x4100_0000
SOFTMMU_PAGE = 1024
LINE = 64


def program(size: int) -> bytes:
    """Store zero to every 64-byte line of [BUFFER, BUFFER + size), then stop."""
    source = f"""
        movz x2, #{BUFFER >> 16}, lsl #16
        movz x3, #{(size // LINE) >> 16}, lsl #16
        movk x3, #{(size // LINE) & 0xFFFF}
    loop:
        str  xzr, [x2], #{LINE}
        subs x3, x3, #1
        b.ne loop
    """
    encoding, _ = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN).asm(source, CODE)
    return bytes(encoding)


def run(size: int, with_hook: bool) -> tuple[float, int]:
    """Seconds to run the program (machine set-up excluded), and fills made."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    code = program(size)
    uc.mem_map(CODE, 0x1000, UC_PROT_ALL)
    uc.mem_map(BUFFER, size, UC_PROT_ALL)
    uc.mem_write(CODE, code)
    fills = 0
    if with_hook:
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)

        def identity(_uc: Uc, va: int, _access: int, entry, _user_data) -> bool:
            nonlocal fills
            fills += 1
            entry.paddr = va & ~(SOFTMMU_PAGE - 1)
            entry.perms = UC_PROT_ALL
            return True

        uc.hook_add(UC_HOOK_TLB_FILL, identity)
    start = time.perf_counter()
    uc.emu_start(CODE, CODE + len(code))
    return time.perf_counter() - start, fills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=28, help="MiB the guest zeroes [28]")
    parser.add_argument("--repeat", type=int, default=5, help="best of K runs [5]")
    args = parser.parse_args()
    size = args.mib << 20
    bare = min(run(size, with_hook=False)[0] for _ in range(args.repeat))
    hooked, fills = min(run(size, with_hook=True) for _ in range(args.repeat))
    per_fill = (hooked - bare) / fills
    print("| guest | fills | bare Unicorn | identity hook | hook / bare | per fill |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| zero {args.mib} MiB, one store per {LINE} B | {fills:,} | {bare * 1e3:.1f} ms "
          f"| {hooked * 1e3:.1f} ms | {hooked / bare:.2f}x | {per_fill * 1e6:.2f} us |")


if __name__ == "__main__":
    main()
