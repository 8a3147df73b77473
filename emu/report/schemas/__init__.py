"""JSON Schemas (draft 2020-12) of every ``--json`` output, shipped with the package.

One file per command, ``<name>.schema.json``: ``check``, ``run``, ``trace``
(one JSON Lines record: an instruction, a ``{"gap": N}`` or the stop),
``sweep``, ``asm``, ``layout``, ``walk`` and ``rules``.  They share one
vocabulary: the verdict words of :mod:`emu.checks.verdict`, ``exit_status``
for the program's own exit status, and the ``end`` object
(:class:`emu.report.ending.RunEnd`) wherever a run ended.

    >>> from emu.report.schemas import load_schema
    >>> load_schema("check")["title"]
    'bootemu check --json'
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

__all__ = ["SCHEMA_NAMES", "load_schema"]

SCHEMA_NAMES: tuple[str, ...] = ("check", "run", "trace", "sweep", "asm", "layout", "walk",
                                 "rules")


@cache
def _text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


def load_schema(name: str) -> dict:
    """The JSON Schema of ``bootemu NAME --json`` (a fresh dict on each call)."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no JSON Schema named {name!r}; there are: {', '.join(SCHEMA_NAMES)}")
    return json.loads(_text(name))
