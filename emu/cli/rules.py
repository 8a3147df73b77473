"""``bootemu rules``: the rule catalogue, with explanations."""

from __future__ import annotations

import click

from emu.checks import ALL_CHECKS


@click.command()
def rules() -> None:
    """List the rules `bootemu check` applies, with their explanations."""
    for cls in ALL_CHECKS:
        click.echo(f"{cls.rule_id}: {cls.title}")
        click.echo(f"    {cls.explanation}\n")

