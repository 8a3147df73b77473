"""GDB Remote Serial Protocol packets: framing, escaping, and argument parsing.

This is the wire layer of ``bootemu debug`` and knows nothing of the machine.
A packet on the wire is ``$`` *payload* ``#`` *checksum*: the checksum is two
hex digits, the sum modulo 256 of the payload bytes as sent.  Inside a payload
the bytes ``$``, ``#``, ``}`` and ``*`` are escaped as ``}`` followed by the
byte XOR 0x20 (GDB manual, "Remote Protocol", "Overview" and "Binary Data").
Outside packets a client sends ``+`` (received), ``-`` (resend) and a lone
0x03 byte (Ctrl-C, "Interrupts").

:class:`PacketReader` turns the bytes a client sends into :data:`Item`\\ s;
:func:`encode_packet` frames a reply.  The ``parse_*`` functions take the
*arguments* of one packet - its payload after the packet's name, separator
included: ``b"4015bc,2"`` for ``m4015bc,2``, ``b";s:1;c"`` for
``vCont;s:1;c``, ``b":features:read:target.xml:0,ffb"`` for ``qXfer:...`` -
and raise :class:`PacketError`, never anything else, when the arguments are
malformed or ask for more than a server should give (see the ``MAX_``
bounds): a packet is input from the network.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TypeAlias

MAX_PACKET = 1 << 20
"""Default bound on a received payload, in bytes as sent (escapes counted).

A server can advertise it as ``PacketSize`` in its ``qSupported`` reply: GDB
counts the framing in that size too, so its packets always fit."""

MAX_MEMORY = 1 << 20
"""Most bytes one ``m``, ``M`` or ``X`` packet may move, and the bound on
``qXfer`` lengths and breakpoint/watchpoint kinds: no argument of a packet can
make the server allocate more than about this much."""

MAX_REGISTER = 256
"""Most bytes of a ``P`` register value: an SVE Z register at the architecture's
largest vector length (2048 bits)."""

MAX_REGNUM = 0xFFFF
"""Largest register number a ``P`` packet may name: target descriptions number
registers densely from 0, so anything larger is garbage."""

MAX_VCONT_ACTIONS = 256
"""Most actions one ``vCont`` packet may carry: GDB sends one per thread (here,
per CPU) plus a default, so this is generous and keeps the list small."""

_ADDRESS_MAX = (1 << 64) - 1  # addresses and offsets are 64-bit quantities

_HEX_DIGITS = b"0123456789abcdefABCDEF"
_ESCAPE = 0x7D  # '}'
_DOLLAR, _HASH, _PLUS, _MINUS, _CTRL_C = b"$", b"#", b"+", b"-", b"\x03"

# Bytes that must be escaped in anything we send: '$' and '#' would frame a
# packet, '}' is the escape itself, and '*' would start GDB's run-length
# encoding when it reads a reply.
_NEEDS_ESCAPE = re.compile(rb"[$#}*]")
# What a reader looks for: outside a packet, the bytes that mean something;
# inside one, the bytes that end it.  Searching with a regular expression
# keeps a megabyte packet, or a megabyte of line noise, out of a Python loop.
_OUTSIDE = re.compile(rb"[$+\-\x03]")
_FRAMING = re.compile(rb"[$#]")


class PacketError(ValueError):
    """A malformed packet argument; the message is one line naming what is wrong."""


# ---------------------------------------------------------------------------
# Framing


def checksum(payload: bytes) -> int:
    """The RSP checksum of ``payload`` as sent: the sum of its bytes modulo 256."""
    return sum(payload) & 0xFF


def escape(payload: bytes) -> bytes:
    """``payload`` with ``$``, ``#``, ``}`` and ``*`` escaped as ``}`` and byte ^ 0x20."""
    return _NEEDS_ESCAPE.sub(lambda match: bytes((_ESCAPE, match[0][0] ^ 0x20)), payload)


def encode_packet(payload: bytes) -> bytes:
    """The packet carrying ``payload``: ``$``, escaped payload, ``#``, two lowercase hex digits.

    The checksum covers the escaped bytes, as the receiver sums what it reads.
    """
    body = escape(bytes(payload))
    return b"$" + body + b"#%02x" % checksum(body)


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet whose checksum matched; ``payload`` has its ``}`` escapes undone."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A lone 0x03 byte outside a packet: the user pressed Ctrl-C in GDB."""


@dataclass(frozen=True, slots=True)
class Ack:
    """A ``+``: the client received the server's last packet intact."""


@dataclass(frozen=True, slots=True)
class Nack:
    """A ``-``: the client received the server's last packet damaged and wants it again."""


@dataclass(frozen=True, slots=True)
class BadPacket:
    """A packet that arrived damaged; the server answers ``-`` and GDB resends it.

    ``reason`` is a few words: ``"checksum mismatch"``, ``"checksum is not
    hex"``, ``"too long"``, ``"unterminated packet"`` (a ``$`` began another
    packet before this one's ``#``), ``"truncated checksum"``,
    ``"run-length encoding"`` (an unescaped ``*``: GDB clients never compress)
    or ``"escape at end of packet"``.
    """

    reason: str


Item: TypeAlias = Packet | Interrupt | Ack | Nack | BadPacket
"""What :meth:`PacketReader.feed` reports, in the order the bytes arrived."""


class _State(enum.Enum):
    OUTSIDE = enum.auto()           # between packets
    PAYLOAD = enum.auto()           # after '$', collecting the payload
    CHECKSUM = enum.auto()          # after '#', collecting two checksum digits
    DISCARD = enum.auto()           # inside a packet already reported too long
    DISCARD_CHECKSUM = enum.auto()  # that packet's checksum, skipped unreported


class PacketReader:
    """Incremental parser of the byte stream a GDB client sends.

    Feed it bytes as they arrive, split anywhere; it keeps the state of an
    unfinished packet between calls and holds at most ``max_packet`` bytes of
    it.  A packet longer than that is reported once, as
    ``BadPacket("too long")``, as soon as it crosses the bound; the rest of it
    is dropped unstored, and reading resumes at its ``#`` and checksum or at
    the next ``$``, whichever comes first.  Bytes outside packets other than
    ``$``, ``+``, ``-`` and 0x03 are ignored (line noise, or a client's
    stray newline).  Inside a packet 0x03 is data: ``X`` packets carry binary
    and GDB does not escape it.
    """

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        if max_packet < 1:
            raise ValueError(f"max_packet must be positive, not {max_packet}")
        self.max_packet = max_packet
        self._state = _State.OUTSIDE
        self._raw = bytearray()       # the current payload as sent, escapes and all
        self._digits = bytearray()    # the checksum digits read so far

    @property
    def pending(self) -> int:
        """Bytes held for an unfinished packet (never more than ``max_packet``)."""
        return len(self._raw)

    def feed(self, data: bytes) -> list[Item]:
        """Consume ``data`` and return the items it completed, in order."""
        data = bytes(data)
        items: list[Item] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state is _State.OUTSIDE:
                match = _OUTSIDE.search(data, pos)
                if match is None:
                    break
                pos = match.end()
                byte = match[0]
                if byte == _DOLLAR:
                    self._begin()
                elif byte == _PLUS:
                    items.append(Ack())
                elif byte == _MINUS:
                    items.append(Nack())
                else:
                    items.append(Interrupt())
            elif state is _State.PAYLOAD or state is _State.DISCARD:
                match = _FRAMING.search(data, pos)
                stop = end if match is None else match.start()
                if state is _State.PAYLOAD:
                    # Check the bound before copying, so a flood is never stored.
                    if len(self._raw) + (stop - pos) > self.max_packet:
                        items.append(BadPacket("too long"))
                        self._raw = bytearray()
                        self._state = _State.DISCARD
                    else:
                        self._raw += data[pos:stop]
                if match is None:
                    break
                pos = stop + 1
                if match[0] == _DOLLAR:
                    # '$' is always escaped inside a payload, so a bare one means
                    # this packet lost its end and a new one starts here.
                    if self._state is _State.PAYLOAD:
                        items.append(BadPacket("unterminated packet"))
                    self._begin()
                else:
                    self._digits.clear()
                    self._state = (_State.CHECKSUM if self._state is _State.PAYLOAD
                                   else _State.DISCARD_CHECKSUM)
            else:
                byte = data[pos:pos + 1]
                pos += 1
                if byte == _DOLLAR:
                    if state is _State.CHECKSUM:
                        items.append(BadPacket("truncated checksum"))
                    self._begin()
                    continue
                self._digits += byte
                if len(self._digits) == 2:
                    if state is _State.CHECKSUM:
                        items.append(self._finish())
                    self._raw = bytearray()
                    self._state = _State.OUTSIDE
        return items

    def _begin(self) -> None:
        self._raw = bytearray()
        self._state = _State.PAYLOAD

    def _finish(self) -> Packet | BadPacket:
        digits = bytes(self._digits)
        if digits.translate(None, _HEX_DIGITS):
            return BadPacket("checksum is not hex")
        if int(digits, 16) != checksum(self._raw):
            return BadPacket("checksum mismatch")
        return _unescape(bytes(self._raw))


def _unescape(raw: bytes) -> Packet | BadPacket:
    """The packet whose payload was sent as ``raw``, or why it cannot be one."""
    out = bytearray()
    pos = 0
    while True:
        found = raw.find(b"}", pos)
        literal = raw[pos:] if found < 0 else raw[pos:found]
        # Only an unescaped '*' starts run-length encoding; "}*" is the byte 0x0a.
        if b"*" in literal:
            return BadPacket("run-length encoding")
        out += literal
        if found < 0:
            return Packet(bytes(out))
        if found + 1 == len(raw):
            return BadPacket("escape at end of packet")
        out.append(raw[found + 1] ^ 0x20)
        pos = found + 2


# ---------------------------------------------------------------------------
# Hex


def hex_bytes(text: bytes | str) -> bytes:
    """The bytes spelled by hex digit pairs ``text`` (either case).

    Raises PacketError on an odd length or a non-hex character; unlike
    ``bytes.fromhex`` it does not skip spaces.
    """
    return _hex_data(_ascii(text, "hex data"), "hex data")


def to_hex(data: bytes) -> str:
    """``data`` as lowercase hex digit pairs, as memory and ``qRcmd`` replies carry it."""
    return bytes(data).hex()


def le_hex(value: int, size: int) -> str:
    """``value`` as ``size`` little-endian bytes in hex: a register in a ``g`` or ``p`` reply.

    Raises ValueError (a server bug, not a bad packet) if it does not fit.
    """
    if size < 1 or not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{value:#x} does not fit in {size} bytes")
    return value.to_bytes(size, "little").hex()


def parse_le_hex(text: bytes | str, size: int) -> int:
    """The register value spelled by exactly ``size`` little-endian hex bytes ``text``."""
    data = _hex_data(_ascii(text, "register value"), "register value")
    if len(data) != size:
        raise PacketError(f"register value: {len(data)} bytes, expected {size}")
    return int.from_bytes(data, "little")


# ---------------------------------------------------------------------------
# Packet arguments


class BreakpointType(enum.IntEnum):
    """The *type* of a ``Z``/``z`` packet."""

    SOFTWARE = 0
    HARDWARE = 1
    WRITE_WATCH = 2
    READ_WATCH = 3
    ACCESS_WATCH = 4


@dataclass(frozen=True, slots=True)
class VContAction:
    """One action of a ``vCont`` packet.

    ``action`` is ``"c"`` (continue), ``"C"`` (continue with ``signal``),
    ``"s"`` (step), ``"S"`` (step with ``signal``), ``"t"`` (stop) or ``"r"``
    (step while ``start <= pc < end``; an empty range when ``end <= start``).
    ``thread`` is the thread it applies to: ``None`` for every thread no
    earlier action named (no thread-id, ``-1``, or ``pPID`` / ``pPID.-1``), 0
    for any one thread, else the thread number (the TID of a ``pPID.TID``
    form: bootemu is one process).
    """

    action: str
    thread: int | None = None
    signal: int | None = None
    start: int | None = None
    end: int | None = None


def parse_memory_read(args: bytes | str) -> tuple[int, int]:
    """``(address, length)`` of ``m addr,length``; ``args`` like ``b"4015bc,2"``."""
    address_field, length_field = _fields(_ascii(args, "m"), b",", 2, "m", "addr,length")
    address = _hex_int(address_field, "m: address", _ADDRESS_MAX)
    length = _hex_int(length_field, "m: length", MAX_MEMORY)
    _check_range(address, length, "m")
    return address, length


def parse_memory_write(args: bytes | str) -> tuple[int, bytes]:
    """``(address, data)`` of ``M addr,length:XX...``; the data must be ``length`` bytes."""
    text = _ascii(args, "M")
    head, colon, hex_data = text.partition(b":")
    if not colon:
        raise PacketError("M: expected addr,length:data")
    address, length = _address_length(head, "M")
    # Compare lengths before decoding, so a lie costs nothing to refuse.
    if len(hex_data) != 2 * length:
        raise PacketError(f"M: {len(hex_data)} hex digits for length {length:#x}")
    return address, _hex_data(hex_data, "M: data")


def parse_binary_write(args: bytes) -> tuple[int, bytes]:
    """``(address, data)`` of ``X addr,length:binary``; an empty write is GDB's probe.

    ``args`` comes from a :class:`Packet` payload, whose escapes are already
    undone, so the binary is taken as is, colons and all.
    """
    if isinstance(args, str):
        args = _ascii(args, "X")
    head, colon, data = bytes(args).partition(b":")
    if not colon:
        raise PacketError("X: expected addr,length:data")
    address, length = _address_length(_ascii(head, "X"), "X")
    if len(data) != length:
        raise PacketError(f"X: {len(data)} bytes of data for length {length:#x}")
    return address, data


def parse_breakpoint(args: bytes | str) -> tuple[BreakpointType, int, int]:
    """``(type, address, kind)`` of ``Z``/``z`` *type,addr,kind*; ``args`` like ``b"0,400000,4"``.

    *kind* is the instruction size for breakpoints (4 for A64) and the watched
    length for watchpoints.  Condition and command lists after ``;`` are
    ignored: the server evaluates none.
    """
    head = _ascii(args, "Z").partition(b";")[0]
    type_field, address_field, kind_field = _fields(head, b",", 3, "Z", "type,addr,kind")
    kind_type = BreakpointType(_hex_int(type_field, "Z: type", 4))
    address = _hex_int(address_field, "Z: address", _ADDRESS_MAX)
    kind = _hex_int(kind_field, "Z: kind", MAX_MEMORY)
    return kind_type, address, kind


def parse_register_write(args: bytes | str) -> tuple[int, str]:
    """``(regnum, hexvalue)`` of ``P n=value`` (``args`` like ``b"1f=0011223344556677"``).

    ``hexvalue`` is checked to be whole hex bytes but left as text, as only
    the server knows the register's size: decode it with :func:`parse_le_hex`.
    """
    regnum_field, value = _fields(_ascii(args, "P"), b"=", 2, "P", "n=value")
    regnum = _hex_int(regnum_field, "P: register number", MAX_REGNUM)
    if not value:
        raise PacketError("P: empty value")
    if len(value) > 2 * MAX_REGISTER:
        raise PacketError(f"P: value longer than {MAX_REGISTER} bytes")
    _hex_data(value, "P: value")
    return regnum, value.decode("ascii")


def parse_vcont(args: bytes | str) -> list[VContAction]:
    """The actions of ``vCont;action[:thread-id]...``; ``args`` like ``b";s:1;c"``.

    As the GDB manual requires, there must be at least one action and at most
    one default (one whose ``thread`` is None).  ``vCont?`` is a different
    packet and is not parsed here.
    """
    text = _ascii(args, "vCont")
    if not text.startswith(b";"):
        raise PacketError("vCont: expected ';' before the first action")
    fields = text[1:].split(b";")
    if len(fields) > MAX_VCONT_ACTIONS:
        raise PacketError(f"vCont: more than {MAX_VCONT_ACTIONS} actions")
    actions = [_vcont_action(field) for field in fields]
    if sum(action.thread is None for action in actions) > 1:
        raise PacketError("vCont: more than one default action")
    return actions


def parse_qxfer(args: bytes | str) -> tuple[str, str, int, int]:
    """``(object, annex, offset, length)`` of ``qXfer:object:read:annex:offset,length``.

    ``args`` is like ``b":features:read:target.xml:0,ffb"``; the annex may be
    empty.  Only reads are parsed: a ``write`` raises PacketError.
    """
    text = _ascii(args, "qXfer")
    if not text.startswith(b":"):
        raise PacketError("qXfer: expected ':' after qXfer")
    parts = text[1:].split(b":", 2)
    if len(parts) != 3:
        raise PacketError("qXfer: expected object:read:annex:offset,length")
    name, operation, rest = parts
    if not name:
        raise PacketError("qXfer: empty object name")
    if operation != b"read":
        raise PacketError(f"qXfer: operation {_show(operation)} is not read")
    # The annex is a name and could hold a ':'; the range is after the last one.
    annex, colon, span = rest.rpartition(b":")
    if not colon:
        raise PacketError("qXfer: expected annex:offset,length")
    offset_field, length_field = _fields(span, b",", 2, "qXfer", "offset,length")
    offset = _hex_int(offset_field, "qXfer: offset", _ADDRESS_MAX)
    length = _hex_int(length_field, "qXfer: length", MAX_MEMORY)
    if length == 0:
        # A zero-length chunk could only be answered by an empty 'm', which
        # GDB takes for an error, or 'l', which would be a lie.
        raise PacketError("qXfer: length is zero")
    return name.decode("ascii"), annex.decode("ascii"), offset, length


def qxfer_reply(document: bytes, offset: int, length: int) -> bytes:
    """The reply payload to a ``qXfer`` read of ``document``: ``m`` or ``l`` and a chunk.

    ``m`` says more follows; ``l`` says the chunk ends the document (and a bare
    ``l`` answers a read at or past its end).  The chunk is raw: pass the reply
    to :func:`encode_packet`, which escapes it.
    """
    if offset < 0 or length < 1:
        raise ValueError(f"qXfer chunk at {offset:#x} of length {length:#x}")
    chunk = document[offset:offset + length]
    more = offset + len(chunk) < len(document)
    return (b"m" if more else b"l") + chunk


def parse_rcmd(args: bytes | str) -> str:
    """The command of ``qRcmd,hex`` (``args`` like ``b",68656c70"``), as text.

    GDB hex-encodes whatever follows ``monitor``; bytes that are not UTF-8
    become U+FFFD rather than failing the command.
    """
    text = _ascii(args, "qRcmd")
    if not text.startswith(b","):
        raise PacketError("qRcmd: expected ',' after qRcmd")
    return _hex_data(text[1:], "qRcmd: command").decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------
# Helpers: each turns one kind of malformation into a PacketError.


def _show(field: bytes) -> str:
    """A short, one-line rendering of a field for an error message."""
    text = repr(field[:24].decode("latin-1"))
    return text + "..." if len(field) > 24 else text


def _ascii(args: bytes | str, what: str) -> bytes:
    """``args`` as bytes, refusing text that is not ASCII (nothing in RSP is)."""
    text = args.encode("utf-8", errors="replace") if isinstance(args, str) else bytes(args)
    if not text.isascii():
        raise PacketError(f"{what}: non-ASCII arguments")
    return text


def _fields(text: bytes, separator: bytes, count: int, what: str,
            form: str) -> list[bytes]:
    fields = text.split(separator)
    if len(fields) != count:
        raise PacketError(f"{what}: expected {form}, got {_show(text)}")
    return fields


def _hex_int(field: bytes, what: str, limit: int) -> int:
    """The hex number ``field``, at most ``limit``.

    Checked digit by digit because ``int(x, 16)`` also accepts signs,
    underscores, spaces and a ``0x`` prefix.
    """
    if not field or field.translate(None, _HEX_DIGITS):
        raise PacketError(f"{what} is not a hex number: {_show(field)}")
    value = int(field, 16)
    if value > limit:
        raise PacketError(f"{what} {_show(field)} is above {limit:#x}")
    return value


def _hex_data(text: bytes, what: str) -> bytes:
    if len(text) % 2:
        raise PacketError(f"{what}: odd number of hex digits ({len(text)})")
    if text.translate(None, _HEX_DIGITS):
        raise PacketError(f"{what}: not hex: {_show(text)}")
    return bytes.fromhex(text.decode("ascii"))


def _address_length(head: bytes, what: str) -> tuple[int, int]:
    address_field, length_field = _fields(head, b",", 2, what, "addr,length")
    address = _hex_int(address_field, f"{what}: address", _ADDRESS_MAX)
    length = _hex_int(length_field, f"{what}: length", MAX_MEMORY)
    _check_range(address, length, what)
    return address, length


def _check_range(address: int, length: int, what: str) -> None:
    # A range that wraps past the top of the address space is no range at all.
    if address + length > _ADDRESS_MAX + 1:
        raise PacketError(f"{what}: {length:#x} bytes at {address:#x} wrap past 2^64")


def _vcont_action(field: bytes) -> VContAction:
    body, colon, thread_field = field.partition(b":")
    if not body:
        raise PacketError("vCont: empty action")
    thread = _thread_id(thread_field) if colon else None
    letter, rest = chr(body[0]), body[1:]
    if letter in "cst":
        if rest:
            raise PacketError(f"vCont: unexpected {_show(rest)} after {letter!r}")
        return VContAction(letter, thread)
    if letter in "CS":
        return VContAction(letter, thread, signal=_hex_int(rest, "vCont: signal", 0xFF))
    if letter == "r":
        start_field, end_field = _fields(rest, b",", 2, "vCont", "r start,end")
        start = _hex_int(start_field, "vCont: range start", _ADDRESS_MAX)
        end = _hex_int(end_field, "vCont: range end", _ADDRESS_MAX)
        return VContAction("r", thread, start=start, end=end)
    raise PacketError(f"vCont: unknown action {_show(body)}")


def _thread_id(field: bytes) -> int | None:
    """A thread-id: ``-1`` (all, None), ``0`` (any), hex TID, or ``pPID[.TID]``."""
    if field.startswith(b"p"):
        pid, dot, tid = field[1:].partition(b".")
        _thread_number(pid)      # checked, then dropped: there is one process
        return _thread_number(tid) if dot else None
    return _thread_number(field)


def _thread_number(field: bytes) -> int | None:
    if field == b"-1":
        return None
    return _hex_int(field, "vCont: thread-id", _ADDRESS_MAX)
