"""The verdict words: one token per outcome of a checked boot, the same in every report.

``bootemu check`` prints the token first on its last line (``Verdict: clean -
no rule fired; ...``), its ``--json`` holds it in ``verdict``, and ``bootemu
sweep`` gives each boot one (text, ``--json``, ``--csv``); the Python API's
:attr:`emu.checks.run.CheckRun.verdict` is the same string.  The first four
are a boot's; a sweep adds two for load addresses it could not boot at all.
What sets boots of one verdict apart (which rules fired, which failure code)
is said beside it, never folded into the token.
"""

from __future__ import annotations

CLEAN = "clean"
FINDINGS = "findings"
BOOT_FAILED = "boot-failed"
INCOMPLETE = "incomplete"
# A sweep's only: the boot never ran.
BEYOND_PA_RANGE = "beyond-pa-range"
ERROR = "error"

# Every verdict with its meaning, in order of precedence for a boot: a rule
# that fires is the verdict whatever else happened.
VERDICTS: dict[str, str] = {
    CLEAN: "the boot reached its target (--until) and no rule fired",
    FINDINGS: "at least one rule fired (whether or not the boot reached its target)",
    BOOT_FAILED: "no rule fired, but the program gave up in its failure routine "
                 "or exited with a non-zero status",
    INCOMPLETE: "no rule fired, but the run stopped before its target (an exception, "
                "a spent budget, an idle WFI, ...)",
    BEYOND_PA_RANGE: "sweep only: the image would not lie in the CPU's physical address "
                     "space; not booted",
    ERROR: "sweep only: the image could not be built at that load address; not booted",
}

# The verdicts of a boot that ran (``bootemu check``, :class:`CheckRun`).
BOOT_VERDICTS: tuple[str, ...] = (CLEAN, FINDINGS, BOOT_FAILED, INCOMPLETE)
