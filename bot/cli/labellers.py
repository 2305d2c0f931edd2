"""`tuesday labellers`: who teaches the model, the clicks held from everyone else, and their approval."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from bot.runtime import Runtime
from bot.store.base import utc_now
from bot.trail import labellers


@click.group(invoke_without_command=True)
@click.option("--days", default=30, show_default=True, help="Each person's clicks over this many days.")
@click.option("--json", "as_json", is_flag=True, help="Print held clicks and per-person numbers as JSON.")
@click.pass_context
def labellers_cmd(ctx: click.Context, days: int, as_json: bool) -> None:
    """Held clicks per person (from people who are not labellers) and each person's clicks, corrections, agreement."""
    if ctx.invoked_subcommand is not None:
        return
    rt: Runtime = ctx.obj
    now = utc_now()
    held, people = labellers.held_people(rt.sessions), labellers.people(rt.sessions, now - timedelta(days=days), now)
    if as_json:
        click.echo(json.dumps({"labellers": rt.settings.labellers, "held": held, "people": people}, indent=2,
                              default=str))
        return
    click.echo(f"labellers: {rt.settings.labellers or '(managers and admins only)'}")
    for p in held:
        click.echo(f"held  {p['user_id']:<12} {p['held']:>5} clicks  {p['first']:%Y-%m-%d} .. {p['last']:%Y-%m-%d}")
    if held:
        click.echo("approve: tuesday labellers approve USER --by NAME   (or reject; USER may be `all`)")
    for p in people:
        agreement = "-" if p["agreement"] is None else f"{p['agreement']:.0%} of {p['compared']}"
        click.echo(f"{p['user_id']:<12} {p['clicks']:>6} clicks {p['corrections']:>5} corrections "
                   f"{p['held']:>5} held  agreement {agreement}")


def _decide(rt: Runtime, user: str, by: str, approve: bool) -> None:
    n = labellers.decide_held(rt.sessions, user, approve=approve, by=f"cli:{by}")
    click.echo(f"{n} held clicks {'approved (training data now)' if approve else 'rejected (never trained on)'}")


@labellers_cmd.command("approve")
@click.argument("user")
@click.option("--by", required=True, help="Who approves (recorded as cli:NAME in the audit log).")
@click.pass_obj
def approve(rt: Runtime, user: str, by: str) -> None:
    """Make USER's held clicks (`all`: everyone's) training data, in the order they were clicked."""
    _decide(rt, user, by, True)


@labellers_cmd.command("reject")
@click.argument("user")
@click.option("--by", required=True, help="Who rejects (recorded as cli:NAME in the audit log).")
@click.pass_obj
def reject(rt: Runtime, user: str, by: str) -> None:
    """Keep USER's held clicks (`all`: everyone's) on record and out of training for good."""
    _decide(rt, user, by, False)
