"""The child process that runs keystone once for the assembler front-end.

Keystone aborts the whole process (``LLVM ERROR: ...``) or crashes on some
inputs, so ``emu.assembler`` never loads it in its own process.  This script is
started by file path (not as ``emu._keystone_child``) so that the child imports
neither the ``emu`` package nor anything else than keystone.

Protocol: one JSON object on standard input, ``{"source": str, "base": int}``;
one JSON object on standard output, either ``{"ok": true, "code": HEX}`` or
``{"ok": false, "errno": int, "message": str}`` for a ``KsError``.  An abort or
a crash shows as a negative exit status, with keystone's own message (if any)
on standard error.
"""

from __future__ import annotations

import json
import resource
import sys


def main() -> int:
    """Assemble the request read from stdin and write the answer to stdout."""
    # A crash is an expected outcome here; a core file per crash is not wanted.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    request = json.load(sys.stdin)
    from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks, KsError

    engine = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)
    try:
        encoding, _count = engine.asm(request["source"], request["base"], as_bytes=True)
    except KsError as err:
        answer = {"ok": False, "errno": err.errno, "message": str(err)}
    else:
        answer = {"ok": True, "code": (encoding or b"").hex()}
    json.dump(answer, sys.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
