"""The guest's console: everything its output devices (the UART, semihosting) print."""

from __future__ import annotations

from collections.abc import Callable


class Console:
    """Everything the guest printed, in order, from every output device.

    ``listeners`` are called with (device name, bytes) as output arrives, e.g.
    by the command line to echo it to the terminal.
    """

    def __init__(self) -> None:
        # (device, bytes) runs in order; a UART prints a byte at a time, so
        # the last run grows in place.
        self.chunks: list[tuple[str, bytearray]] = []
        self.listeners: list[Callable[[str, bytes], None]] = []

    def write(self, device: str, data: bytes) -> None:
        if not data:
            return
        if self.chunks and self.chunks[-1][0] == device:
            self.chunks[-1][1].extend(data)
        else:
            self.chunks.append((device, bytearray(data)))
        for listener in self.listeners:
            listener(device, data)

    def output(self, device: str | None = None) -> bytes:
        """The bytes printed (by one device, or all of them)."""
        return b"".join(data for name, data in self.chunks if device in (None, name))

    def text(self, device: str | None = None) -> str:
        return self.output(device).decode(errors="replace")
