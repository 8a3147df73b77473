"""`bootemu debug` driven by the real gdb-multiarch (Debian), in batch mode.

Each test starts a server on asm/head.S (or a defect of it, or a small
program), connects gdb-multiarch with ``target remote`` and checks what GDB
prints.  Expected values come from outside bootemu: the source text (which
instruction, which line), the architecture (MSR writes its register; the
MMU-off write clears SCTLR_EL2.M, bit 0; an Arm watchpoint stops on the store
that writes the watched location), GNU objdump (the disassembly) and the defect
corpus (which rule a defect trips, at which instruction).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from emu.analysis.corpus import load_defects, materialize
from emu.debug import rsp

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "asm" / "head.S"
GDB = shutil.which("gdb-multiarch")
pytestmark = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed "
                                "(make tools installs Debian's)")
LOAD = 0x4000_0000
LINK = 0x80_0020_0000


def _line_of(text: str, needle: str, after: str | None = None) -> int:
    """The 1-based line number of the first line containing ``needle`` (after
    the line containing ``after``)."""
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next(i for i, line in enumerate(lines) if after in line) + 1
    return next(i for i in range(start, len(lines)) if needle in lines[i]) + 1


@contextmanager
def server(*args: str) -> Iterator[int]:
    """A ``bootemu debug --port 0`` process; yields its port."""
    process = subprocess.Popen([sys.executable, "-m", "emu.cli", "debug", "--port", "0", *args],
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, line
        yield int(match.group(1))
    finally:
        process.terminate()
        process.wait(timeout=10)


def gdb(port: int, *commands: str, elf: Path | None = None) -> str:
    argv = [str(GDB), "-batch", "-nx", "-ex", "set confirm off"]
    if elf is not None:
        argv.append(str(elf))
    argv += ["-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        argv += ["-ex", command]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def _value(output: str, name: str) -> int:
    """The value GDB printed for ``$N = 0x...`` number ``name``."""
    match = re.search(rf"^\${name} = (0x[0-9a-f]+|\d+)", output, re.MULTILINE)
    assert match, output
    return int(match.group(1), 0)


def test_stepping_through_the_mmu_off_and_back_over_the_ttbr_write() -> None:
    """Break at switch_ttbr_id by its physical address, step through steps 1-4
    of head.S's sequence, then reverse-stepi over the TTBR0_EL2 write."""
    text = HEAD.read_text()
    offset = 0x1000  # switch_ttbr_id is page-aligned, the image's second page
    start = _line_of(text, "switch_ttbr_id:")
    assert _line_of(text, "msr     TTBR0_EL2, x0", after="switch_ttbr_id:") - start > 0
    with server() as port:
        out = gdb(port, f"break *{LOAD + offset:#x}", "continue",
                  "p/x $pc", "p/x $SCTLR_EL2", "p/x $TTBR0_EL2",
                  "stepi 5", "p/x $pc", "p/x $SCTLR_EL2",       # dsb isb mrs bic msr: MMU off
                  "stepi 4", "p/x $pc", "p/x $x0",              # isb tlbi dsb isb
                  "stepi", "p/x $TTBR0_EL2",                    # msr TTBR0_EL2, x0
                  "reverse-stepi", "p/x $pc", "p/x $TTBR0_EL2")
    assert _value(out, "1") == LOAD + offset
    sctlr_on, ttbr_old = _value(out, "2"), _value(out, "3")
    assert sctlr_on & 1 == 1
    assert _value(out, "4") == LOAD + offset + 0x14
    assert _value(out, "5") == sctlr_on & ~1  # bic x1, x1, #SCTLR_M; msr SCTLR_EL2, x1
    assert _value(out, "6") == LOAD + offset + 0x24  # in front of msr TTBR0_EL2, x0
    new_table = _value(out, "7")
    assert new_table != ttbr_old
    assert _value(out, "8") == new_table
    assert _value(out, "9") == LOAD + offset + 0x24
    assert _value(out, "10") == ttbr_old


def test_a_symbol_breakpoint_names_head_s_lines_at_the_physical_alias(tmp_path: Path) -> None:
    elf = tmp_path / "head.elf"
    text = HEAD.read_text()
    line = _line_of(text, "dsb     sy", after="switch_ttbr_id:")
    with server("--elf", str(elf)) as port:
        out = gdb(port, "break switch_ttbr_id", "continue", "p/x $pc", "info line *$pc",
                  elf=elf)
    assert _value(out, "1") == LOAD + 0x1000
    assert re.search(rf'Line {line} of ".*head\.S"', out), out
    # The ELF describes both addresses: gdb itself set the breakpoint at both.
    assert re.search(r"Breakpoint 1(\.\d)?, switch_ttbr_id \(\)", out), out


def test_a_breakpoint_at_a_link_address_fires_at_its_physical_alias_and_says_so() -> None:
    with server() as port:
        out = gdb(port, f"break *{LINK + 0x1000:#x}", "continue", "p/x $pc")
    assert _value(out, "1") == LOAD + 0x1000
    assert (f"breakpoint at {LINK + 0x1000:#x} (switch_ttbr_id) hit at its physical alias "
            f"{LOAD + 0x1000:#x}") in out, out


def test_memory_at_the_va_and_in_physical_mode_is_the_same_code(tmp_path: Path) -> None:
    """At primary_switched the CPU runs at the link address; its bytes are at
    the load address (the image is linked at LINK, loaded at LOAD)."""
    elf = tmp_path / "head.elf"
    with server("--elf", str(elf)) as port:
        out = gdb(port, "break primary_switched", "continue", "p/x $pc", "x/4i $pc",
                  "x/4xw $pc", "maintenance packet Qqemu.PhyMemMode:1",
                  f"x/4i $pc - {LINK - LOAD:#x}", f"x/4xw $pc - {LINK - LOAD:#x}",
                  "monitor phys off", elf=elf)
    pc = _value(out, "1")
    assert LINK <= pc < LINK + 0x20_0000
    mnemonics = re.findall(r"^\s*(?:=> )?0x[0-9a-f]+(?: <[^>]*>)?:\s+([a-z]\w*)", out,
                           re.MULTILINE)
    words = re.findall(r"^0x[0-9a-f]+(?: <[^>]*>)?:((?:\s+0x[0-9a-f]{8}){4})$", out, re.MULTILINE)
    assert len(mnemonics) == 8 and len(words) == 2, out
    assert mnemonics[:4] == mnemonics[4:] and words[0] == words[1]
    # GNU objdump of the ELF at that link address shows the same first instruction.
    dump = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--start-address", hex(pc),
                           "--stop-address", hex(pc + 4), str(elf)],
                          capture_output=True, text=True, check=True).stdout
    assert re.search(rf"\s{mnemonics[0]}\s", dump), dump


def test_a_watchpoint_on_a_descriptor_stops_on_the_store_that_writes_it() -> None:
    """boot_pgtable is the first BSS page (PA 0x40002000); its entry 1 maps the
    link address's level-0 slot (0x80_0000_0000 >> 39 = 1) to boot_first, the
    next page: a table descriptor, 0x40003000 | 0b11."""
    descriptor = LOAD + 0x2008
    with server() as port:
        out = gdb(port, f"watch *(unsigned long *){descriptor:#x}", "continue", "continue",
                  "p/x $pc", "x/i $pc - 4")
    values = re.findall(r"New value = (\d+)", out)
    assert values[:2] == ["0", str(0x4000_3003)], out
    assert re.search(r":\s+str\s+x\d+, \[x\d+, x\d+, lsl #3\]", out), out


def test_monitor_commands_show_the_walk_the_tlb_and_the_regime() -> None:
    with server() as port:
        out = gdb(port, "break *0x40001000", "continue", f"monitor walk {LINK:#x}",
                  "monitor tlb", "monitor regime", "monitor timeline 3", "monitor findings",
                  "monitor help")
    assert f"walk of {LINK:#x} in the EL2 regime (MMU on)" in out
    assert re.search(r"level 2: .* block -> 0x40000000", out), out
    assert f"= PA {LOAD:#x}" in out
    assert "entries in the EL2 TLB" in out
    assert "EL2, EL2 regime, MMU on" in out
    assert "no findings so far" in out
    assert "walk VA" in out


def test_break_on_finding_stops_a_defect_at_its_rules_instruction(tmp_path: Path) -> None:
    """The corpus's ttbr-write-mmu-on writes TTBR0_EL2 with the MMU on: its
    rules (ttbr-switch-live among them) fire at that MSR."""
    defect = next(d for d in load_defects(ROOT / "fixtures" / "defects.toml")
                  if d.name == "ttbr-write-mmu-on")
    source = materialize(defect, HEAD, tmp_path)
    with server(str(source), "--break-on-finding") as port:
        out = gdb(port, "continue", "x/i $pc")
    assert re.search(r"\[(" + "|".join(defect.rules) + r")\]", out), out
    assert re.search(r"=> 0x[0-9a-f]+.*:\s+msr\s+ttbr0_el2, x0", out), out


def _is_reply(item: rsp.Item) -> bool:
    """A reply packet, not console output (``O`` + hex; ``OK`` is a reply)."""
    return isinstance(item, rsp.Packet) and (item.payload == b"OK" or item.payload[:1] != b"O")


def _exchange(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(rsp.encode_packet(payload))
    reader = rsp.PacketReader()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for item in reader.feed(sock.recv(4096)):
            if _is_reply(item):
                return item.payload
    raise AssertionError("no reply")


def test_bad_packets_get_errors_and_the_server_stays_up(tmp_path: Path) -> None:
    with server() as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"$g#00")  # bad checksum
        assert sock.recv(1) == b"-"
        assert _exchange(sock, b"mzz,4") == b"E01"
        assert _exchange(sock, b"m10,4") == b"E14"  # no memory at VA 0x10 (MMU off)
        assert _exchange(sock, b"Z9,0,4") == b"E01"
        assert _exchange(sock, b"?").startswith(b"T05")
    # A client that vanished mid-packet does not take the server down.
    with server() as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"$qSupp")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            assert b"qXfer:features:read+" in _exchange(sock, b"qSupported")


def test_ctrl_c_interrupts_a_running_guest(tmp_path: Path) -> None:
    source = tmp_path / "spin.S"
    source.write_text(".text\n.global _start\n_start:\n    add x0, x0, #1\n    b _start\n")
    with server(str(source), "--max-insns", str(10**12)) as port, \
            socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(rsp.encode_packet(b"c"))
        time.sleep(0.5)
        started = time.monotonic()
        sock.sendall(b"\x03")
        reply: bytes | None = None
        reader = rsp.PacketReader()
        while reply is None:
            for item in reader.feed(sock.recv(4096)):
                if _is_reply(item):
                    reply = item.payload
        assert reply.startswith(b"T02"), reply  # SIGINT, as QEMU reports a Ctrl-C
        assert time.monotonic() - started < 1.0
        # It ran: x0 counts the loop's iterations.
        assert int.from_bytes(bytes.fromhex(_exchange(sock, b"p0").decode()), "little") > 1000


def test_reverse_continue_goes_back_to_the_previous_breakpoint_hit(tmp_path: Path) -> None:
    """zero_bss's loop stores 16 bytes a turn with a post-indexed stp, from
    __bss_start's physical address (it runs with the MMU off): in front of the
    stp, x0 is __bss_start + 16 * k at the k-th hit."""
    elf = tmp_path / "head.elf"
    line = _line_of(HEAD.read_text(), "stp     xzr, xzr, [x0], #16", after="zero_bss:")
    with server("--elf", str(elf)) as port:
        out = gdb(port, f"break head.S:{line}", "continue", "p/x $x0", "continue",
                  "continue", "p/x $x0", "reverse-continue", "p/x $x0", "reverse-stepi",
                  "reverse-nexti", "p/x $x0", elf=elf)
    first = _value(out, "1")
    assert _value(out, "2") == first + 32
    assert _value(out, "3") == first + 16
    # Two instructions back from the stp are the loop's b.hs and cmp: x0 unchanged.
    assert _value(out, "4") == first + 16


def test_a_client_can_detach_and_another_finds_the_guest_where_it_was() -> None:
    with server() as port:
        first = gdb(port, "break *0x40001000", "continue", "p/x $pc", "detach")
        second = gdb(port, "p/x $pc", "p/x $TTBR0_EL2")
    assert _value(first, "1") == _value(second, "1") == LOAD + 0x1000
