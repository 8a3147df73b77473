"""The GDB server's packet handling under hostile input (issue 12): random,
truncated and malformed packets to a live connection get a reply (an error or
an empty "unsupported" one), never an exception, and the server keeps answering.

No gdb here: a socket pair stands for the client, and what must hold is the
protocol's own rule (GDB manual, "Packets"): every packet is acknowledged and
answered, an unsupported one with an empty reply.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

from emu.board.board import Board
from emu.checks.run import build_image
from emu.debug import rsp
from emu.debug.server import GdbConnection
from emu.debug.session import DebugSession

HEAD = Path(__file__).resolve().parent.parent / "asm" / "head.S"
HEADS = [b"m", b"M", b"X", b"g", b"G", b"p", b"P", b"Z", b"z", b"q", b"Q", b"v", b"H", b"T",
         b"qXfer:features:read:", b"qRcmd,", b"vCont;", b"Qqemu.PhyMemMode:", b"?"]


def _is_reply(item: rsp.Item) -> bool:
    """A reply packet, not console output (``O`` + hex; ``OK`` is a reply)."""
    return isinstance(item, rsp.Packet) and (item.payload == b"OK" or item.payload[:1] != b"O")


def _reply(client: socket.socket, reader: rsp.PacketReader) -> bytes:
    while True:
        for item in reader.feed(client.recv(65536)):
            if _is_reply(item):
                return item.payload


def test_random_packets_get_replies_and_the_server_stays_up() -> None:
    session = DebugSession(build_image(HEAD), Board())
    client, server_side = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            GdbConnection(server_side, session, lambda _text: None).serve()
        except BaseException as err:  # noqa: BLE001 - the test reports any escape
            errors.append(err)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    generator = random.Random(12)
    reader = rsp.PacketReader()
    client.settimeout(30)
    answered = 0
    for _ in range(600):
        # Never resume: a random c/s/bc would run the guest, which is not the point.
        body = bytes(generator.randrange(0x20, 0x7F) for _ in range(generator.randrange(0, 40)))
        payload = generator.choice(HEADS) + body
        if payload[:1] in (b"c", b"s", b"C", b"S", b"k", b"D") or payload.startswith(
                (b"vCont;", b"b")) and not payload.startswith(b"vCont;?"):
            payload = b"m" + body
        client.sendall(rsp.encode_packet(payload))
        _reply(client, reader)
        answered += 1
    client.sendall(b"$q#zz+-\x03")  # a bad checksum and stray bytes, then a good packet
    client.sendall(rsp.encode_packet(b"?"))
    assert _reply(client, reader).startswith(b"T05")
    client.close()
    thread.join(timeout=10)
    assert not thread.is_alive() and errors == [] and answered == 600


def test_a_port_in_use_is_a_one_line_error_with_status_2() -> None:
    import subprocess
    import sys

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "emu.cli", "debug", "--port", str(port)],
                                capture_output=True, text=True, timeout=60,
                                cwd=HEAD.parent.parent)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in result.stderr
