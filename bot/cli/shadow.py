"""`tuesday shadow [VERSION|off]`: a candidate beside production on live tickets, as `/tuesday shadow`."""

from __future__ import annotations

import getpass
import json

import click

from bot.runtime import Runtime


@click.command()
@click.argument("version", required=False)
@click.option("--task", help="The field whose shadow to show or end (default: every task's); a version names its own.")
@click.option("--by", help="Who starts or ends it (default: your login name).")
@click.option("--json", "as_json", is_flag=True, help="Print the state and the comparison as JSON.")
@click.pass_obj
def shadow(rt: Runtime, version: str | None, task: str | None, by: str | None, as_json: bool) -> None:
    """Run VERSION in shadow beside production (stored, never shown), end it with `off`, or show the comparison."""
    from bot.lifecycle.shadow import (
        displaced_note,
        shadow_summary,
        shadow_text,
        start_shadow,
        started_text,
        stop_shadow,
    )

    actor = f"cli:{by or getpass.getuser()}"
    scopes = rt.tasks_named(task)
    if version and version.lower() == "off":
        ended = {scoped.task.name: stop_shadow(scoped, by=actor) for scoped in scopes}
        if as_json:
            click.echo(json.dumps({"ended": ended if len(rt.tasks) > 1 else ended[rt.task.name]}))
            return
        for scoped in scopes:
            name = ended[scoped.task.name]
            if name:
                click.echo(f"shadow mode ended: {name} no longer labels live tickets"
                           + displaced_note(scoped, name).replace("*", ""))
        if not any(ended.values()):
            click.echo("no version was in shadow")
        return
    if version:
        started = start_shadow(rt, version, by=actor)
        if as_json:
            click.echo(json.dumps(started))
        else:
            click.echo(started_text(rt, started).replace("*", ""))
        return
    if as_json:
        summaries = {scoped.task.name: shadow_summary(scoped) for scoped in scopes}
        click.echo(json.dumps(summaries if len(rt.tasks) > 1 else summaries[rt.task.name], indent=2))
    else:
        click.echo("\n".join(shadow_text(scoped).replace("*", "") for scoped in scopes))
