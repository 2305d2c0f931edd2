"""`tuesday status`, `retrain`, `rollback`, `pause`, `resume`: the slash commands' admin side in a terminal."""

from __future__ import annotations

import getpass
import json

import click

from bot.lifecycle import runs
from bot.runtime import Runtime
from bot.store.runs import set_paused


def _who(by: str | None) -> str:
    return by or getpass.getuser()


def _queues(rt: Runtime):
    from bot.queues import Queues

    return Queues.from_settings(rt.settings)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(rt: Runtime, as_json: bool) -> None:
    """Production model and its metrics, new labels, queues, workers, last retrain, pause."""
    from bot.lifecycle.status import gather_status, status_text

    queues = _queues(rt)
    try:
        data = gather_status(rt, queues)
    finally:
        queues.close()
    click.echo(json.dumps(data, indent=2, default=str) if as_json else status_text(data).replace("*", ""))


@click.command()
@click.option("--by", help="Who asks (default: your login name).")
@click.option("--cancel", is_flag=True, help="Cancel the queued or running retrain instead (production stays).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.pass_obj
def retrain(rt: Runtime, by: str | None, cancel: bool, as_json: bool) -> None:
    """Queue a retrain (a CPU worker snapshots, the GPU node trains; joins one already queued or running)."""
    from redis.exceptions import RedisError

    from bot.lifecycle.status import retrain_reply

    queues = _queues(rt)
    if cancel:
        from bot.lifecycle.retrain import cancel_run
        from bot.runtime import slack_client

        try:
            run = cancel_run(rt, queues, slack_client(rt.settings), by=f"cli:{_who(by)}")
        finally:
            queues.close()
        click.echo(json.dumps(run, indent=2, default=str) if as_json else
                   f"retrain run {run['id']} cancelled; production is unchanged ({run['production_before'] or 'none'})")
        return
    try:
        run, created = runs.request_retrain(rt, queues, requested_by=_who(by), trigger="cli")
    except RedisError as exc:
        raise click.ClickException(f"the job queue is unreachable, nothing was queued: {exc}") from None
    finally:
        queues.close()
    data = {**run.to_dict(), "created": created}
    click.echo(json.dumps(data, indent=2, default=str) if as_json else retrain_reply(run.to_dict(), created))


@click.command()
@click.argument("version")
@click.option("--by", help="Who rolls back (default: your login name).")
@click.option("--reason", default="", help="Why, for the production history.")
@click.pass_obj
def rollback(rt: Runtime, version: str, by: str | None, reason: str) -> None:
    """Put VERSION, which was production before, back in production (one logged SQL transaction)."""
    event = runs.rollback(rt.production, version, by=f"cli:{_who(by)}", note=reason)
    click.echo(f"production is now {event['version']} (was {event['previous'] or 'none'})")


@click.command()
@click.option("--by", help="Who pauses (default: your login name).")
@click.pass_obj
def pause(rt: Runtime, by: str | None) -> None:
    """Stop retraining (suggestions and feedback go on) until `tuesday resume`."""
    changed = set_paused(rt.sessions, True, by=f"cli:{_who(by)}")
    click.echo("retraining paused" if changed else "retraining was already paused")


@click.command()
@click.option("--by", help="Who resumes (default: your login name).")
@click.pass_obj
def resume(rt: Runtime, by: str | None) -> None:
    """Allow retraining again."""
    changed = set_paused(rt.sessions, False, by=f"cli:{_who(by)}")
    click.echo("retraining resumed" if changed else "retraining was not paused")
