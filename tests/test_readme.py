"""The README's Python examples run as written.

Every ```python block of README.md is executed, from the repository's root, so
a name the README documents cannot move without the README following it.  A
block that starts with ``# test_NAME.py`` is an emulation suite: it is
written as that file into a project holding a copy of asm/, and the README's
``pytest ...`` command lines are run on it, in order; each must pass.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
SUITE_NAME = re.compile(r"# (test_\w+\.py)\n")
SUITES = [block for block in BLOCKS if SUITE_NAME.match(block)]
SNIPPETS = [block for block in BLOCKS if not SUITE_NAME.match(block)]
# The pytest command lines of the README's sh blocks, without their comments.
PYTEST_LINES = [line.split("#", 1)[0].split()[1:]
                for block in re.findall(r"```sh\n(.*?)```", README, re.S)
                for line in block.splitlines() if line.startswith("pytest ")]


def test_the_readme_has_python_examples() -> None:
    assert SNIPPETS and SUITES and PYTEST_LINES


@pytest.mark.parametrize("block", SNIPPETS, ids=[f"block{n}" for n in range(len(SNIPPETS))])
def test_readme_python_block_runs(block: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})


@pytest.mark.parametrize("suite", SUITES, ids=[SUITE_NAME.match(s)[1] for s in SUITES])
def test_readme_suite_passes_under_its_commands(suite: str, pytester: pytest.Pytester) -> None:
    shutil.copytree(ROOT / "asm", pytester.path / "asm")
    match = SUITE_NAME.match(suite)
    assert match is not None
    (pytester.path / match[1]).write_text(suite)
    for args in PYTEST_LINES:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        assert result.ret == 0, f"pytest {shlex.join(args)}:\n{result.stdout.str()}"
    assert (pytester.path / "reports").is_dir() and (pytester.path / "junit.xml").is_file()
