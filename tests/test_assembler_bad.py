"""The corpus of bad sources: each gives exit status 2 and one line naming file:line.

Every file of fixtures/asm/bad/ starts with ``// expect: [FILE:]LINE: TEXT``
(FILE defaults to the file itself): the error must name that file and line
and contain TEXT.  empty.S, which cannot carry a header, is listed here.  All
run in this process, through the ``bootemu asm`` command (click's runner) and
through the Python API: none may take the process down, whatever keystone does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from emu.asm import assembler
from emu.asm.assembler import assemble_file
from emu.asm.source import AssemblyError
from emu.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "fixtures" / "asm" / "bad"
SOURCES = sorted(BAD.glob("*.S"))
NO_HEADER = {"empty.S": (None, 1, "nothing to assemble")}
_HEADER = re.compile(r"// expect: (?:(?P<file>[^:\s]+):)?(?P<line>\d+): (?P<text>.+)")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BOOTEMU_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    assembler.clear_cache()
    yield
    assembler.clear_cache()


def expectation(path: Path) -> tuple[str, int, str]:
    """(file name, line, text) the error for ``path`` must show."""
    if path.name in NO_HEADER:
        file, line, text = NO_HEADER[path.name]
        return file or path.name, line, text
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    match = _HEADER.fullmatch(first.strip())
    assert match is not None, f"{path.name}: first line must be // expect: [FILE:]LINE: TEXT"
    return match.group("file") or path.name, int(match.group("line")), match.group("text")


def test_the_corpus_covers_what_it_must() -> None:
    names = {path.name for path in SOURCES}
    assert len(SOURCES) >= 30
    for required in ("keystone_crasher_lo12.S", "keystone_crasher_cbz.S",
                     "keystone_crasher_sections.S", "unterminated_macro.S",
                     "recursive_include.S", "empty.S", "garbage.S", "xen_cmp_immediate.S",
                     "undefined_branch_target.S", "range_b.S", "immediate_logical.S"):
        assert required in names, required
    assert BAD.joinpath("empty.S").stat().st_size == 0
    assert b"\0" in BAD.joinpath("garbage.S").read_bytes()


@pytest.mark.parametrize("path", SOURCES, ids=[path.name for path in SOURCES])
def test_bad_source_gives_exit_2_and_one_line(path: Path) -> None:
    file, line, text = expectation(path)
    result = CliRunner().invoke(main, ["asm", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bootemu: error: ")
    assert f"{file}:{line}: " in lines[0], lines[0]
    assert text in lines[0], lines[0]
    assert "Traceback" not in result.output
    # The Python API raises the same error, with the location as data.
    with pytest.raises(AssemblyError) as caught:
        assemble_file(path)
    assert caught.value.location is not None
    assert Path(caught.value.location.file).name == file
    assert caught.value.location.line == line


@pytest.mark.parametrize("name", ["keystone_crasher_lo12.S", "garbage.S", "empty.S"])
def test_a_real_bootemu_process_exits_2(name: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "emu.cli.main", "asm", str(BAD / name)],
                            capture_output=True, text=True, timeout=120,
                            env={"BOOTEMU_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    file, line, text = expectation(BAD / name)
    [message] = result.stderr.strip().splitlines()
    assert f"{file}:{line}: " in message and text in message
