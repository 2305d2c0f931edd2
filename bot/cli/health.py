"""`tuesday health`: the last 7 days' measures and the open alerts, as `/tuesday health` shows them."""

from __future__ import annotations

import json

import click

from bot.runtime import Runtime


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the measures and open alerts as JSON.")
@click.pass_obj
def health(rt: Runtime, as_json: bool) -> None:
    """Acceptance, overrides, review time, latency, cost and drift of the last 7 days, and the open alerts."""
    from bot.monitor.health import gather_health, health_text

    data = gather_health(rt)
    click.echo(json.dumps(data, indent=2, default=str) if as_json else health_text(data).replace("*", ""))
