"""``bootemu rules``: the rule catalogue, with explanations."""

from __future__ import annotations

import json

import click

from emu.checks import ALL_CHECKS


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="One JSON list: each rule's id (as findings name it), title and explanation.")
def rules(as_json: bool) -> None:
    """List the rules `bootemu check` applies, with their explanations."""
    if as_json:
        click.echo(json.dumps([{"rule": cls.rule_id, "title": cls.title,
                                "explanation": cls.explanation} for cls in ALL_CHECKS],
                              indent=2))
        return
    for cls in ALL_CHECKS:
        click.echo(f"{cls.rule_id}: {cls.title}")
        click.echo(f"    {cls.explanation}\n")
