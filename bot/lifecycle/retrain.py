"""A retrain run as three queued jobs, so the GPU node needs only Redis and the artifact store.

    control  prepare_job   snapshot the store into the artifact store, queue the two jobs below
    train    trainer.jobs.train_signed   (GPU node) check the control side's signature, train, upload, score
    control  conclude_job  (after the train job, even when it failed) gate, promote, report

The SQL store, the production pointer and the Slack token stay on the CPU side.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

from rq.job import Dependency
from slack_sdk import WebClient

from bot.error_ids import logged, ours, shown
from bot.lifecycle.gate import gate_and_route, promoted_by
from bot.lifecycle.jobs import (
    CONCLUDE_JOB,
    CONTROL_TIMEOUT_S,
    DEAD_AFTER_S,
    PREPARE_JOB,
    QUEUED_TRAIN_JOB,
    RETRAIN_TIMEOUT_S,
    cancel_key,
    conclude_job_id,
    retrain_job_id,
    signed_train_kwargs,
    train_job_id,
)
from bot.lifecycle.reports import headline_metrics, post_report
from bot.lifecycle.runs import ControlError, job_lost
from bot.lifecycle.training import load_config, run_config, shared_encoder, snapshot_for_training
from bot.queues import Queues, sweep_tickets
from bot.runtime import Runtime, slack_client
from bot.settings import Settings
from bot.store import audit
from bot.store.base import as_utc
from bot.store.runs import active_run, active_runs, finish_run, get_run, is_paused, record_snapshot, start_run
from bot.trail.bases import approved_licenses
from inference.errors import RegistryError, TuesdayError
from inference.registry import RESULT

log = logging.getLogger(__name__)

RESULT_TTL_S = 7 * 24 * 3600  # the train job's summary waits this long for its gate job


class UntrustedResult(TuesdayError):
    """The train job's result in Redis names no version this run trained."""


def stored_result(runtime: Runtime, said, run_id: int) -> dict:
    """The train job's result as the training host stored it beside its version (create-only), not as Redis holds it.

    Only the version's name is taken from Redis; the version's manifest and its result must both name this
    run (the run id reached the GPU node in the signed job), so a rewritten result cannot promote another
    version or better numbers.
    """
    name = said.get("version") if isinstance(said, dict) else None
    try:
        raw = runtime.registry.paper(name, RESULT) if isinstance(name, str) else None
        manifest_run = runtime.registry.get(name).manifest.get("run") if raw is not None else None
    except RegistryError:
        raw = manifest_run = None
    if raw is None:
        raise UntrustedResult("the train job's result names no version with a stored result; nothing was gated")
    stored = json.loads(raw)
    if stored.get("run") != run_id or manifest_run != run_id or stored.get("version") != name:
        raise UntrustedResult(f"version {name} was not trained by run {run_id}; nothing was gated")
    return stored


def _fail(runtime: Runtime, slack: WebClient | None, run_id: int, error: str, production_before: str | None):
    run = finish_run(runtime.sessions, run_id, "failed", error=error, production_before=production_before)
    post_report(runtime, slack, run)
    return run


def prepare_run(runtime: Runtime, queues: Queues, slack: WebClient | None, run_id: int) -> dict:
    """Snapshot the store for run `run_id` and queue its train and gate jobs; safe against redelivery."""
    sessions = runtime.sessions
    run = start_run(sessions, run_id)
    if run is None:
        current = get_run(sessions, run_id)
        if current is None:
            raise LookupError(f"no retrain run {run_id} in the store")
        log.info("retrain run %s is %s already; nothing to do", run_id, current.status)
        return current.to_dict()
    runtime = runtime.for_task(run.task)  # the run retrains one task: its data, its production
    production = runtime.production.name()
    if is_paused(sessions):
        return _fail(runtime, slack, run_id, "paused before the run started", production).to_dict()
    try:
        # Taken before reading: a label stored while the snapshot is written counts toward the next run.
        frozen_at = datetime.now(timezone.utc)
        # bot.trail.curation decides what is in it: no unsettled conflicts, only approved data when asked.
        snapshot = snapshot_for_training(runtime)
        record_snapshot(sessions, run_id, snapshot["snapshot_key"], frozen_at,
                        data_approval_id=snapshot["data_approval"])
        config = run_config(runtime, load_config(runtime.settings.retrain_config))
        # Signed here, where the approvals were read from SQL: the GPU node trusts nothing else from Redis.
        train_args = {**snapshot, "config": config, "production": production, "run_id": run_id,
                      "licenses": approved_licenses(sessions), "shared_encoder": shared_encoder(runtime)}
        train, _ = queues.enqueue("train", QUEUED_TRAIN_JOB, job_id=train_job_id(run_id), timeout=RETRAIN_TIMEOUT_S,
                                  result_ttl=RESULT_TTL_S, failure_ttl=RESULT_TTL_S,
                                  kwargs=signed_train_kwargs(runtime.settings, train_job_id(run_id), train_args))
        # allow_failure: the gate job also runs when training failed, to close the run and say why.
        queues.enqueue("control", CONCLUDE_JOB, run_id, job_id=conclude_job_id(run_id), timeout=CONTROL_TIMEOUT_S,
                       depends_on=Dependency(jobs=[train_job_id(run_id)], allow_failure=True))
    except BaseException as exc:
        # Recorded and reported, then re-raised so RQ marks the job failed with its traceback.
        _fail(runtime, slack, run_id, _failure(exc, "retrain run: preparing", run_id), production)
        raise
    log.info("retrain run %s: snapshot %s, training queued", run_id, snapshot["snapshot_key"])
    return get_run(sessions, run_id).to_dict()


def _failure(exc: BaseException, what: str, run_id: int) -> str:
    """A run's error as the report and status show it: our own message, else the type and an error id (logged)."""
    return f"{type(exc).__name__}: {exc}" if ours(exc) else shown(exc, logged(log, exc, what, run=run_id))


def _train_error(job) -> str:
    """A failed train job's error: the last line of its traceback when the exception is one of ours, else its type
    and the error id the training worker logged it under."""
    result = job.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    if "AbandonedJobError" in text:
        return "the training worker died during the job (RQ found it abandoned); production is unchanged"
    if not text:
        return f"the train job ended as {job.get_status()}"
    last = text.splitlines()[-1]
    kind = last.split(":", 1)[0].strip().rsplit(".", 1)[-1]
    if kind in _our_error_names():
        return last
    # The training worker logged it with an error id (bot.worker.jobs); its message is in no report.
    eid = re.search(r"error id ([0-9a-f]{8})", last)
    return f"{kind[:80]} in the train job {job.id}" + (f" (error id {eid.group(1)})" if eid else "")


def _our_error_names() -> set[str]:
    """The names of every TuesdayError class loaded here, and the trainer's (which this process never imports)."""
    names, todo = {"ConfigError"}, [TuesdayError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def conclude_run(runtime: Runtime, queues: Queues, slack: WebClient | None, run_id: int) -> dict:
    """Gate, promote and report run `run_id` once its train job ended; safe against redelivery."""
    sessions = runtime.sessions
    run = get_run(sessions, run_id)
    if run is None:
        raise LookupError(f"no retrain run {run_id} in the store")
    if run.status != "running":
        log.info("retrain run %s is %s already; nothing to do", run_id, run.status)
        return run.to_dict()
    runtime = runtime.for_task(run.task)
    production_before = runtime.production.name()
    job = queues.fetch(train_job_id(run_id))
    if job is None:
        return _fail(runtime, slack, run_id, "the train job's result is no longer in Redis", production_before).to_dict()
    if job.get_status() != "finished":
        return _fail(runtime, slack, run_id, _train_error(job), production_before).to_dict()
    try:
        summary = stored_result(runtime, job.return_value(), run_id)
    except UntrustedResult as exc:
        return _fail(runtime, slack, run_id, str(exc), production_before).to_dict()
    try:
        verdict = gate_and_route(runtime, summary, by=promoted_by(run), note=f"retrain run {run_id}")
    except BaseException as exc:
        _fail(runtime, slack, run_id, _failure(exc, "retrain run: gate", run_id), production_before)
        raise
    run = finish_run(sessions, run_id, verdict.status, candidate_version=summary["version"],
                     production_before=summary["production"], why=verdict.why,
                     metrics={"candidate": headline_metrics(summary["metrics"]),
                              "production": headline_metrics(summary.get("production_metrics")),
                              "families": {name: headline_metrics(part.get("metrics") or None)
                                           for name, part in summary.get("families", {}).items()},
                              "family": summary.get("family"), "choice": summary.get("choice"),
                              "calibration": summary.get("calibration"),
                              "label_changes": summary.get("label_changes"),
                              "cost": summary.get("cost"),  # what the run cost (bot.monitor.measures prices it)
                              "shadow": verdict.shadow})
    log.info("retrain run %s: %s %s (%s)", run.id, run.candidate_version, run.status, run.why)
    post_report(runtime, slack, run)
    if verdict.promoted and summary["production"] is None:
        # Tickets that arrived before any model waited for this one: suggest them now.
        log.info("first model promoted: %d waiting ticket(s) queued", sweep_tickets(runtime, queues, grace=None))
    return get_run(sessions, run_id).to_dict()


def _last_beat(job) -> datetime | None:
    beat = job.last_heartbeat or job.started_at
    return None if beat is None else as_utc(beat)


def check_training(runtime: Runtime, queues: Queues, slack: WebClient | None, *, now: datetime | None = None):
    """Close each task's running retrain as failed when its training job stopped beating; returns the first, else None."""
    closed = [_check_run(runtime.for_task(run.task), queues, slack, run, now) for run in active_runs(runtime.sessions)]
    return next((c for c in closed if c is not None), None)


def _check_run(runtime: Runtime, queues: Queues, slack: WebClient | None, run, now: datetime | None):
    if run.status != "running":
        return None
    job = queues.fetch(train_job_id(run.id))
    if job is None or job.get_status() != "started":
        return None  # not started yet (waiting for a GPU worker), or over: its gate job handles it
    last = _last_beat(job)
    now = now or datetime.now(timezone.utc)
    if last is None or (now - last).total_seconds() < DEAD_AFTER_S:
        return None
    error = (f"the training host stopped answering: no heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC "
             f"({(now - last).total_seconds() / 60:.0f} min); production is unchanged")
    failed = _fail(runtime, slack, run.id, error, runtime.production.name())
    _cancel_jobs(queues, run.id)
    log.warning("retrain run %s: %s", run.id, error)
    return failed.to_dict()


def recover_run(runtime: Runtime, queues: Queues, slack: WebClient | None):
    """Each task's active run, found again when Redis holds none of its live jobs; returns the first done, else None.

    Queued: its first job is queued again (the row is the record). Running with the train job's
    result still in Redis: its gate job is queued again. Running without it: closed as failed.
    """
    done = [_recover(runtime.for_task(run.task), queues, slack, run) for run in active_runs(runtime.sessions)]
    return next((d for d in done if d is not None), None)


def _recover(runtime: Runtime, queues: Queues, slack: WebClient | None, run):
    if not job_lost(queues, run):
        return None
    if run.status == "queued":
        queues.clear_ended(run.job_id)
        queues.enqueue("control", PREPARE_JOB, run.id, job_id=run.job_id, timeout=CONTROL_TIMEOUT_S)
        log.warning("retrain run %s: its job was lost; queued again", run.id)
        return {"run": run.id, "requeued": run.job_id}
    train = queues.fetch(train_job_id(run.id))
    if train is not None and train.get_status() in ("finished", "failed"):
        queues.clear_ended(conclude_job_id(run.id))
        queues.enqueue("control", CONCLUDE_JOB, run.id, job_id=conclude_job_id(run.id), timeout=CONTROL_TIMEOUT_S)
        log.warning("retrain run %s: its gate job was lost; queued again", run.id)
        return {"run": run.id, "requeued": conclude_job_id(run.id)}
    failed = _fail(runtime, slack, run.id, "its jobs were lost from Redis before the training ended; "
                   "production is unchanged", runtime.production.name())
    return failed.to_dict()


def _cancel_jobs(queues: Queues, run_id: int) -> None:
    """Take a run's jobs out of the queues; a started train job is told to stop at its next heartbeat."""
    for job_id in (retrain_job_id(run_id), train_job_id(run_id), conclude_job_id(run_id)):
        job = queues.fetch(job_id)
        if job is None:
            continue
        status = job.get_status()
        if status == "started":
            queues.connection.set(cancel_key(job_id), "1", ex=24 * 3600)
        elif status in ("queued", "deferred", "scheduled"):
            job.cancel()


def cancel_run(runtime: Runtime, queues: Queues, slack: WebClient | None, *, by: str) -> dict:
    """Cancel the task's queued or running retrain (`/tuesday retrain cancel`); production is left as it is."""
    run = active_run(runtime.sessions, runtime.task.name)
    if run is None:
        raise ControlError(f"no retrain of {runtime.task.name} is queued or running" if len(runtime.tasks) > 1
                           else "no retrain is queued or running")
    run = finish_run(runtime.sessions, run.id, "cancelled", error=f"cancelled by {by}",
                     production_before=runtime.production.name())
    audit.record(runtime.sessions, by, "retrain.cancel", f"run {run.id}", task=run.task)
    _cancel_jobs(queues, run.id)
    post_report(runtime, slack, run)
    return run.to_dict()


def _with_parts(step, run_id: int) -> dict:
    # Built at call time from TUESDAY_* and .env: each worker host has its own settings.
    from rq import get_current_job

    settings = Settings()
    job = get_current_job()
    # The worker's own Redis connection queues the next jobs (one embedded server stays one).
    queues = Queues(job.connection) if job is not None else Queues.from_settings(settings)
    try:
        return step(Runtime(settings), queues, slack_client(settings), int(run_id))
    finally:
        if job is None:
            queues.close()


def prepare_job(run_id: int) -> dict:
    """Queued job (CPU worker, "control"): snapshot and queue the training of run `run_id`."""
    return _with_parts(prepare_run, run_id)


def conclude_job(run_id: int) -> dict:
    """Queued job (CPU worker, "control"): gate, promote and report run `run_id`."""
    return _with_parts(conclude_run, run_id)
