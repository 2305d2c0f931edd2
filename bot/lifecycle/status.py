"""What `/tuesday` and `tuesday status` say: one gatherer, then pure text builders over plain dicts."""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import RedisError

from bot.error_ids import logged, shown
from bot.lifecycle.reports import TRIGGER_WORDS, metrics_line, who
from bot.lifecycle.runs import labels_since_last_training
from bot.lifecycle.shadow import shadow_summary, status_line
from bot.monitor.label_priors import prior_line, prior_summary
from bot.monitor.measures import window
from bot.monitor.promise import rate_line
from bot.monitor.promise import summary as promise_summary
from bot.queues import count_workers
from bot.settings import posting
from bot.store.base import as_utc
from bot.store.runs import active_run, last_run, pause_state
from bot.store.masking import awaiting_masking
from bot.store.tickets import failed_count, waiting_count
from bot.trail import bases
from bot.trail.bases import license_line, version_licenses
from inference.artifacts import ArtifactError
from inference.calibration import promise_lines
from inference.errors import RegistryError

log = logging.getLogger(__name__)

HELP = """*`/tuesday` commands*
• `/tuesday status`: production model, its holdout metrics, new labels, queues, workers, last retrain (anyone)
• `/tuesday health`: the last 7 days' acceptance, overrides, review time, latency, cost, drift and the open alerts (anyone)
• `/tuesday retrain [task]`: train a new version of each task (or of one) on the labels so far; it goes live only if it beats that task's production (managers)
• `/tuesday eval [task]`: each task's production holdout metrics (managers)
• `/tuesday review <version>`: a signed link to a version's review sheet: each holdout ticket, failures first (managers)
• `/tuesday conflicts`: tickets reviewers labelled differently, to settle (they stay out of training until then) (managers)
• `/tuesday data`: labelled examples since the last data approval, counted, to approve for training (managers)
• `/tuesday labellers`: who teaches Tuesday, clicks held from others, each person's labels and agreement; `/tuesday labellers approve|reject <@person>` (managers)
• `/tuesday pause` / `/tuesday resume`: stop or allow retraining; suggestions go on either way (admins)
• `/tuesday rollback [task] <version>`: put a version that was its task's production before back in production (admins)
• `/tuesday shadow [task]`: the version running in shadow beside its task's production on live tickets (never shown) and how the two compare; `/tuesday shadow <version>` / `/tuesday shadow [task] off` start and end it (admins)
• `/tuesday base` / `/tuesday base approve <name>`: base models' license notes; training needs an approved one (admins)
• `/tuesday audit`: the newest admin actions from the audit log (admins)
• `/tuesday dashboard`: a signed link that expires (a day by default) to the dashboard: volume, acceptance, overrides per label, drift, versions, with charts (admins)
• `/tuesday help`: this list"""


BUCKET_WAIT_S = 1.5  # what one status waits on the artifact store in all (Slack answers a command in 3 s)
UNKNOWN = "unknown (the artifact store did not answer in time)"


class Deadline:
    """One status's time for reads that touch the artifact store; what misses it is left out, not waited on.
    A read that missed finishes in a daemon thread (the registry keeps what it read: the next status has it),
    so neither the reply nor the end of a `tuesday status` process waits for it."""

    def __init__(self, wait_s: float = BUCKET_WAIT_S):
        self.until = time.monotonic() + wait_s

    def run(self, fn, *args):
        """(True, fn(*args)) if it returns in the time left, else (False, None)."""
        box: dict = {}

        def read() -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001  handed to the caller below
                box["error"] = exc

        thread = threading.Thread(target=read, name="status-bucket", daemon=True)
        thread.start()
        thread.join(max(0.0, self.until - time.monotonic()))
        error = box.get("error")
        if thread.is_alive() or isinstance(error, (RegistryError, ArtifactError)):
            why = "no answer in time" if thread.is_alive() else type(error).__name__
            log.warning("status: %s not read (%s)", getattr(fn, "__name__", "a read"), why)
            return False, None
        if error is not None:
            raise error
        return True, box["value"]


def production_within(runtime, deadline: Deadline) -> tuple[str | None, object | None]:
    """(production version's name, its VersionInfo or None when the artifact store did not answer in time).
    The name is the store's (SQL); the manifest is the bucket's."""
    name = runtime.production.name()
    if name is None:
        return None, None
    return name, deadline.run(runtime.registry.get, name)[1]


def labels_within(runtime, deadline: Deadline):
    """Labels since the task's last training (which reads the versions' manifests), or UNKNOWN."""
    done, count = deadline.run(labels_since_last_training, runtime)
    return count if done else UNKNOWN


def _unread(name: str) -> dict:
    return {"version": name, "metrics": None, "calibration": None, "licenses": [],
            "unread": "the artifact store did not answer in time: holdout numbers left out"}


def gather_status(runtime, queues) -> dict:
    """Everything the status text shows, as JSON-safe data; Redis being down is reported, not raised, and the
    artifact store is waited on for at most BUCKET_WAIT_S in all."""
    deadline = Deadline()
    name, production = production_within(runtime, deadline)
    history = runtime.production.history()
    promoted = next((e for e in reversed(history) if name and e.get("version") == name), None)
    flag = pause_state(runtime.sessions)
    settings = runtime.settings
    data = {
        "production": None if name is None else {
            **(_unread(name) if production is None else {
                "version": production.name, "metrics": production.metrics,
                "calibration": production.manifest.get("calibration"),  # its thresholds' promise
                "licenses": version_licenses(production.manifest)}),
            "since": promoted.get("at") if promoted else None, "by": promoted.get("by") if promoted else None},
        "promise": _promise(runtime, name, production),  # realised rates, the newest exchangeability check
        "bases_unapproved": [n.name for n in bases.notes(runtime.sessions) if not n.approved],
        "labels_since_training": labels_within(runtime, deadline),
        "waiting_tickets": waiting_count(runtime.sessions, posts=posting(settings), task=runtime.tasks.routing_name),
        "failed_tickets": failed_count(runtime.sessions),
        "awaiting_masking": awaiting_masking(runtime.sessions)[0],
        "retrain_after_labels": settings.retrain_after_labels,
        "suggest_max_attempts": settings.suggest_max_attempts,
        "retrain_schedule_hours": settings.retrain_schedule_hours,
        "paused": flag is not None,
        "paused_by": flag.set_by if flag else None,
        "paused_at": as_utc(flag.set_at).isoformat(timespec="seconds") if flag else None,
        "last_run": _as_dict(last_run(runtime.sessions, runtime.task.name)),
        "active_run": _as_dict(active_run(runtime.sessions, runtime.task.name)),
        "shadow": shadow_summary(runtime),  # the version in shadow and its comparison so far, or None
        "label_prior": prior_summary(runtime),  # label frequencies of the live stream (TUESDAY_PRIOR_ADJUSTMENT)
        "queues": None, "workers": None, "queue_error": None,
    }
    if len(runtime.tasks) > 1:  # the routing task above; every other field's own line
        data["task"] = runtime.task.name
        data["fields"] = [_field_status(scoped, deadline) for scoped in runtime.each_task()[1:]]
    try:
        data["queues"] = {name: queue.count for name, queue in queues.queues.items()}
        data["workers"] = count_workers(queues)
    except RedisError as exc:
        data["queue_error"] = shown(exc, logged(log, exc, "status: counting the queues"))
    return data


PROMISE_DAYS = 7  # the window of the realised rates status shows


def _promise(runtime, name: str | None, info) -> dict | None:
    """The production version's realised rates over the last PROMISE_DAYS days and its newest check (SQL only)."""
    calibration = info.manifest.get("calibration") if info is not None else None
    return promise_summary(runtime, name, calibration, *window(PROMISE_DAYS))


def promise_status_lines(promise: dict | None, unread: bool = False) -> list[str]:
    """The banner while the promise is not valid now, and the realised rates beside the promise lines."""
    if not promise:
        return []
    lines = [f"   :warning: *{promise['banner']}*"] if promise["banner"] else []
    rates = promise["realised"]
    said = [line for line in (rate_line("wrong among shown", rates["shown"]),
                              rate_line("wrong escalations", rates["escalations"])) if line]
    if not unread and said:
        lines.append(f"   clicked in the last {PROMISE_DAYS} days ({100 * rates['level']:.3g} % intervals): "
                     + "; ".join(said))
    return lines


def _field_status(runtime, deadline: Deadline) -> dict:
    """One more task's production, labels since its last training and its runs."""
    name, live = production_within(runtime, deadline)
    return {"task": runtime.task.name, "promise": _promise(runtime, name, live),
            "production": None if name is None else _unread(name) if live is None else {
                "version": live.name, "metrics": live.metrics, "calibration": live.manifest.get("calibration")},
            "labels_since_training": labels_within(runtime, deadline),
            "last_run": _as_dict(last_run(runtime.sessions, runtime.task.name)),
            "active_run": _as_dict(active_run(runtime.sessions, runtime.task.name)),
            "shadow": shadow_summary(runtime)}


def settings_attempts(data: dict) -> int | str:
    return data.get("suggest_max_attempts") or "several"


def field_lines(field: dict) -> list[str]:
    live = field["production"]
    head = f"• *{field['task']}*: " + (f"production *{live['version']}*, holdout {metrics_line(live['metrics'])}"
                                        if live else "no production model yet")
    lines = [head, f"   labels since last training: {field['labels_since_training']}"]
    if live and live.get("unread"):
        lines.append(f"   :warning: {live['unread']}")
    elif live:
        lines += [f"   {line}" for line in promise_lines(live.get("calibration"))]
    if live:
        lines += promise_status_lines(field.get("promise"), bool(live.get("unread")))
    if field["active_run"]:
        lines.append(f"   in progress: {run_line(field['active_run'])}")
    if field["last_run"] and field["last_run"]["id"] != (field["active_run"] or {}).get("id"):
        lines.append(f"   last retrain: {run_line(field['last_run'])}")
    if field.get("shadow"):
        lines.append("   " + status_line(field["shadow"]))
    return lines


def _as_dict(run) -> dict | None:
    return None if run is None else run.to_dict()


def run_line(run: dict) -> str:
    """One line about a retrain run, whatever its state."""
    head = f"run {run['id']} ({TRIGGER_WORDS.get(run['trigger'], run['trigger'])}, {who(run['requested_by'])})"
    status = run["status"]
    if status in ("queued", "running"):
        return f"{head}: {status} since {(run['started_at'] or run['created_at'])[:16].replace('T', ' ')} UTC"
    when = (run["finished_at"] or "")[:16].replace("T", " ")
    if status == "failed":
        return f"{head}: failed at {when} UTC: {run['error'] or run['why'] or 'no error recorded'}"
    if status == "cancelled":
        return f"{head}: {run['error'] or 'cancelled'} at {when} UTC"
    shadow = (run.get("metrics") or {}).get("shadow") or {}
    if status == "passed" and shadow.get("status") == "waiting":
        return (f"{head}: {run['candidate_version']} passed the gate at {when} UTC and runs in shadow until agents "
                f"label {shadow['min_tickets']} of its live tickets ({run['why']})")
    if status == "passed":
        return (f"{head}: {run['candidate_version']} passed the gate at {when} UTC and awaits a manager's sign-off "
                f"({run['why']})")
    verdict = "promoted to production" if status == "promoted" else "kept as candidate"
    signed = f", signed off by {who(run['signed_off_by'])}" if run.get("signed_off_by") else ""
    return f"{head}: {run['candidate_version']} {verdict}{signed} at {when} UTC ({run['why']})"


def status_text(data: dict) -> str:
    """The reply to `/tuesday status` (Slack mrkdwn, also fine in a terminal)."""
    lines = ["*Tuesday status*"]
    live = data["production"]
    routing = f" of *{data['task']}* (the routing task)" if data.get("task") else ""
    if live is None:
        lines.append(f"• production{routing}: none yet (`/tuesday retrain` or `tuesday train`)")
    else:
        since = f", since {live['since'][:16].replace('T', ' ')} UTC by {live['by']}" if live.get("since") else ""
        lines.append(f"• production{routing}: *{live['version']}*{since}")
        lines.append(f"   holdout: {metrics_line(live['metrics'])}" if not live.get("unread")
                     else f"   :warning: {live['unread']}")
        lines += [] if live.get("unread") else [f"   {line}" for line in promise_lines(live.get("calibration"))]
        lines += promise_status_lines(data.get("promise"), bool(live.get("unread")))
        lines += [f"   base {license_line(lic)}" for lic in live.get("licenses") or []]
    auto = (f"auto-retrain at {data['retrain_after_labels']}" if data["retrain_after_labels"] else "auto-retrain off")
    if data.get("retrain_schedule_hours"):
        auto += f", scheduled every {data['retrain_schedule_hours']:g} h"
    lines.append(f"• labels since last training: {data['labels_since_training']} ({auto})")
    waiting = data.get("waiting_tickets") or 0
    if waiting:
        why = " (no production model yet: they are suggested when the first one is promoted)" if live is None else ""
        lines.append(f"• tickets waiting for a suggestion: {waiting}{why}")
    unmasked = data.get("awaiting_masking") or 0
    if unmasked:
        lines.append(f"• tickets waiting for the worker's masking of names and addresses: {unmasked} "
                     f"(a suggest worker does it first; none running keeps them waiting)")
    failed = data.get("failed_tickets") or 0
    if failed:
        lines.append(f"• :warning: tickets given up on: {failed} (their suggest job failed "
                     f"{settings_attempts(data)} times; `tuesday tickets --failed` lists them, `--retry` queues them again)")
    if data["queue_error"]:
        lines.append(f"• queues: unreachable ({data['queue_error']})")
    else:
        depths = ", ".join(f"{name} {count}" for name, count in data["queues"].items())
        workers = ", ".join(f"{name} {count}" for name, count in data["workers"].items())
        lines.append(f"• queue depths: {depths}")
        lines.append(f"• workers alive: {workers}")
    if data["active_run"] and data["active_run"]["id"] != (data["last_run"] or {}).get("id"):
        lines.append(f"• in progress: {run_line(data['active_run'])}")
    lines.append(f"• last retrain: {run_line(data['last_run']) if data['last_run'] else 'none yet'}")
    for field in data.get("fields") or []:
        lines += field_lines(field)
    if data.get("shadow"):
        lines.append(status_line(data["shadow"]))
    if data.get("label_prior"):
        lines.append(prior_line(data["label_prior"]))
    if data.get("bases_unapproved"):
        lines.append(f"• base models not approved (training refuses them): {', '.join(data['bases_unapproved'])} "
                     "(`/tuesday base`)")
    if data["paused"]:
        lines.append(f"• *paused* by {who(data['paused_by'])} at {data['paused_at'][:16].replace('T', ' ')} UTC: "
                     "no retrains until `/tuesday resume` (suggestions go on)")
    else:
        lines.append("• not paused")
    return "\n".join(lines)


def retrain_reply(run: dict, created: bool) -> str:
    """The ephemeral answer to a retrain request."""
    if created:
        return (f"Retrain queued as run {run['id']}. The report will be posted in the triage channel; "
                "the new version goes live only if it beats production on the holdout.")
    state = "already running" if run["status"] == "running" else "already queued"
    return (f"A retrain is {state} as run {run['id']} (requested by {who(run['requested_by'])}); "
            "your request joins it.")


def eval_reply(production: dict | None, holdout_now: int) -> str:
    """Production's stored holdout metrics, saying plainly that they are not a fresh evaluation."""
    if production is None:
        return "No production model yet: `/tuesday retrain` trains and gates one."
    return (f"Production *{production['version']}* on the holdout, as measured when it was built: "
            f"{metrics_line(production['metrics'])}.\n"
            f"These are the stored numbers, not a new evaluation; the holdout now has {holdout_now} rows "
            "(`tuesday eval` re-scores it, and every retrain re-scores production on the current holdout).")
