"""Defective variants of a boot source, described as exact find/replace edits.

A defect file (``fixtures/defects.toml``) lists realistic mistakes of a
boot-code author, each as the edits that turn the correct ``asm/head.S`` into
the defective one, and the rules of the checker it is meant to trip::

    [[defect]]
    name = "switch-without-tlbi"
    rules = ["missing-tlbi"]
    description = "One line: what the author did wrong and why it is wrong."
    [[defect.edit]]
    find = "exact text in asm/head.S"
    replace = "new text"

Edits apply in order, each to the text the previous ones produced, and each
``find`` must occur exactly once there: an edit that no longer matches (because
head.S changed) is an error, never a silent no-op.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BUNDLED_DEFECTS", "Defect", "Edit", "apply_defect", "load_defects", "materialize"]

BUNDLED_DEFECTS = Path(__file__).resolve().parents[2] / "fixtures" / "defects.toml"

# Names become file names (``<name>.S``), so they are kept to a safe alphabet.
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


@dataclass(frozen=True)
class Edit:
    """Replace the one occurrence of ``find`` with ``replace``."""

    find: str
    replace: str


@dataclass
class Defect:
    """A boot-code mistake: its name, the rules it breaks, and the edits that make it."""

    name: str
    rules: list[str]
    description: str
    edits: list[Edit] = field(default_factory=list)


def _require(condition: bool, path: Path, where: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{path}: {where}: {message}")


def load_defects(path: str | Path) -> list[Defect]:
    """Read and validate a defect file; ``ValueError`` says what is wrong and where."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None
    entries = document.get("defect", [])
    _require(isinstance(entries, list), path, "defect", "expected [[defect]] tables")
    defects: list[Defect] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        name = entry.get("name")
        where = f"defect {name!r}" if isinstance(name, str) else f"defect #{number}"
        _require(isinstance(name, str) and bool(_NAME.match(name)), path, where,
                 "name must be lower-case letters, digits and dashes")
        _require(name not in seen, path, where, "name used twice")
        seen.add(name)
        rules = entry.get("rules")
        _require(isinstance(rules, list) and bool(rules)
                 and all(isinstance(rule, str) and rule for rule in rules),
                 path, where, "rules must be a non-empty list of rule ids")
        description = entry.get("description")
        _require(isinstance(description, str) and bool(description.strip()), path, where,
                 "description must be a non-empty string")
        raw_edits = entry.get("edit")
        _require(isinstance(raw_edits, list) and bool(raw_edits), path, where,
                 "needs at least one [[defect.edit]]")
        edits: list[Edit] = []
        for index, raw in enumerate(raw_edits, start=1):
            find, replace = raw.get("find"), raw.get("replace")
            _require(isinstance(find, str) and bool(find), path, f"{where}, edit {index}",
                     "find must be a non-empty string")
            _require(isinstance(replace, str), path, f"{where}, edit {index}",
                     "replace must be a string")
            edits.append(Edit(find=find, replace=replace))
        defects.append(Defect(name=name, rules=list(rules), description=description.strip(),
                              edits=edits))
    return defects


def apply_defect(source_text: str, defect: Defect) -> str:
    """The source with the defect's edits applied, in order."""
    text = source_text
    for index, edit in enumerate(defect.edits, start=1):
        count = text.count(edit.find)
        if count != 1:
            found = "not found" if count == 0 else f"found {count} times"
            raise ValueError(
                f"defect {defect.name!r}, edit {index}: the text to find is {found} "
                f"(it must occur exactly once): {edit.find!r}"
            )
        text = text.replace(edit.find, edit.replace)
    return text


def materialize(defect: Defect, head_path: str | Path, out_dir: str | Path) -> Path:
    """Write the defective source as ``out_dir/<name>.S`` and return its path.

    The headers next to ``head_path`` (its directory's ``*.h`` files and its
    ``include/`` subdirectory) are copied into ``out_dir`` too, so the result
    assembles on its own: ``assemble_file(path)`` needs no include_dirs.
    """
    head_path, out_dir = Path(head_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{defect.name}.S"
    target.write_text(apply_defect(head_path.read_text(), defect))
    source_dir = head_path.parent
    if source_dir.resolve() != out_dir.resolve():
        include = source_dir / "include"
        if include.is_dir():
            shutil.copytree(include, out_dir / "include", dirs_exist_ok=True)
        for header in source_dir.glob("*.h"):
            shutil.copy2(header, out_dir / header.name)
    return target
