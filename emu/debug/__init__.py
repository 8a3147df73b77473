"""The GDB remote-serial-protocol server and what it needs."""
