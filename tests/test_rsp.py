"""Tests of the GDB remote-serial-protocol packet layer (emu.debug.rsp).

The truth here comes from the GDB manual ("Remote Protocol": "Overview",
"Binary Data", "Packets", "General Query Packets"), not from bootemu: every
framed example's checksum is worked out by hand in a comment beside it, and
the escape examples are the manual's own (0x7d is sent as 0x7d 0x5d).  The
fuzz tests at the end feed the reader and every parser random and damaged
input from fixed seeds: nothing may escape the reader, and only PacketError
the parsers.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest

from emu.debug import rsp
from emu.debug.rsp import (
    MAX_MEMORY,
    MAX_PACKET,
    Ack,
    BadPacket,
    BreakpointType,
    Interrupt,
    Nack,
    Packet,
    PacketError,
    PacketReader,
    VContAction,
    checksum,
    encode_packet,
    hex_bytes,
    le_hex,
    parse_binary_write,
    parse_breakpoint,
    parse_le_hex,
    parse_memory_read,
    parse_memory_write,
    parse_qxfer,
    parse_rcmd,
    parse_register_write,
    parse_vcont,
    qxfer_reply,
    to_hex,
)

# Packets as they appear on the wire, with their payloads.  Checksums by hand:
KNOWN = [
    (b"$OK#9a", b"OK"),                  # 'O' 0x4f + 'K' 0x4b = 0x9a
    (b"$g#67", b"g"),                    # 'g' = 0x67
    (b"$?#3f", b"?"),                    # '?' = 0x3f
    (b"$c#63", b"c"),                    # 'c' = 0x63
    (b"$T05#b9", b"T05"),                # 0x54 + 0x30 + 0x35 = 0xb9
    (b"$#00", b""),                      # the empty reply: "not supported"
    # q 71 S 53 u 75 p 70 p 70 o 6f r 72 t 74 e 65 d 64: sum 0x437
    (b"$qSupported#37", b"qSupported"),
    # v 76 C 43 o 6f n 6e t 74 ? 3f: sum 0x249
    (b"$vCont?#49", b"vCont?"),
    # m 6d 4 34 0 30 1 31 5 35 b 62 c 63 , 2c 2 32: sum 0x25a
    (b"$m4015bc,2#5a", b"m4015bc,2"),
]


# ---------------------------------------------------------------------------
# Framing and escaping


@pytest.mark.parametrize(("wire", "payload"), KNOWN)
def test_encode_gives_the_manuals_framing(wire: bytes, payload: bytes) -> None:
    assert encode_packet(payload) == wire
    assert checksum(payload) == int(wire[-2:], 16)


@pytest.mark.parametrize(("wire", "payload"), KNOWN)
def test_reader_accepts_known_packets(wire: bytes, payload: bytes) -> None:
    assert PacketReader().feed(wire) == [Packet(payload)]


def test_checksum_digits_may_be_uppercase() -> None:
    assert PacketReader().feed(b"$OK#9A") == [Packet(b"OK")]


@pytest.mark.parametrize(("byte", "wire"), [
    # The manual: "the byte 0x7d would be transmitted as the two bytes 0x7d 0x5d".
    (b"}", b"$}]#da"),      # 0x7d + 0x5d = 0xda
    (b"#", b"$}\x03#80"),   # 0x23 ^ 0x20 = 0x03; 0x7d + 0x03 = 0x80
    (b"$", b"$}\x04#81"),   # 0x24 ^ 0x20 = 0x04; 0x7d + 0x04 = 0x81
    (b"*", b"$}\x0a#87"),   # 0x2a ^ 0x20 = 0x0a; 0x7d + 0x0a = 0x87
])
def test_special_bytes_are_escaped_and_checksummed_as_sent(byte: bytes, wire: bytes) -> None:
    assert encode_packet(byte) == wire
    assert PacketReader().feed(wire) == [Packet(byte)]


def test_other_bytes_are_sent_as_they_are() -> None:
    payload = bytes(b for b in range(256) if b not in b"$#}*")
    wire = encode_packet(payload)
    assert wire[1:-3] == payload
    assert wire[-2:] == b"%02x" % (sum(payload) % 256)


def test_escaping_round_trips_every_byte_value() -> None:
    rng = random.Random(1)
    reader = PacketReader()
    payloads = [bytes(range(256)), b"}}}}", b"$#*}" * 50]
    payloads += [rng.randbytes(rng.randrange(0, 300)) for _ in range(200)]
    stream = b"".join(encode_packet(p) for p in payloads)
    assert reader.feed(stream) == [Packet(p) for p in payloads]
    assert reader.pending == 0


def test_a_binary_write_arrives_unescaped() -> None:
    # GDB escapes X data; 0x03 inside a packet is data, not Ctrl-C.
    data = b"\x00\x03#$}*\xff"
    wire = encode_packet(b"X1000,7:" + data)
    [packet] = PacketReader().feed(wire)
    assert isinstance(packet, Packet)
    assert parse_binary_write(packet.payload[1:]) == (0x1000, data)


# ---------------------------------------------------------------------------
# The reader's stream handling


def test_a_stream_split_into_single_bytes_gives_the_same_items() -> None:
    stream = b"+" + b"".join(wire for wire, _ in KNOWN) + b"\x03-" + encode_packet(b"X0,1:}")
    whole = PacketReader().feed(stream)
    reader = PacketReader()
    pieces = [item for i in range(len(stream)) for item in reader.feed(stream[i:i + 1])]
    assert pieces == whole
    assert whole[0] == Ack() and whole[-3:] == [Interrupt(), Nack(), Packet(b"X0,1:}")]
    assert len(whole) == len(KNOWN) + 4


def test_a_stream_split_at_random_points_gives_the_same_items() -> None:
    rng = random.Random(2)
    stream = b"".join(encode_packet(rng.randbytes(rng.randrange(50))) + b"+"
                      for _ in range(50))
    whole = PacketReader().feed(stream)
    for _ in range(20):
        reader = PacketReader()
        cuts = sorted(rng.sample(range(1, len(stream)), 30))
        items = [item for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)
                 for item in reader.feed(stream[a:b])]
        assert items == whole


def test_ctrl_c_and_acks_between_packets() -> None:
    reader = PacketReader()
    assert reader.feed(b"$g#67\x03+$?#3f-\x03") == [
        Packet(b"g"), Interrupt(), Ack(), Packet(b"?"), Nack(), Interrupt()]


def test_noise_outside_packets_is_ignored() -> None:
    assert PacketReader().feed(b"\r\nhello\x00\xff$OK#9a junk") == [Packet(b"OK")]


def test_a_bad_checksum_is_reported_and_the_resend_accepted() -> None:
    reader = PacketReader()
    assert reader.feed(b"$OK#9b") == [BadPacket("checksum mismatch")]
    assert reader.feed(b"$OK#9a") == [Packet(b"OK")]


def test_a_non_hex_checksum_is_reported() -> None:
    assert PacketReader().feed(b"$OK#zz+") == [BadPacket("checksum is not hex"), Ack()]
    # int(x, 16) would take " 9" or "+9"; the reader must not.
    assert PacketReader().feed(b"$\x09#+9") == [BadPacket("checksum is not hex")]


def test_run_length_encoding_is_refused() -> None:
    # "0* " is '0' repeated 4 times in RLE; GDB never sends it, so it is damage.
    wire = b"$0* #%02x" % ((0x30 + 0x2A + 0x20) % 256)
    assert PacketReader().feed(wire) == [BadPacket("run-length encoding")]


def test_an_escape_may_not_end_a_packet() -> None:
    assert PacketReader().feed(b"$a}#%02x" % (0x61 + 0x7D)) == [
        BadPacket("escape at end of packet")]


def test_a_dollar_inside_a_packet_starts_a_new_one() -> None:
    assert PacketReader().feed(b"$abc$OK#9a") == [BadPacket("unterminated packet"),
                                                  Packet(b"OK")]
    assert PacketReader().feed(b"$OK#9$g#67") == [BadPacket("truncated checksum"),
                                                  Packet(b"g")]


def test_a_packet_of_exactly_the_bound_is_accepted() -> None:
    reader = PacketReader(max_packet=64)
    assert reader.feed(encode_packet(b"a" * 64)) == [Packet(b"a" * 64)]
    assert reader.feed(encode_packet(b"a" * 65)) == [BadPacket("too long")]


def test_a_too_long_packet_is_reported_once_with_bounded_memory() -> None:
    reader = PacketReader(max_packet=64)
    items = reader.feed(b"$")
    for _ in range(1000):
        items += reader.feed(b"x" * 100)
        assert reader.pending <= 64
    # The overlong packet's own checksum is skipped; what follows is read.
    items += reader.feed(b"#00+\x03$OK#9a")
    assert items == [BadPacket("too long"), Ack(), Interrupt(), Packet(b"OK")]


def test_a_too_long_packet_resynchronises_at_the_next_dollar() -> None:
    reader = PacketReader(max_packet=8)
    assert reader.feed(b"$" + b"y" * 100 + b"$g#67") == [BadPacket("too long"), Packet(b"g")]


def test_the_default_bound_is_a_mebibyte() -> None:
    reader = PacketReader()
    assert reader.max_packet == MAX_PACKET == 1 << 20
    chunk = b"z" * (1 << 16)
    items = reader.feed(b"$")
    for _ in range(40):           # 2.5 MiB of one packet
        items += reader.feed(chunk)
        assert reader.pending <= MAX_PACKET
    assert items == [BadPacket("too long")]
    assert reader.feed(b"#00$OK#9a") == [Packet(b"OK")]


def test_max_packet_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_packet"):
        PacketReader(max_packet=0)


# ---------------------------------------------------------------------------
# Hex


def test_hex_helpers() -> None:
    assert hex_bytes("00ff7F") == b"\x00\xff\x7f"
    assert hex_bytes(b"") == b""
    assert to_hex(b"\x00\xff\x7f") == "00ff7f"
    for bad in ("0", "0g", "00 11", "+1", "0x", "é0"):
        with pytest.raises(PacketError):
            hex_bytes(bad)


def test_register_values_are_little_endian() -> None:
    # A g/p reply carries the register's target-order bytes: PC 0x400000 on
    # little-endian AArch64 is 00 00 40 00 00 00 00 00.
    assert le_hex(0x400000, 8) == "0000400000000000"
    assert le_hex(0x3C5, 4) == "c5030000"
    assert parse_le_hex("0000400000000000", 8) == 0x400000
    assert parse_le_hex(b"0011223344556677", 8) == 0x7766554433221100
    with pytest.raises(PacketError, match="expected 8"):
        parse_le_hex("00", 8)
    with pytest.raises(ValueError, match="does not fit"):
        le_hex(1 << 64, 8)
    with pytest.raises(ValueError, match="does not fit"):
        le_hex(-1, 8)


# ---------------------------------------------------------------------------
# Packet arguments


def test_memory_read() -> None:
    assert parse_memory_read(b"4015bc,2") == (0x4015BC, 2)
    assert parse_memory_read("ffffffffffffffff,1") == ((1 << 64) - 1, 1)
    assert parse_memory_read("0,100000") == (0, MAX_MEMORY)


@pytest.mark.parametrize("args", [
    "", "4015bc", "4015bc,", ",2", "4015bc,2,3", "0x10,2", "10,-2", "1_0,2", " 10,2",
    "0,100001",                        # a mebibyte and a byte
    "0,ffffffffffffffff",              # a hostile length
    "10000000000000000,1",             # past 64 bits
    "ffffffffffffffff,2",              # wraps
])
def test_bad_memory_reads(args: str) -> None:
    with pytest.raises(PacketError):
        parse_memory_read(args)


def test_memory_write() -> None:
    assert parse_memory_write(b"1000,2:abCD") == (0x1000, b"\xab\xcd")
    assert parse_memory_write("1000,0:") == (0x1000, b"")
    for bad in ("1000,2:ab", "1000,2:abcdef", "1000,2abcd", "1000,2:abcg", "1000:ab"):
        with pytest.raises(PacketError):
            parse_memory_write(bad)


def test_binary_write() -> None:
    # GDB probes X support with an empty write; data may hold ':' and ','.
    assert parse_binary_write(b"1000,0:") == (0x1000, b"")
    assert parse_binary_write(b"20,3::,\x00") == (0x20, b":,\x00")
    for bad in (b"1000,2:a", b"1000,1:ab", b"1000,1", b"x,1:a", b"\xff,1:a",
                b"0,200000:"):
        with pytest.raises(PacketError):
            parse_binary_write(bad)


def test_breakpoints() -> None:
    assert parse_breakpoint("0,400000,4") == (BreakpointType.SOFTWARE, 0x400000, 4)
    # A condition list (";X len,bytecode") is ignored.
    assert parse_breakpoint(b"1,400000,4;X3,220027") == (1, 0x400000, 4)
    assert parse_breakpoint("2,ffff0000,8") == (BreakpointType.WRITE_WATCH, 0xFFFF0000, 8)
    for bad in ("5,0,4", "0,0", "0,,4", "0,0,4,1", "-1,0,4", ";0,0,4", "0,0,ffffffff"):
        with pytest.raises(PacketError):
            parse_breakpoint(bad)


def test_register_write() -> None:
    assert parse_register_write("20=0000400000000000") == (32, "0000400000000000")
    for bad in ("20", "20=", "=00", "20=0", "20=zz", "20=00=00", "10000=00",
                "20=" + "00" * 257):
        with pytest.raises(PacketError):
            parse_register_write(bad)


def test_vcont() -> None:
    assert parse_vcont(";c") == [VContAction("c")]
    assert parse_vcont(b";s:1;c") == [VContAction("s", 1), VContAction("c")]
    assert parse_vcont(";s:p1.1;c:p1.-1") == [VContAction("s", 1), VContAction("c")]
    assert parse_vcont(";C05:-1") == [VContAction("C", None, signal=5)]
    assert parse_vcont(";S0b:2;t:0") == [VContAction("S", 2, signal=11), VContAction("t", 0)]
    assert parse_vcont(";r400000,400010:1") == [
        VContAction("r", 1, start=0x400000, end=0x400010)]


@pytest.mark.parametrize("args", [
    "", ";", "c", ";x", ";;c", ";c;", ";cc", ";C", ";C100", ";s:", ";s:p", ";s:1:2",
    ";r400000", ";r,1", ";c;s",            # two defaults
    ";" + ";".join(f"s:{n:x}" for n in range(1, 300)),
])
def test_bad_vconts(args: str) -> None:
    with pytest.raises(PacketError):
        parse_vcont(args)


def test_qxfer() -> None:
    assert parse_qxfer(b":features:read:target.xml:0,ffb") == (
        "features", "target.xml", 0, 0xFFB)
    assert parse_qxfer(":auxv:read::10,20") == ("auxv", "", 0x10, 0x20)
    for bad in (":features:write:target.xml:0,4", "features:read:target.xml:0,ffb",
                ":features:read:target.xml", ":features:read:target.xml:0",
                ":features:read:target.xml:0,0", "::read:x:0,1",
                ":features:read:target.xml:0,200000"):
        with pytest.raises(PacketError):
            parse_qxfer(bad)


def test_qxfer_reply() -> None:
    document = b"<target>*$#}</target>"
    assert qxfer_reply(document, 0, 8) == b"m<target>"
    assert qxfer_reply(document, 8, 100) == b"l*$#}</target>"
    assert qxfer_reply(document, len(document) - 3, 3) == b"let>"
    assert qxfer_reply(document, len(document), 10) == b"l"
    assert qxfer_reply(document, 1000, 10) == b"l"
    # Reading the document in GDB's chunks gives it back whole.
    chunks, offset = [], 0
    while True:
        reply = qxfer_reply(document, offset, 5)
        chunks.append(reply[1:])
        offset += len(reply) - 1
        if reply[:1] == b"l":
            break
    assert b"".join(chunks) == document
    # The reply is raw; framing escapes it.
    assert PacketReader().feed(encode_packet(qxfer_reply(document, 0, 100))) == [
        Packet(b"l" + document)]


def test_rcmd() -> None:
    assert parse_rcmd(b",68656c70") == "help"        # "monitor help"
    assert parse_rcmd(",") == ""                     # a bare "monitor"
    assert parse_rcmd(",c3a9ff") == "\u00e9\ufffd"   # UTF-8 é, then a stray byte
    for bad in ("68656c70", ",6", ",zz"):
        with pytest.raises(PacketError):
            parse_rcmd(bad)


def test_error_messages_are_one_line() -> None:
    with pytest.raises(PacketError) as caught:
        parse_memory_read(b"\n\n" + b"9" * 5000 + b",1")
    message = str(caught.value)
    assert "\n" not in message and len(message) < 120


# ---------------------------------------------------------------------------
# Fuzzing: fixed seeds, a few thousand cases.

PARSERS: list[Callable[[bytes], object]] = [
    parse_memory_read, parse_memory_write, parse_binary_write, parse_breakpoint,
    parse_register_write, parse_vcont, parse_qxfer, parse_rcmd, hex_bytes,
    lambda args: parse_le_hex(args, 8),
]

# Valid arguments, to mutate into nearly-valid ones that reach the deep branches.
SEEDS = [
    b"4015bc,2", b"1000,2:abcd", b"1000,3::,\x00", b"0,400000,4;X3,220027",
    b"20=0000400000000000", b";s:p1.1;c:p1.-1;r10,20:2;C05", b":features:read:target.xml:0,ffb",
    b",68656c70", b"0011223344556677",
]
ALPHABET = b"0123456789abcdefABCDEFxp-:;,=.$#}*\x03\x00\xff rcsCSt"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        choice = rng.randrange(4)
        where = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            del out[min(where, len(out) - 1)]
        elif choice == 1:
            out.insert(where, rng.choice(ALPHABET))
        elif choice == 2 and out:
            out[min(where, len(out) - 1)] = rng.randrange(256)
        else:
            out[where:where] = b"f" * rng.randrange(1, 40)   # long numbers
    return bytes(out)


def _random_args(rng: random.Random) -> bytes:
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(rng.randrange(40))
    if kind == 1:
        return bytes(rng.choice(ALPHABET) for _ in range(rng.randrange(40)))
    return _mutate(rng, rng.choice(SEEDS))


def _call_parsers(args: bytes) -> None:
    for parser in PARSERS:
        with contextlib.suppress(PacketError):
            parser(args)
        # Text arguments too: str is accepted wherever bytes are.
        with contextlib.suppress(PacketError):
            parser(args.decode("latin-1"))


def test_fuzz_parsers_raise_only_packet_error() -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        _call_parsers(_random_args(rng))


def test_fuzz_reader_never_raises_and_never_delivers_a_wrong_payload() -> None:
    rng = random.Random(7)
    items_seen = 0
    for case in range(2500):
        reader = PacketReader(max_packet=rng.choice([16, 256, MAX_PACKET]))
        payloads = [_random_args(rng) for _ in range(rng.randrange(1, 4))]
        wires = [encode_packet(p) for p in payloads]
        form = case % 4
        if form == 0:       # random bytes
            stream = rng.randbytes(rng.randrange(200))
        elif form == 1:     # valid packets truncated at random
            stream = b"".join(w[:rng.randrange(len(w) + 1)] for w in wires)
        elif form == 2:     # valid packets with one byte corrupted (not into framing)
            stream = b""
            for wire in wires:
                damaged = bytearray(wire)
                where = rng.randrange(len(damaged))
                damaged[where] = rng.choice([b for b in range(256)
                                             if b not in b"$#" and b != damaged[where]])
                stream += bytes(damaged)
        else:               # a mixture, with acks and Ctrl-C between
            stream = b"".join(rng.choice([w, w[:5], b"+", b"-", b"\x03", rng.randbytes(5)])
                              for w in wires * 2)
        items = []
        pos = 0
        while pos < len(stream):
            step = rng.randrange(1, 64)
            items += reader.feed(stream[pos:pos + step])
            pos += step
        assert reader.pending <= reader.max_packet
        for item in items:
            assert isinstance(item, Packet | Interrupt | Ack | Nack | BadPacket)
            items_seen += 1
            if isinstance(item, Packet):
                if form == 2:
                    # One corrupted byte changes the sum, or a checksum digit's
                    # value; either way the payload is never delivered wrong.
                    assert item.payload in payloads
                _call_parsers(item.payload[1:])
    assert items_seen > 1000


def test_the_module_does_not_import_unicorn() -> None:
    assert "unicorn" not in rsp.__dict__
    source = rsp.__file__
    with open(source) as stream:
        assert "unicorn" not in stream.read()
