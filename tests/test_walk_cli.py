"""`bootemu walk`: one translation explained level by level at a point of the boot."""

from __future__ import annotations

import json
import subprocess
import sys


def bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emu.cli.main", *args], capture_output=True,
                          text=True, timeout=120)


def test_walk_of_the_image_after_the_mmu_is_on() -> None:
    result = bootemu("walk", "0x8000200010", "--at", "primary_switched")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("walk of VA 0x8000200010 at #")
    assert [line.split()[0] for line in lines[1:4]] == ["L0", "L1", "L2"]
    assert "2 MiB block" in lines[3]  # the boot tables map the image with a block
    assert lines[-1].strip().startswith("→ PA 0x40000010")


def test_walk_at_start_c_uses_the_runtime_tables() -> None:
    image_va = bootemu("walk", "0x8000200010", "--json")
    report = json.loads(image_va.stdout)
    assert report["result"] == "translation" and report["pa"] == 0x40000010
    assert [step["kind"] for step in report["steps"]] == ["table", "table", "table", "page"]
    # The identity mapping is gone by start_c: level 0 is invalid for the load address.
    identity = bootemu("walk", "0x40001000", "--json")
    assert identity.returncode == 1
    gone = json.loads(identity.stdout)
    assert gone["fault"].startswith("translation fault, level 0")


def test_walk_during_the_switch_sees_the_identity_page() -> None:
    result = bootemu("walk", "0x40001000", "--at", "remove_identity_mapping")
    assert result.returncode == 0
    assert "→ PA 0x40001000 (4 KiB page" in result.stdout


def test_walk_el1_regime_with_its_mmu_off_is_flat() -> None:
    result = bootemu("walk", "0x1234000", "--regime", "el1", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["pa"] == 0x1234000


def test_walk_rejects_a_bad_address() -> None:
    assert bootemu("walk", "zzz").returncode == 2
