"""The platform around the CPU: the memory plan, the device tree, the PL011,
semihosting and firmware calls.  Devices see the CPU through the
:class:`~emu.board.guest.Guest` protocol, never the machine itself."""
