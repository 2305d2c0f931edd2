"""Retrain requests and what holds them back: the triggers (command, label count, schedule), pause, rollback.

Pause freezes the model, not the bot. While paused, tickets are still taken in, suggestions
are still made by the current production model and stored, and button feedback is still
recorded (it becomes training data later); but production does not change by itself:
`/tuesday retrain` and `tuesday retrain` are refused, the label-count and schedule triggers stay
quiet, a run already queued is closed as failed ("paused") when a worker picks it up, and a run
already training finishes but its candidate is not promoted. Rollback is still allowed, since it
is what an admin reaches for while paused.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot.lifecycle.jobs import CONTROL_TIMEOUT_S, PREPARE_JOB, conclude_job_id, retrain_job_id, train_job_id
from bot.store import audit
from bot.store.base import as_utc, utc_now
from bot.store.examples import Example
from bot.store.runs import (
    FINISHED,
    Flag,
    RetrainRun,
    active_run,
    finish_run,
    get_run,
    is_paused,
    pause_state,
)
from bot.store.trail import DataApproval
from inference.errors import RegistryError, TuesdayError

TRIGGERS = ("command", "threshold", "schedule", "cli")


class ControlError(TuesdayError):
    """An admin or retrain request that cannot be carried out as asked."""


class Paused(ControlError):
    """Retraining is paused."""


class RollbackRefused(ControlError):
    """The version cannot be rolled back to."""


def _paused_message(flag: Flag) -> str:
    return (f"retraining is paused (by {flag.set_by} at {as_utc(flag.set_at):%Y-%m-%d %H:%M} UTC); "
            "an admin can `/tuesday resume`")


ENQUEUE_GRACE = timedelta(seconds=60)

LIVE_JOB_STATES = ("queued", "started", "deferred", "scheduled")


def job_lost(queues, run: RetrainRun) -> bool:
    """True when Redis holds no live job of an active run (flushed, expired, or its worker died)."""
    jobs = [queues.fetch(job_id) for job_id in (run.job_id, train_job_id(run.id), conclude_job_id(run.id)) if job_id]
    if not any(jobs):
        # The row is committed just before the job is pushed; a request in between must not
        # mistake the young run for a lost one.
        return not (run.status == "queued" and utc_now() - as_utc(run.created_at) < ENQUEUE_GRACE)
    return not any(job.get_status() in LIVE_JOB_STATES for job in jobs if job is not None)


def request_retrain(runtime, queues, requested_by: str, trigger: str) -> tuple[RetrainRun, bool]:
    """Queue one retrain run (its first job, on "control") and return (run, True); while one is active, (that run, False)."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}, not {trigger!r}")
    sessions = runtime.sessions
    flag = pause_state(sessions)
    if flag is not None:
        raise Paused(_paused_message(flag))
    for _ in range(3):
        current = active_run(sessions, runtime.task.name)
        if current is not None:
            if not job_lost(queues, current):
                return current, False
            # A worker died or Redis lost the job: close the run so it stops blocking new ones.
            finish_run(sessions, current.id, "failed", error="its job is no longer in the queue (worker or Redis lost it)")
            continue
        with sessions() as session:
            task = runtime.task.name
            run = RetrainRun(task=task, requested_by=requested_by, trigger=trigger, status="queued", active=task)
            session.add(run)
            try:
                session.flush()
                run.job_id = retrain_job_id(run.id)
                audit.record(session, requested_by, "retrain", f"run {run.id}", trigger=trigger, task=task)
                session.commit()
            except IntegrityError:
                session.rollback()  # a concurrent request won the slot; join its run
                continue
        try:
            queues.enqueue("control", PREPARE_JOB, run.id, job_id=run.job_id, timeout=CONTROL_TIMEOUT_S)
        except Exception as exc:
            # Redis is down: free the slot so the next request can try again, then let it surface (its message is
            # logged with an error id where it is caught; the run keeps only the type).
            finish_run(sessions, run.id, "failed", error=f"could not queue the job ({type(exc).__name__})")
            raise
        return get_run(sessions, run.id), True
    raise ControlError("could not queue a retrain: the active run changed under us three times; try again")


def _training_baseline(runtime, *, include_failed: bool = False) -> datetime | None:
    """When the newest training data was frozen: the last finished run's snapshot, or a version built outside runs."""
    sessions, task = runtime.sessions, runtime.task.name
    statuses = FINISHED + (("failed",) if include_failed else ())
    with sessions() as session:
        run = session.scalar(select(RetrainRun).where(RetrainRun.task == task, RetrainRun.status.in_(statuses))
                             .order_by(RetrainRun.id.desc()).limit(1))
        by_runs = set(session.scalars(select(RetrainRun.candidate_version).where(RetrainRun.candidate_version.is_not(None))))
    times = []
    if run is not None:
        # A failed run may have died before its snapshot; its request time stands in then.
        times.append(as_utc(run.snapshot_at or run.created_at))
    # `tuesday train` and the demo build versions without a run; they count as training too.
    outside = [v for v in map(runtime.registry.get, runtime.production.names())
               if v.name not in by_runs and v.manifest.get("created_at")]
    if outside:
        times.append(datetime.fromisoformat(outside[-1].manifest["created_at"]))
    return max(times) if times else None


def _approved_since_last_training(runtime, include_failed: bool) -> int:
    """With data approval on: examples approved since the approval the last finished run trained on."""
    statuses = FINISHED + (("failed",) if include_failed else ())
    task = runtime.task.name
    with runtime.sessions() as session:
        latest = session.scalar(select(DataApproval).order_by(DataApproval.id.desc()).limit(1))
        if latest is None:
            return 0
        used = session.scalar(select(RetrainRun.data_approval_id)
                              .where(RetrainRun.task == task, RetrainRun.status.in_(statuses))
                              .order_by(RetrainRun.id.desc()).limit(1))
        floor = session.scalar(select(DataApproval.up_to_example_id).where(DataApproval.id == used)) if used else 0
        return int(session.scalar(select(func.count(Example.id)).where(Example.task == task, Example.id > (floor or 0),
                                                                       Example.id <= latest.up_to_example_id)))


def labels_since_last_training(runtime, *, include_failed: bool = False) -> int:
    """Labelled examples stored after the data of the last finished training was frozen.

    With data approval on, only approved examples count: the triggers wait for a manager too.
    """
    if runtime.settings.data_approval:
        return _approved_since_last_training(runtime, include_failed)
    since = _training_baseline(runtime, include_failed=include_failed)
    with runtime.sessions() as session:
        query = select(func.count(Example.id)).where(Example.task == runtime.task.name)
        if since is not None:
            query = query.where(Example.created_at > since)
        return int(session.scalar(query))


def maybe_auto_retrain(runtime, queues) -> tuple[RetrainRun, bool] | None:
    """Request a retrain once settings.retrain_after_labels new labels arrived (0 = off); None when not due.

    The feedback code calls this after storing a label. A failed run also resets the count, so a
    broken trainer is retried after the next N labels rather than on every click.
    """
    threshold = runtime.settings.retrain_after_labels
    if threshold <= 0 or is_paused(runtime.sessions):
        return None
    if labels_since_last_training(runtime, include_failed=True) < threshold:
        return None
    return request_retrain(runtime, queues, requested_by="tuesday", trigger="threshold")


def maybe_scheduled_retrain(runtime, queues, *, now: datetime | None = None) -> tuple[RetrainRun, bool] | None:
    """Request a retrain when the last one finished over retrain_schedule_hours ago and labels arrived since."""
    hours = runtime.settings.retrain_schedule_hours
    task = runtime.task.name
    if hours <= 0 or is_paused(runtime.sessions) or active_run(runtime.sessions, task) is not None:
        return None
    now = now or utc_now()
    with runtime.sessions() as session:
        last_finished = session.scalar(select(func.max(RetrainRun.finished_at)).where(RetrainRun.task == task))
    if last_finished is not None and now - as_utc(last_finished) < timedelta(hours=hours):
        return None
    # Same data, same seed, same model: a retrain without new labels could only be kept.
    if labels_since_last_training(runtime) == 0:
        return None
    return request_retrain(runtime, queues, requested_by="tuesday", trigger="schedule")


def rollback(production, version: str, *, by: str, note: str = "") -> dict:
    """Point production back at a version that was production before; one logged SQL transaction."""
    try:
        production.registry.get(version)
    except RegistryError as exc:
        raise RollbackRefused(str(exc)) from None
    if not production.owns(version):
        raise RollbackRefused(f"{version} is not a version of {production.task}")
    status = production.statuses().get(version)
    if status == "production":
        raise RollbackRefused(f"{version} is already production")
    if status != "retired":
        raise RollbackRefused(f"{version} was never production; only the promotion gate can make it live")
    return production.switch(version, by=by, reason="rollback" + (f": {note}" if note else ""), action="rollback")
