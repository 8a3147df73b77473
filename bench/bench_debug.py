"""Benchmark: the GDB server's round trips and its continue, side by side with checking.

* ``stepi round trip``: a client on a TCP socket sends what gdb-multiarch
  sends for one ``stepi`` (``vCont;s:1``, then ``g`` and ``m pc,4`` for the
  frame it shows) and waits for each reply; the time per stepi, median and
  95th percentile over ``--steps`` steps through head.S's boot.  (The raw
  ``s`` packet alone is given too.)
* ``continue to a breakpoint``: a breakpoint at ``bench_done`` (after the
  spin loop of bench_check.py, ``--spin`` iterations after start_c), then
  ``c``: wall time to the stop reply, against ``check_image`` running the
  same image to the same place in the same process (check mode: the machine,
  every rule).  The server's machine has every rule attached too.

Usage: python bench/bench_debug.py [--steps N] [--spin N] [--repeat K]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_check import build  # noqa: E402

from emu.board.board import Board  # noqa: E402
from emu.checks.run import check_image  # noqa: E402
from emu.debug import rsp  # noqa: E402
from emu.debug.server import GdbConnection  # noqa: E402
from emu.debug.session import DebugSession  # noqa: E402


class Client:
    """A minimal RSP client over a socket pair to an in-process server thread."""

    def __init__(self, session: DebugSession) -> None:
        self.sock, server_side = socket.socketpair()
        self._thread = threading.Thread(
            target=GdbConnection(server_side, session, lambda _text: None).serve, daemon=True)
        self._thread.start()
        self._reader = rsp.PacketReader()

    def ask(self, payload: bytes) -> bytes:
        self.sock.sendall(rsp.encode_packet(payload))
        while True:
            for item in self._reader.feed(self.sock.recv(65536)):
                if isinstance(item, rsp.Packet) and (item.payload == b"OK"
                                                      or item.payload[:1] != b"O"):
                    self.sock.sendall(b"+")
                    return item.payload

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=10)


def stepping(steps: int) -> tuple[list[float], list[float]]:
    """Seconds per gdb-like stepi (s, g, m) and per bare ``s``."""
    image = build(0)
    client = Client(DebugSession(image, Board()))
    gdb_like, bare = [], []
    for i in range(steps):
        start = time.perf_counter()
        if i % 2:
            client.ask(b"s")
            bare.append(time.perf_counter() - start)
            continue
        client.ask(b"vCont;s:1")
        registers = client.ask(b"g")
        pc = int.from_bytes(bytes.fromhex(registers[32 * 16:33 * 16].decode()), "little")
        client.ask(f"m{pc:x},4".encode())
        gdb_like.append(time.perf_counter() - start)
    client.close()
    return gdb_like, bare


def continuing(spin: int) -> tuple[float, float, int]:
    """(server continue seconds, check_image seconds, instructions) to bench_done."""
    image = build(spin)
    done = image.symbols["bench_done"]
    start = time.perf_counter()
    session = DebugSession(image, Board(), max_insns=10**12)
    client = Client(session)
    client.ask(f"Z0,{done:x},4".encode())
    reply = client.ask(b"c")
    served = time.perf_counter() - start
    assert reply.startswith(b"T05"), reply
    executed = session.index
    client.close()
    start = time.perf_counter()
    run = check_image(image, until="bench_done", max_insns=10**12)
    checked = time.perf_counter() - start
    assert run.stop.index == executed, (run.stop.index, executed)
    return served, checked, executed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--spin", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of K continues [3]")
    args = parser.parse_args()
    gdb_like, bare = stepping(args.steps)

    def ms(values: list[float], q: float) -> str:
        return f"{statistics.quantiles(values, n=100)[q - 1] * 1e3:.2f} ms"

    print("| round trip | steps | median | 95th percentile |")
    print("|---|---:|---:|---:|")
    print(f"| stepi as gdb sends it (vCont;s:1, g, m) | {len(gdb_like)} | {ms(gdb_like, 50)} "
          f"| {ms(gdb_like, 95)} |")
    print(f"| bare s | {len(bare)} | {ms(bare, 50)} | {ms(bare, 95)} |")
    runs = [continuing(args.spin) for _ in range(args.repeat)]
    served = min(r[0] for r in runs)
    checked = min(r[1] for r in runs)
    executed = runs[0][2]
    print()
    print("| run | instructions | server continue | check_image | continue / check |")
    print("|---|---:|---:|---:|---:|")
    print(f"| head.S + spin {args.spin} to a breakpoint | {executed:,} | {served:.3f} s "
          f"| {checked:.3f} s | {served / checked:.2f}x |")


if __name__ == "__main__":
    main()
