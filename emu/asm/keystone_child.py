"""The child process that runs keystone for the assembler front-end.

Keystone aborts the whole process (``LLVM ERROR: ...``) or crashes on some
inputs, so ``emu.asm.keystone_runner`` never loads it in its own process.  This script
is started by file path (not as ``emu.asm.keystone_child``) so that the child
imports neither the ``emu`` package nor anything else than keystone.

Protocol, one JSON object per line both ways.  A request is
``{"texts": [statement, ...], "batch": bool, "base": int}``: instructions to
encode, each on its own at address ``base`` (the front-end always uses 0: it
resolves every PC-relative operand itself; tests use other bases to show what
keystone alone would do).  The answer is either ``{"batch": HEX}`` (all of
them in one keystone call, 4 bytes each), or one line per statement,
``{"i": n, "hex": HEX}`` or ``{"i": n, "errno": int, "message": str}`` for a
``KsError``, written and flushed as soon as it is known, then
``{"done": true}``.  If keystone kills the process half-way, the lines already
written tell the parent which statement did it; keystone's own message, if
any, is on standard error.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any


def _write(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main() -> int:
    """Serve requests from stdin until it closes."""
    # A crash is an expected outcome here; a core file per crash is not wanted.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks, KsError

    engine = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)
    for line in sys.stdin:
        request = json.loads(line)
        texts: list[str] = request["texts"]
        base: int = request.get("base", 0)
        if request.get("batch", True) and texts:
            # One call for everything is ten times faster than one per
            # statement; it only counts if every statement gave 4 bytes.
            try:
                code, _count = engine.asm("\n".join(texts), base, as_bytes=True)
            except KsError:
                code = None
            if code is not None and len(code) == 4 * len(texts):
                _write({"batch": code.hex()})
                continue
        for index, text in enumerate(texts):
            try:
                code, _count = engine.asm(text, base, as_bytes=True)
            except KsError as err:
                _write({"i": index, "errno": err.errno, "message": str(err)})
            else:
                _write({"i": index, "hex": (code or b"").hex()})
        _write({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
