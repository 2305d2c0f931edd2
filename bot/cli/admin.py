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
@click.option("--task", "task_name", help="Only this task; default: every task (one run each).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.pass_obj
def retrain(rt: Runtime, by: str | None, cancel: bool, task_name: str | None, as_json: bool) -> None:
    """Queue a retrain of each task (a CPU worker snapshots, the GPU node trains; joins one already queued or running)."""
    from redis.exceptions import RedisError

    from bot.lifecycle.status import retrain_reply

    scoped = rt.tasks_named(task_name)
    queues = _queues(rt)
    if cancel:
        from bot.lifecycle.retrain import cancel_run
        from bot.runtime import slack_client

        if len(scoped) > 1:
            queues.close()
            raise click.ClickException(f"name the task whose retrain to cancel: --task {'|'.join(rt.tasks.names)}")
        try:
            run = cancel_run(scoped[0], queues, slack_client(rt.settings), by=f"cli:{_who(by)}")
        finally:
            queues.close()
        click.echo(json.dumps(run, indent=2, default=str) if as_json else
                   f"retrain run {run['id']} cancelled; production is unchanged ({run['production_before'] or 'none'})")
        return
    results = []
    try:
        for one in scoped:
            run, created = runs.request_retrain(one, queues, requested_by=_who(by), trigger="cli")
            results.append((run.to_dict(), created))
    except RedisError as exc:
        raise click.ClickException(f"the job queue is unreachable, nothing more was queued: {exc}") from None
    finally:
        queues.close()
    data = [{**run, "created": created} for run, created in results]
    text = "\n".join((f"{run['task']}: " if len(rt.tasks) > 1 else "") + retrain_reply(run, created)
                     for run, created in results)
    click.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2, default=str) if as_json else text)


@click.command()
@click.argument("version")
@click.option("--by", help="Who rolls back (default: your login name).")
@click.option("--reason", default="", help="Why, for the production history.")
@click.option("--task", "task_name", help="The task VERSION belongs to (checked; the version's own task otherwise).")
@click.pass_obj
def rollback(rt: Runtime, version: str, by: str | None, reason: str, task_name: str | None) -> None:
    """Put VERSION, which was production of its task before, back in production (one logged SQL transaction)."""
    scoped = rt.for_task(task_name) if task_name else rt.for_version(version)
    event = runs.rollback(scoped.production, version, by=f"cli:{_who(by)}", note=reason)
    which = f"{scoped.task.name} production" if len(rt.tasks) > 1 else "production"
    click.echo(f"{which} is now {event['version']} (was {event['previous'] or 'none'})")


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
