"""bootemu: AArch64 boot code under Unicorn, with the MMU modelled in Python.

One package per stage; data flows one way, and imports only go down::

    cli -> report | analysis -> checks -> machine -> board -> image -> asm -> arch

See README.md, "How it fits together", for what each package holds and the
path of one boot through them.
"""
