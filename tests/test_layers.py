"""The package's layering contract (pyproject.toml, ``[tool.importlinter]``).

Imports go down only - cli -> report | analysis | debug -> checks -> machine ->
board -> image -> asm -> arch - and only the machine and the board call
Unicorn.  The contract is checked by import-linter, a maintained tool; these
tests run it on the tree as it is, and on copies with one deliberate bad
import each, so a contract that stopped catching anything would fail here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the dev extra (make setup)")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package with ``line`` appended to ``module`` (a path under emu/)."""
    shutil.copytree(ROOT / "emu", tmp_path / "emu",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "emu" / module).open("a") as stream:
        stream.write(f"\n{line}  # deliberately against the contract\n")
    return tmp_path


def test_the_tree_keeps_its_contracts() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(("module", "line", "complaint"), [
    # A walker that reached up into the rules would make arch depend on checks.
    ("arch/mmu/walk.py", "import emu.checks", "emu.arch is not allowed to import emu.checks"),
    # The board must not know the CPU model that drives it.
    ("board/fdt.py", "import emu.machine.machine",
     "emu.board is not allowed to import emu.machine"),
    # Rules read events and arch facts, never the emulator.
    ("checks/stale_tlb.py", "import unicorn", "emu.checks is not allowed to import unicorn"),
])
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, line: str,
                                              complaint: str) -> None:
    result = _lint(_copy_with(tmp_path, module, line))
    assert result.returncode != 0
    assert complaint in result.stdout, result.stdout
