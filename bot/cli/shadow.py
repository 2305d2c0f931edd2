"""`tuesday shadow [VERSION|off]`: a candidate beside production on live tickets, as `/tuesday shadow`."""

from __future__ import annotations

import getpass
import json

import click

from bot.runtime import Runtime


@click.command()
@click.argument("version", required=False)
@click.option("--by", help="Who starts or ends it (default: your login name).")
@click.option("--json", "as_json", is_flag=True, help="Print the state and the comparison as JSON.")
@click.pass_obj
def shadow(rt: Runtime, version: str | None, by: str | None, as_json: bool) -> None:
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
    if version and version.lower() == "off":
        ended = stop_shadow(rt.sessions, by=actor)
        text = (f"shadow mode ended: {ended} no longer labels live tickets" if ended else "no version was in shadow")
        click.echo(json.dumps({"ended": ended}) if as_json else text + displaced_note(rt, ended).replace("*", ""))
        return
    if version:
        started = start_shadow(rt, version, by=actor)
        if as_json:
            click.echo(json.dumps(started))
        else:
            click.echo(started_text(rt, started).replace("*", ""))
        return
    if as_json:
        click.echo(json.dumps(shadow_summary(rt), indent=2))
    else:
        click.echo(shadow_text(rt).replace("*", ""))
