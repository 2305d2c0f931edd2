"""`tuesday data` and `tuesday data approve`: the data approval of `/tuesday data`, in a terminal."""

from __future__ import annotations

import json

import click

from bot.runtime import Runtime
from bot.slack.curation_blocks import approved_text, data_text
from bot.trail import curation


def _plain(text: str) -> str:
    return text.replace("*", "").replace("`", "")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def data(ctx: click.Context, as_json: bool) -> None:
    """Labelled examples stored since the last data approval, per label and per source, and open conflicts."""
    if ctx.invoked_subcommand is not None:
        return
    rt: Runtime = ctx.obj
    pending = curation.pending_data(rt.sessions)
    if as_json:
        click.echo(json.dumps({**pending, "data_approval_required": rt.settings.data_approval}, indent=2))
        return
    text = _plain(data_text(pending, rt.settings.data_approval))
    if pending["examples"]:
        text += f"\napprove them: tuesday data approve --by NAME --up-to {pending['up_to']}"
    click.echo(text)


@data.command("approve")
@click.option("--by", required=True, help="Who approves (recorded as cli:NAME in the audit log).")
@click.option("--up-to", "up_to", type=int, help="Approve examples up to this id, as `tuesday data` showed it "
              "(default: every example stored now).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def data_approve(rt: Runtime, by: str, up_to: int | None, as_json: bool) -> None:
    """Approve the examples stored since the last approval for training."""
    approval = curation.approve_data(rt.sessions, up_to=up_to, by=f"cli:{by}")
    click.echo(json.dumps(approval, indent=2) if as_json else _plain(approved_text(approval)))
