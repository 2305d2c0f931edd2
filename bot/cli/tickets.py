"""`tuesday tickets --failed | --retry ID... | --retry-all`: the tickets Tuesday gave up on, and a second chance."""

from __future__ import annotations

import json

import click

from bot.runtime import Runtime


@click.command()
@click.option("--failed", "show", is_flag=True, help="List the tickets given up on (the default).")
@click.option("--retry", "ids", multiple=True, type=int, metavar="ID", help="Queue this failed ticket again.")
@click.option("--retry-all", is_flag=True, help="Queue every failed ticket again.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tickets(rt: Runtime, show: bool, ids: tuple[int, ...], retry_all: bool, as_json: bool) -> None:
    """Tickets whose suggest job failed TUESDAY_SUGGEST_MAX_ATTEMPTS times; --retry forgets their failures."""
    from redis.exceptions import RedisError

    from bot.queues import Queues, suggest_job_id
    from bot.store.tickets import failed_tickets, retry_tickets

    if ids or retry_all:
        again = retry_tickets(rt.sessions, None if retry_all else list(ids))
        queued = []
        queues = Queues.from_settings(rt.settings)
        try:
            for ticket_id in again:  # the sweeper would within minutes; now is better for whoever asked
                waiting = queues.fetch(suggest_job_id(ticket_id))
                if waiting is not None and waiting.get_status() != "started":
                    waiting.delete()  # an RQ retry scheduled for later: run it now instead
                queues.enqueue_suggest(ticket_id)
                queued.append(ticket_id)
        except RedisError as exc:  # the sweeper queues them once Redis answers
            click.echo(f"queues unreachable ({type(exc).__name__}): the sweeper queues them later", err=True)
        finally:
            queues.close()
        unknown = sorted(set(ids) - set(again))  # no such ticket, or not one that failed
        click.echo(json.dumps({"retried": again, "queued": queued, "not_failed": unknown}) if as_json
                   else f"{len(again)} ticket(s) queued again: {', '.join(map(str, again)) or 'none'}"
                   + (f"; not failed tickets (nothing done): {', '.join(map(str, unknown))}" if unknown else ""))
        if unknown and not again:
            raise SystemExit(1)
        return
    rows = [{"id": t.id, "source": t.source, "external_id": t.external_id, "attempts": t.attempts,
             "last_error": t.last_error, "failed_at": t.failed_at.isoformat(timespec="seconds")}
            for t in failed_tickets(rt.sessions)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no failed tickets")
    for r in rows:
        click.echo(f"#{r['id']} {r['source']}:{r['external_id']}  {r['attempts']} attempts, last {r['last_error']}, "
                   f"given up {r['failed_at'][:16].replace('T', ' ')}")
