"""The GDB server: `bootemu debug` speaks GDB's remote serial protocol over TCP.

One client at a time, in GDB's all-stop mode.  A reader thread takes the
client's bytes off the socket (so a Ctrl-C arrives while the guest runs) and
queues the packets; the main thread answers them and runs the guest.  What it
answers, as QEMU's gdbstub does where QEMU has the same packet:

* ``qSupported`` (``qXfer:features:read+``, ``vContSupported+``,
  ``ReverseStep+``, ``ReverseContinue+``), the target description
  (:mod:`emu.debug.target`), ``?``, thread queries for one thread;
* registers ``g``/``G``/``p``/``P``; memory ``m``/``M``/``X`` at virtual
  addresses as the CPU translates them now (bootemu's MMU model and TLB), or
  physical after ``maintenance packet Qqemu.PhyMemMode:1``;
* ``Z0``/``Z1`` breakpoints, ``Z2``-``Z4`` watchpoints; ``c``, ``s``,
  ``vCont``, ``bc``/``bs`` (reverse), Ctrl-C; ``k`` (back to reset), ``D``;
* ``qRcmd`` (``monitor``): ``walk VA``, ``tlb``, ``timeline [N]``,
  ``findings``, ``regime``, ``phys on|off``, ``help``.

A malformed packet gets an error reply (``E01``); a client that vanishes ends
its connection, not the server, which waits for the next one.

A :class:`Shutdown` ends the server from another thread (``bootemu debug``'s
signal watchdog, on SIGINT or SIGTERM): it wakes the wait for a connection,
ends the client's connection and stops a running guest, so :func:`serve`
closes its sockets and returns within a translation block.  A client's own
Ctrl-C (the ``0x03`` byte) only stops the guest, as before.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
from collections.abc import Callable

from emu.debug import rsp
from emu.debug.session import FINAL_STOPS, DebugSession, StopReport
from emu.debug.target import BY_NUMBER, G_PACKET, Register, target_xml
from emu.machine.debugging import WatchKind
from emu.machine.machine import MemoryAccessError

_WATCH_KINDS = {2: WatchKind.WRITE, 3: WatchKind.READ, 4: WatchKind.ACCESS}
_WATCH_WORDS = {WatchKind.WRITE: "watch", WatchKind.READ: "rwatch", WatchKind.ACCESS: "awatch"}
_SUPPORTED = (b"PacketSize=4000;qXfer:features:read+;vContSupported+;"
              b"ReverseStep+;ReverseContinue+")
_ERROR = b"E01"
_MEMORY_ERROR = b"E14"  # EFAULT, what QEMU answers for memory it cannot access
_READ_CHUNK = 4096

MONITOR_HELP = """\
monitor commands (bootemu):
  walk VA        translate VA in the current regime, level by level
  tlb            the architectural TLB's entries (stale ones marked)
  timeline [N]   the last N MMU events (default 20)
  findings       what the rules found so far
  regime         the current EL and translation registers
  phys on|off    memory accesses by physical address (as QEMU's PhyMemMode)
"""


class _Disconnected(Exception):
    """The client went away."""


class Shutdown:
    """A request, from any thread, that :func:`serve` end: it stops waiting for
    a connection, the client's connection ends (no reply is sent after it) and
    the guest stops wherever it runs; ``serve`` then closes its sockets and
    returns.  ``had_client``: whether a client was connected when it came."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = False
        self.had_client = False
        self._session: DebugSession | None = None
        self._client: socket.socket | None = None
        self._wake: socket.socket | None = None  # written to wake serve's wait

    @property
    def requested(self) -> bool:
        return self._requested

    def request(self) -> None:
        """End the server (safe from any thread, and more than once)."""
        with self._lock:
            if self._requested:
                return
            self._requested = True
            self.had_client = self._client is not None
            # The client's socket first: a reply the stopped guest would give
            # then fails, and the connection's reader sees its end.
            if self._client is not None:
                with contextlib.suppress(OSError):
                    self._client.shutdown(socket.SHUT_RDWR)
            if self._session is not None:
                self._session.shut_down()
            if self._wake is not None:
                with contextlib.suppress(OSError):
                    self._wake.send(b"!")

    def _attach(self, session: DebugSession, wake: socket.socket) -> bool:
        """Serve's start: False if the end was asked already."""
        with self._lock:
            self._session, self._wake = session, wake
            if self._requested:
                session.shut_down()
            return not self._requested

    def _detach(self) -> None:
        with self._lock:
            self._session = self._wake = None

    def _connected(self, sock: socket.socket | None) -> bool:
        """A client's connection begins (``sock``) or ends (None); False if the
        end was asked already."""
        with self._lock:
            self._client = sock
            return not self._requested


class GdbConnection:
    """One client's connection: packets in, replies out, Ctrl-C noticed while running."""

    def __init__(self, sock: socket.socket, session: DebugSession,
                 log: Callable[[str], None], shutdown: Shutdown | None = None) -> None:
        self._sock = sock
        self._session = session
        self._log = log
        self._shutdown = shutdown
        self._items: queue.Queue[rsp.Item | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        parser = rsp.PacketReader()
        try:
            while True:
                data = self._sock.recv(_READ_CHUNK)
                if not data:
                    break
                for item in parser.feed(data):
                    if isinstance(item, rsp.Interrupt):
                        self._session.interrupt()
                    self._items.put(item)
        except OSError:
            pass
        self._items.put(None)  # the client is gone
        self._session.interrupt()

    def _send(self, payload: bytes) -> None:
        try:
            self._sock.sendall(rsp.encode_packet(payload))
        except OSError:
            raise _Disconnected() from None

    def _console(self, text: str) -> None:
        """Text for GDB's console (an ``O`` packet)."""
        for start in range(0, len(text), 512):
            self._send(b"O" + rsp.to_hex(text[start:start + 512].encode()).encode())

    def serve(self) -> None:
        """Answer packets until the client detaches, kills or vanishes."""
        self._reader.start()
        try:
            while True:
                item = self._items.get()
                if item is None or (self._shutdown is not None and self._shutdown.requested):
                    return
                if isinstance(item, rsp.BadPacket):
                    self._sock.sendall(b"-")
                    continue
                if isinstance(item, rsp.Packet):
                    self._sock.sendall(b"+")
                    if not self._answer(item.payload):
                        return
                # Acks, Nacks and a Ctrl-C while stopped need no answer.
        except (_Disconnected, OSError):
            return
        finally:
            with contextlib.suppress(OSError):
                self._sock.close()

    # -- packets ---------------------------------------------------------------

    def _answer(self, packet: bytes) -> bool:
        """Answer one packet; False ends the connection."""
        try:
            reply = self._dispatch(packet)
        except rsp.PacketError as err:
            self._log(f"bad packet {packet[:40]!r}: {err}")
            reply = _ERROR
        if reply is None or (self._shutdown is not None and self._shutdown.requested):
            return False  # (the guest stopped for the server's end: no stop reply)
        self._send(reply)
        return True

    def _dispatch(self, packet: bytes) -> bytes | None:
        session = self._session
        head, args = packet[:1], packet[1:]
        if packet == b"?":
            return self._stop_reply(session.last)
        if head == b"q" or head == b"Q":
            return self._query(packet)
        if head == b"g":
            return b"".join(self._register_hex(r).encode() for r in G_PACKET)
        if head == b"G":
            data = rsp.hex_bytes(args)
            offset = 0
            for register in G_PACKET:
                chunk = data[offset:offset + register.size]
                if len(chunk) == register.size:
                    session.write_register(register.name, int.from_bytes(chunk, "little"))
                offset += register.size
            return b"OK"
        if head == b"p":
            register = self._register(args)
            return self._register_hex(register).encode()
        if head == b"P":
            number, value = rsp.parse_register_write(args)
            register = BY_NUMBER.get(number)
            if register is None:
                return _ERROR
            try:
                session.write_register(register.name,
                                       rsp.parse_le_hex(value, register.size))
            except ValueError:
                return _ERROR
            return b"OK"
        if head == b"m":
            address, length = rsp.parse_memory_read(args)
            try:
                return rsp.to_hex(session.read_memory(address, length)).encode()
            except MemoryAccessError:
                return _MEMORY_ERROR
        if head in (b"M", b"X"):
            parse = rsp.parse_memory_write if head == b"M" else rsp.parse_binary_write
            address, data = parse(args)
            try:
                if data:
                    session.write_memory(address, data)
            except MemoryAccessError:
                return _MEMORY_ERROR
            return b"OK"
        if head in (b"Z", b"z"):
            return self._breakpoint(head == b"Z", args)
        if head in (b"c", b"C"):
            return self._resume(step=False)
        if head in (b"s", b"S"):
            return self._resume(step=True)
        if packet.startswith(b"vCont"):
            return self._vcont(packet)
        if packet == b"bc":
            return self._after_stop(session.reverse_continue())
        if packet == b"bs":
            return self._after_stop(session.reverse_step())
        if head == b"H":
            return b"OK"
        if head == b"T":
            return b"OK"  # thread 1 is alive
        if head == b"k":
            session.restart()
            return None
        if head == b"D":
            self._send(b"OK")
            return None
        return b""  # not supported

    def _query(self, packet: bytes) -> bytes:
        session = self._session
        if packet.startswith(b"qSupported"):
            return _SUPPORTED
        if packet.startswith(b"qXfer:"):
            obj, annex, offset, length = rsp.parse_qxfer(packet[len(b"qXfer"):])
            if obj != "features" or annex != "target.xml":
                return b"E00"
            return rsp.qxfer_reply(target_xml(), offset, length)
        if packet == b"qAttached":
            return b"1"
        if packet == b"qC":
            return b"QC1"
        if packet == b"qfThreadInfo":
            return b"m1"
        if packet == b"qsThreadInfo":
            return b"l"
        if packet.startswith(b"qRcmd"):
            command = rsp.parse_rcmd(packet[len(b"qRcmd"):])
            self._console(self._monitor(command))
            return b"OK"
        if packet.startswith(b"Qqemu.PhyMemMode:"):
            session.physical = packet.endswith(b":1")
            return b"OK"
        if packet == b"qqemu.PhyMemMode":
            return b"1" if session.physical else b"0"
        return b""

    def _register(self, args: bytes) -> Register:
        try:
            number = int(args.decode("ascii"), 16)
        except (UnicodeDecodeError, ValueError):
            raise rsp.PacketError(f"register number {args[:20]!r} is not hex") from None
        register = BY_NUMBER.get(number)
        if register is None:
            raise rsp.PacketError(f"no register {number}")
        return register

    def _register_hex(self, register: Register) -> str:
        name = "pstate" if register.name == "cpsr" else register.name
        try:
            value = self._session.read_register(name)
        except Exception:  # a register Unicorn cannot read: GDB shows it unavailable
            return "xx" * register.size
        return rsp.le_hex(value & ((1 << register.bits) - 1), register.size)

    def _breakpoint(self, insert: bool, args: bytes) -> bytes:
        session = self._session
        kind, address, length = rsp.parse_breakpoint(args)
        if kind in (0, 1):
            if insert:
                session.add_breakpoint(address)
            else:
                session.remove_breakpoint(address)
            return b"OK"
        watch = _WATCH_KINDS[int(kind)]
        if insert:
            session.add_watchpoint(address, max(length, 1), watch)
        else:
            session.remove_watchpoint(address, max(length, 1), watch)
        return b"OK"

    def _vcont(self, packet: bytes) -> bytes:
        if packet == b"vCont?":
            return b"vCont;c;C;s;S"
        actions = rsp.parse_vcont(packet[len(b"vCont"):])
        step = any(action.action in ("s", "S", "r") for action in actions)
        return self._resume(step=step)

    def _resume(self, *, step: bool) -> bytes:
        return self._after_stop(self._session.resume(step=step))

    def _after_stop(self, report: StopReport) -> bytes:
        if report.finding is not None:
            finding = report.finding
            self._console(f"bootemu: [{finding.rule}] #{finding.index} at {finding.pc:#x} "
                          f"({finding.symbol}): {finding.message}\n")
        elif report.stop.kind.value not in ("arrived", "stepped", "watchpoint", "interrupted"):
            self._console(f"bootemu: {report.stop.message}\n")
        else:
            alias = self._session.breakpoint_alias(report.stop.pc)
            if alias is not None:
                self._console(f"bootemu: {alias}\n")
        return self._stop_reply(report)

    def _stop_reply(self, report: StopReport) -> bytes:
        stop = report.stop
        if stop.kind in FINAL_STOPS:
            return f"W{(stop.status or 0) & 0xFF:02x}".encode()
        # SIGINT for a client's Ctrl-C, as QEMU reports it; SIGTRAP otherwise.
        signal = 2 if stop.kind.value == "interrupted" else 5
        reply = f"T{signal:02x}thread:01;"
        if report.watchpoint is not None and report.watch_address is not None:
            reply += f"{_WATCH_WORDS[report.watchpoint.kind]}:{report.watch_address:x};"
        if report.history_begin:
            reply += "replaylog:begin;"
        return reply.encode()

    def _monitor(self, command: str) -> str:
        session = self._session
        words = command.split()
        if not words or words[0] == "help":
            return MONITOR_HELP
        verb, rest = words[0], words[1:]
        try:
            if verb == "walk" and len(rest) == 1:
                return session.walk(int(rest[0], 0))
            if verb == "tlb":
                return session.tlb()
            if verb == "timeline":
                return session.timeline(int(rest[0], 0) if rest else 20)
            if verb == "findings":
                return session.findings_text()
            if verb == "regime":
                return session.regime_text()
            if verb == "phys" and rest and rest[0] in ("on", "off"):
                session.physical = rest[0] == "on"
                return f"memory accesses are {'physical' if session.physical else 'virtual'}\n"
        except ValueError as err:
            return f"monitor {command}: {err}\n"
        return f"unknown monitor command {command!r}\n{MONITOR_HELP}"


def serve(session: DebugSession, host: str, port: int, *,
          on_listening: Callable[[int], None] = lambda _port: None,
          log: Callable[[str], None] = lambda _text: None, once: bool = False,
          shutdown: Shutdown | None = None) -> None:
    """Listen on ``host:port`` (port 0: any free port) and serve clients one after
    another; ``on_listening`` is told the port.  With ``once``, return after the
    first client leaves; on ``shutdown`` (from another thread), return at once,
    the sockets closed."""
    shutdown = shutdown or Shutdown()
    if shutdown.requested:
        return
    wake_read, wake_write = socket.socketpair()
    try:
        if not shutdown._attach(session, wake_write):
            return
        with socket.create_server((host, port)) as server:
            server.setblocking(False)  # accept only what select saw; never blocks
            on_listening(server.getsockname()[1])
            while not shutdown.requested:
                readable, _, _ = select.select([server, wake_read], [], [])
                if wake_read in readable:
                    return
                try:
                    sock, peer = server.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue  # the connection went away before it was taken
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if not shutdown._connected(sock):
                    sock.close()
                    return
                log(f"client {peer[0]}:{peer[1]} connected")
                try:
                    GdbConnection(sock, session, log, shutdown).serve()
                finally:
                    shutdown._connected(None)
                if shutdown.requested:
                    return
                log("client left")
                if once:
                    return
    finally:
        shutdown._detach()
        wake_read.close()
        wake_write.close()
