"""`/tuesday ...`: retrain, eval, status, pause, resume, rollback, conflicts, data, help.

Every subcommand answers with one ephemeral ack. What runs before the ack is quick (a few SQL
queries, a Redis push, at most one usergroups.users.list call), well inside Slack's three
seconds; training itself is queued on "train" and reports back in the triage channel.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError

from bot.error_ids import logged, shown
from bot.lifecycle.retrain import cancel_run
from bot.lifecycle.runs import request_retrain, rollback
from bot.lifecycle.shadow import displaced_note, shadow_text, start_shadow, started_text, stop_shadow
from bot.lifecycle.status import HELP, eval_reply, gather_status, retrain_reply, status_text
from bot.links import Links, review_path
from bot.monitor.health import gather_health, health_text
from bot.monitor.pages import dashboard_link
from bot.runtime import slack_client
from bot.slack.listeners import trail_commands
from bot.slack.listeners.curation import do_conflicts, do_data, do_labellers
from bot.slack.roles import ADMIN, ANYONE, MANAGER, NotAllowed, check_role, is_admin
from bot.store.runs import set_paused
from bot.trail.curation import holdout_rows
from inference.errors import TuesdayError

log = logging.getLogger(__name__)

COMMAND = "/tuesday"


def task_argument(runtime, args: str) -> tuple[list, str]:
    """(the runtimes a command covers, the rest of its arguments): a first word naming a task picks that task,
    else every task (the routing task first)."""
    words = args.split()
    if words and words[0] in runtime.tasks.names:
        return [runtime.for_task(words[0])], " ".join(words[1:])
    return runtime.each_task(), args.strip()


def _unknown(runtime, command: str, rest: str) -> str:
    """The reply to arguments a command does not take (a mistyped task name retrains nothing)."""
    return (f"`{rest.split()[0]}` is not a task here: `/tuesday {command} [{'|'.join(runtime.tasks.names)}]`"
            + (" or `/tuesday retrain [task] cancel`" if command == "retrain" else "") + ".")


def _named(runtime, scoped) -> str:
    return f"*{scoped.task.name}*: " if len(runtime.tasks) > 1 else ""


def do_retrain(runtime, queues, user_id: str, args: str) -> str:
    scopes, rest = task_argument(runtime, args)
    if rest.lower() == "cancel":
        if not is_admin(runtime.settings, user_id):
            raise NotAllowed("only Tuesday's admins (TUESDAY_ADMINS) can cancel a retrain")
        if len(scopes) > 1:
            return f"Name the task whose retrain to cancel: `/tuesday retrain <{'|'.join(runtime.tasks.names)}> cancel`."
        run = cancel_run(scopes[0], queues, slack_client(runtime.settings), by=user_id)
        return f"Retrain run {run['id']} cancelled; production is unchanged ({run['production_before'] or 'none'})."
    if rest:
        return _unknown(runtime, "retrain", rest)
    replies = []
    for scoped in scopes:  # one run per task: each trains, gates and reports on its own
        run, created = request_retrain(scoped, queues, requested_by=user_id, trigger="command")
        replies.append(_named(runtime, scoped) + retrain_reply(run.to_dict(), created))
    return "\n".join(replies)


def do_eval(runtime, queues, user_id: str, args: str) -> str:
    # The stored numbers answer at once; a fresh holdout evaluation needs the model loaded, which
    # is work for a worker (and every retrain re-scores production anyway).
    scopes, rest = task_argument(runtime, args)
    if rest:
        return _unknown(runtime, "eval", rest)
    replies = []
    for scoped in scopes:
        live = scoped.production.info()
        held = len(holdout_rows(scoped.sessions, scoped.task, scoped.settings.holdout_fraction,
                                approval_required=scoped.settings.data_approval))
        replies.append(_named(runtime, scoped)
                       + eval_reply(None if live is None else {"version": live.name, "metrics": live.metrics}, held))
    return "\n".join(replies)


def do_status(runtime, queues, user_id: str, args: str) -> str:
    return status_text(gather_status(runtime, queues))


def do_pause(runtime, queues, user_id: str, args: str) -> str:
    if not set_paused(runtime.sessions, True, by=user_id):
        return "Retraining was already paused."
    return "Retraining is paused: no retrains (by command, label count or schedule) until `/tuesday resume`. " \
           "Suggestions and feedback go on."


def do_resume(runtime, queues, user_id: str, args: str) -> str:
    if not set_paused(runtime.sessions, False, by=user_id):
        return "Retraining was not paused."
    return "Retraining resumed."


def do_rollback(runtime, queues, user_id: str, args: str) -> str:
    scopes, rest = task_argument(runtime, args)
    version, _, note = rest.partition(" ")
    if not version:
        return ("Usage: `/tuesday rollback [task] <version>` (e.g. `/tuesday rollback v3`); `/tuesday status` shows "
                "each task's production.")
    # A version belongs to one task: its name says which (checked against a task named too).
    scoped = scopes[0] if len(scopes) == 1 else runtime.for_version(version)
    event = rollback(scoped.production, version, by=f"slack:{user_id}", note=note.strip())
    which = f"*{scoped.task.name}* production" if len(runtime.tasks) > 1 else "production"
    return f"Rolled back: {which} is now *{event['version']}* (was {event['previous'] or 'none'}); logged in history."


def do_review(runtime, queues, user_id: str, args: str) -> str:
    """A signed link to a version's review sheet (customer text, hence managers only)."""
    version = args.strip().split(" ")[0]
    if not version:
        return "Usage: `/tuesday review <version>` (e.g. `/tuesday review v3`); the retrain report names the candidate."
    runtime.registry.get(version)  # a clear "no model version" before handing out a link
    links = Links.for_runtime(runtime)
    return (f"Review sheet of *{version}*: <{links.url(review_path(version))}|open> · "
            f"<{links.url(review_path(version, 'csv'))}|CSV>. The link works for "
            f"{runtime.settings.link_ttl_hours:g} h for whoever holds it: it shows ticket text.")


def do_shadow(runtime, queues, user_id: str, args: str) -> str:
    """`shadow [task]` shows the comparison (anyone: numbers only); `shadow vN` (the version names its task) and
    `shadow [task] off` (no task: every task's) are for admins."""
    scopes, rest = task_argument(runtime, args)
    arg = rest.split(" ")[0]
    if not arg:
        return "\n".join(shadow_text(scoped) for scoped in scopes)
    if not is_admin(runtime.settings, user_id):
        raise NotAllowed("only Tuesday's admins (TUESDAY_ADMINS) can start or end shadow mode")
    if arg.lower() == "off":
        replies = []
        for scoped in scopes:
            ended = stop_shadow(scoped, by=f"slack:{user_id}")
            if ended:
                replies.append(f"Shadow mode ended: {ended} no longer labels live tickets." + displaced_note(scoped, ended))
        return "\n".join(replies) or "No version was in shadow."
    if len(scopes) == 1 and len(runtime.tasks) > 1 and not scopes[0].production.owns(arg):
        return f"{arg} is not a version of {scopes[0].task.name}: `/tuesday models` lists each field's versions."
    started = start_shadow(runtime, arg, by=f"slack:{user_id}")
    return started_text(runtime, started)


def do_health(runtime, queues, user_id: str, args: str) -> str:
    """The week's measures and the open alerts (numbers and label names only, never ticket text)."""
    return health_text(gather_health(runtime))


def do_dashboard(runtime, queues, user_id: str, args: str) -> str:
    """A fresh signed link to the dashboard (it shows ticket excerpts, hence admins only)."""
    hours = runtime.settings.dashboard_link_hours
    return (f"Tuesday's dashboard (acceptance, overrides per label, drift, versions): <{dashboard_link(runtime)}"
            f"|open>. The link works for {hours:g} h for whoever holds it (it shows ticket excerpts): keep it to "
            "yourself.")


def do_help(runtime, queues, user_id: str, args: str) -> str:
    return HELP


SUBCOMMANDS = {
    "retrain": (MANAGER, do_retrain),
    "eval": (MANAGER, do_eval),
    "health": (ANYONE, do_health),  # the week's measures and open alerts: numbers, no ticket text
    "status": (ANYONE, do_status),  # versions, counts, queues; never ticket text, so anyone may look
    "pause": (ADMIN, do_pause),
    "resume": (ADMIN, do_resume),
    "rollback": (ADMIN, do_rollback),
    "dashboard": (ADMIN, do_dashboard),  # a signed link; the pages show ticket excerpts
    "shadow": (ANYONE, do_shadow),  # starting and ending it checks for an admin itself
    "base": (ADMIN, trail_commands.do_base),
    "audit": (ADMIN, trail_commands.do_audit),
    "conflicts": (MANAGER, do_conflicts),  # ticket text and reviewers' reasons: not for anyone
    "data": (MANAGER, do_data),
    "labellers": (MANAGER, do_labellers),  # who labels, held clicks and their approval
    "review": (MANAGER, do_review),
    "help": (ANYONE, do_help),
}


def answer(runtime, queues, client, user_id: str, text: str) -> str | dict:
    """The reply to `/tuesday <text>` from user_id (text, or {"text", "blocks"}); our own errors become a short
    message, anything else its type and an error id (bot.error_ids) that is also in the log."""
    name, _, args = (text or "").strip().partition(" ")
    role, handler = SUBCOMMANDS.get(name.lower(), (ANYONE, None))
    if handler is None:
        prefix = f"Unknown command `{name}`.\n" if name else ""
        return prefix + HELP
    try:
        check_role(role, client, runtime.settings, user_id)
        return handler(runtime, queues, user_id, args)
    except TuesdayError as exc:
        return f":no_entry: {exc}"
    except SlackApiError as exc:
        log.warning("/tuesday %s: Slack said %s", name, exc.response.get("error"))
        return f":warning: could not check your user groups with Slack ({exc.response.get('error')})"
    except RedisError as exc:
        eid = logged(log, exc, f"/tuesday {name}", user=user_id)
        return (":warning: the job queue is unreachable right now; nothing was queued. Try again shortly "
                f"({shown(exc, eid)}).")
    except SQLAlchemyError as exc:
        eid = logged(log, exc, f"/tuesday {name}", user=user_id)
        return f":warning: Tuesday's database is unreachable right now. Try again shortly ({shown(exc, eid)})."
    except Exception as exc:  # noqa: BLE001  the edge: a bug answers with an id, its text stays out of Slack
        eid = logged(log, exc, f"/tuesday {name}", level=logging.ERROR, user=user_id)
        return f":warning: that went wrong on Tuesday's side ({shown(exc, eid)}); an admin can find it in the logs."


def register(app, runtime, queues) -> None:
    """Attach `/tuesday` to a bolt App; runtime and queues are the process's own."""

    def tuesday_command(ack, command, client):
        reply = answer(runtime, queues, client, command["user_id"], command.get("text", ""))
        ack(response_type="ephemeral", **(reply if isinstance(reply, dict) else {"text": reply}))

    app.command(COMMAND)(tuesday_command)
