"""Admin state and retrain bookkeeping in SQL: the pause flag, one row per retrain run, rollback.

Pause freezes the model, not the bot. While paused, tickets are still taken in, suggestions
are still made by the current production model and stored, and button feedback is still
recorded (it becomes training data later); but production does not change by itself:
`/tuesday retrain` and `tuesday retrain` are refused, the label-count and schedule triggers stay
quiet, a run already queued is closed as failed ("paused") when a worker picks it up, and a run
already training finishes but its candidate is not promoted. Rollback is still allowed, since it
is what an admin reaches for while paused.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.store import Base, Example, as_utc, utc_now
from bot.trail import audit
from inference.errors import RegistryError, TuesdayError

# A run moves through three queued jobs: its snapshot and the train job's hand-off on a CPU worker
# ("control"), the training on the GPU node ("train"), then the gate and report on a CPU worker.
PREPARE_JOB = "bot.retrain.prepare_job"
CONCLUDE_JOB = "bot.retrain.conclude_job"
RETRAIN_TIMEOUT_S = 12 * 3600  # a large base on a busy GPU node; RQ kills the job after this
CONTROL_TIMEOUT_S = 3600  # a snapshot of the store, or the gate and report
TRIGGERS = ("command", "threshold", "schedule", "cli")
ACTIVE = ("queued", "running")
# The runs that actually trained a candidate; "passed": it passed the gate and waits for a manager's
# sign-off (TUESDAY_PROMOTION_SIGNOFF, bot.trail.signoff), which turns it into "promoted".
FINISHED = ("promoted", "kept", "passed")
ACTIVE_SLOT = "retrain"
PAUSED_FLAG = "paused"


class ControlError(TuesdayError):
    """An admin or retrain request that cannot be carried out as asked."""


class Paused(ControlError):
    """Retraining is paused."""


class RollbackRefused(ControlError):
    """The version cannot be rolled back to."""



class Flag(Base):
    """A named admin switch (today only "paused"), with who set it and when."""

    __tablename__ = "control_flags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), default="")
    set_by: Mapped[str] = mapped_column(String(255), default="")
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class RetrainRun(Base):
    """One requested retrain, from the request to the promotion decision."""

    __tablename__ = "retrain_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(16))  # command | threshold | schedule | cli
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|promoted|kept|passed|failed|cancelled
    # "retrain" while queued or running, NULL after. Unique, so the database itself refuses a
    # second active run when two requests race (NULLs never collide, on SQLite or PostgreSQL).
    active: Mapped[str | None] = mapped_column(String(16), nullable=True, unique=True)
    candidate_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    production_before: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metrics: Mapped[str] = mapped_column(Text, default="{}")  # JSON {"candidate": {...}, "production": {...}}
    why: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    snapshot: Mapped[str | None] = mapped_column(Text, nullable=True)
    snapshot_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    data_approval_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the data approval the snapshot used
    signed_off_by: Mapped[str | None] = mapped_column(String(255), nullable=True)  # "Approve promotion" in Slack
    signed_off_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_dict(self) -> dict:
        out = {c.name: getattr(self, c.name) for c in self.__table__.columns if c.name != "active"}
        out["metrics"] = json.loads(self.metrics or "{}")
        for key in ("snapshot_at", "created_at", "started_at", "finished_at", "signed_off_at"):
            out[key] = as_utc(out[key]).isoformat(timespec="seconds") if out[key] else None
        return out


# -- pause ----------------------------------------------------------------------------------------

def pause_state(sessions: sessionmaker[Session]) -> Flag | None:
    """The pause flag's row while paused (who, when), else None."""
    with sessions() as session:
        flag = session.get(Flag, PAUSED_FLAG)
        return flag if flag is not None and flag.value == "1" else None


def is_paused(sessions: sessionmaker[Session]) -> bool:
    return pause_state(sessions) is not None


def set_paused(sessions: sessionmaker[Session], paused: bool, *, by: str) -> bool:
    """Pause or resume retraining; returns False when it already was in that state."""
    with sessions() as session:
        flag = session.get(Flag, PAUSED_FLAG)
        if flag is not None and (flag.value == "1") == paused:
            return False
        if flag is None:
            flag = Flag(name=PAUSED_FLAG)
            session.add(flag)
        flag.value, flag.set_by, flag.set_at = ("1" if paused else "0"), by, utc_now()
        audit.record(session, by, "pause" if paused else "resume")
        try:
            session.commit()
        except IntegrityError:
            # Another admin created the flag row at the same moment; theirs stands.
            session.rollback()
            return False
        return True


def _paused_message(flag: Flag) -> str:
    return (f"retraining is paused (by {flag.set_by} at {as_utc(flag.set_at):%Y-%m-%d %H:%M} UTC); "
            "an admin can `/tuesday resume`")


# -- runs -----------------------------------------------------------------------------------------

def retrain_job_id(run_id: int) -> str:
    return f"retrain-{int(run_id)}"


def train_job_id(run_id: int) -> str:
    return f"train-{int(run_id)}"


def conclude_job_id(run_id: int) -> str:
    return f"gate-{int(run_id)}"


def get_run(sessions: sessionmaker[Session], run_id: int) -> RetrainRun | None:
    with sessions() as session:
        return session.get(RetrainRun, int(run_id))


def last_run(sessions: sessionmaker[Session]) -> RetrainRun | None:
    with sessions() as session:
        return session.scalar(select(RetrainRun).order_by(RetrainRun.id.desc()).limit(1))


def active_run(sessions: sessionmaker[Session]) -> RetrainRun | None:
    with sessions() as session:
        return session.scalar(select(RetrainRun).where(RetrainRun.active.is_not(None)))


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
        current = active_run(sessions)
        if current is not None:
            if not job_lost(queues, current):
                return current, False
            # A worker died or Redis lost the job: close the run so it stops blocking new ones.
            finish_run(sessions, current.id, "failed", error="its job is no longer in the queue (worker or Redis lost it)")
            continue
        with sessions() as session:
            run = RetrainRun(requested_by=requested_by, trigger=trigger, status="queued", active=ACTIVE_SLOT)
            session.add(run)
            try:
                session.flush()
                run.job_id = retrain_job_id(run.id)
                audit.record(session, requested_by, "retrain", f"run {run.id}", trigger=trigger)
                session.commit()
            except IntegrityError:
                session.rollback()  # a concurrent request won the slot; join its run
                continue
        try:
            queues.enqueue("control", PREPARE_JOB, run.id, job_id=run.job_id, timeout=CONTROL_TIMEOUT_S)
        except Exception as exc:
            # Redis is down: free the slot so the next request can try again, then let it surface.
            finish_run(sessions, run.id, "failed", error=f"could not queue the job: {exc}")
            raise
        return get_run(sessions, run.id), True
    raise ControlError("could not queue a retrain: the active run changed under us three times; try again")


def start_run(sessions: sessionmaker[Session], run_id: int) -> RetrainRun | None:
    """queued → running, atomically; None when the run is not queued (a redelivered job)."""
    with sessions() as session:
        result = session.execute(update(RetrainRun).where(RetrainRun.id == int(run_id), RetrainRun.status == "queued")
                                 .values(status="running", started_at=utc_now()))
        session.commit()
        if result.rowcount != 1:
            return None
    return get_run(sessions, run_id)


def record_snapshot(sessions: sessionmaker[Session], run_id: int, snapshot: str, at: datetime, *,
                    data_approval_id: int | None = None) -> None:
    # `snapshot` is the artifact key of the snapshot, so any host can read what the run trained on.
    """Remember which data the run trains on (and the data approval it was cut at); labels newer than `at` count
    toward the next retrain."""
    with sessions() as session:
        run = session.get(RetrainRun, int(run_id))
        run.snapshot, run.snapshot_at, run.data_approval_id = snapshot, at, data_approval_id
        session.commit()


def finish_run(sessions: sessionmaker[Session], run_id: int, status: str, **fields) -> RetrainRun:
    """Close a run with its outcome (promoted | kept | failed | cancelled) and free the active slot."""
    if status not in FINISHED + ("failed", "cancelled"):
        raise ValueError(f"not a final status: {status!r}")
    with sessions() as session:
        run = session.get(RetrainRun, int(run_id))
        if "metrics" in fields and not isinstance(fields["metrics"], str):
            fields["metrics"] = json.dumps(fields["metrics"])
        for key, value in fields.items():
            setattr(run, key, value)
        run.status, run.active, run.finished_at = status, None, utc_now()
        session.commit()
        return run


def set_run_error(sessions: sessionmaker[Session], run_id: int, error: str) -> RetrainRun:
    with sessions() as session:
        run = session.get(RetrainRun, int(run_id))
        run.error = error
        session.commit()
        return run


# -- triggers -------------------------------------------------------------------------------------

def _training_baseline(runtime, *, include_failed: bool = False) -> datetime | None:
    """When the newest training data was frozen: the last finished run's snapshot, or a version built outside runs."""
    sessions = runtime.sessions
    statuses = FINISHED + (("failed",) if include_failed else ())
    with sessions() as session:
        run = session.scalar(select(RetrainRun).where(RetrainRun.status.in_(statuses))
                             .order_by(RetrainRun.id.desc()).limit(1))
        by_runs = set(session.scalars(select(RetrainRun.candidate_version).where(RetrainRun.candidate_version.is_not(None))))
    times = []
    if run is not None:
        # A failed run may have died before its snapshot; its request time stands in then.
        times.append(as_utc(run.snapshot_at or run.created_at))
    # `tuesday train` and the demo build versions without a run; they count as training too.
    outside = [v for v in runtime.registry.versions() if v.name not in by_runs and v.manifest.get("created_at")]
    if outside:
        times.append(datetime.fromisoformat(outside[-1].manifest["created_at"]))
    return max(times) if times else None


def _approved_since_last_training(runtime, include_failed: bool) -> int:
    """With data approval on: examples approved since the approval the last finished run trained on."""
    from bot.trail.tables import DataApproval

    statuses = FINISHED + (("failed",) if include_failed else ())
    with runtime.sessions() as session:
        latest = session.scalar(select(DataApproval).order_by(DataApproval.id.desc()).limit(1))
        if latest is None:
            return 0
        used = session.scalar(select(RetrainRun.data_approval_id).where(RetrainRun.status.in_(statuses))
                              .order_by(RetrainRun.id.desc()).limit(1))
        floor = session.scalar(select(DataApproval.up_to_example_id).where(DataApproval.id == used)) if used else 0
        return int(session.scalar(select(func.count(Example.id)).where(Example.id > (floor or 0),
                                                                       Example.id <= latest.up_to_example_id)))


def labels_since_last_training(runtime, *, include_failed: bool = False) -> int:
    """Labelled examples stored after the data of the last finished training was frozen.

    With data approval on, only approved examples count: the triggers wait for a manager too.
    """
    if runtime.settings.data_approval:
        return _approved_since_last_training(runtime, include_failed)
    since = _training_baseline(runtime, include_failed=include_failed)
    with runtime.sessions() as session:
        query = select(func.count(Example.id))
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
    if hours <= 0 or is_paused(runtime.sessions) or active_run(runtime.sessions) is not None:
        return None
    now = now or utc_now()
    with runtime.sessions() as session:
        last_finished = session.scalar(select(func.max(RetrainRun.finished_at)))
    if last_finished is not None and now - as_utc(last_finished) < timedelta(hours=hours):
        return None
    # Same data, same seed, same model: a retrain without new labels could only be kept.
    if labels_since_last_training(runtime) == 0:
        return None
    return request_retrain(runtime, queues, requested_by="tuesday", trigger="schedule")


# -- rollback -------------------------------------------------------------------------------------

def rollback(production, version: str, *, by: str, note: str = "") -> dict:
    """Point production back at a version that was production before; one logged SQL transaction."""
    try:
        production.registry.get(version)
    except RegistryError as exc:
        raise RollbackRefused(str(exc)) from None
    status = production.statuses().get(version)
    if status == "production":
        raise RollbackRefused(f"{version} is already production")
    if status != "retired":
        raise RollbackRefused(f"{version} was never production; only the promotion gate can make it live")
    return production.switch(version, by=by, reason="rollback" + (f": {note}" if note else ""), action="rollback")
