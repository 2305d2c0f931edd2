"""Retrain runs and the pause flag in SQL: one row per run, from its request to its outcome."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.store import audit
from bot.store.base import Base, as_utc, utc_now

ACTIVE = ("queued", "running")

# The runs that actually trained a candidate; "passed": it passed the gate and waits for a manager's
# sign-off (TUESDAY_PROMOTION_SIGNOFF, bot.lifecycle.signoff), which turns it into "promoted".
FINISHED = ("promoted", "kept", "passed")


PAUSED_FLAG = "paused"


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
    task: Mapped[str] = mapped_column(String(64))  # the task this run retrains (one adapter per task)
    requested_by: Mapped[str] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(16))  # command | threshold | schedule | cli
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|promoted|kept|passed|failed|cancelled
    # The task's name while queued or running, NULL after. Unique, so the database itself refuses a
    # second active run of a task when two requests race (NULLs never collide, on SQLite or PostgreSQL).
    active: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
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


def get_run(sessions: sessionmaker[Session], run_id: int) -> RetrainRun | None:
    with sessions() as session:
        return session.get(RetrainRun, int(run_id))


def last_run(sessions: sessionmaker[Session], task: str | None = None) -> RetrainRun | None:
    """The newest run of a task (or of any task)."""
    query = select(RetrainRun).order_by(RetrainRun.id.desc()).limit(1)
    if task is not None:
        query = query.where(RetrainRun.task == task)
    with sessions() as session:
        return session.scalar(query)


def active_run(sessions: sessionmaker[Session], task: str) -> RetrainRun | None:
    """The task's queued or running run (at most one per task)."""
    with sessions() as session:
        return session.scalar(select(RetrainRun).where(RetrainRun.active == task))


def active_runs(sessions: sessionmaker[Session]) -> list[RetrainRun]:
    """Every task's queued or running run, oldest first."""
    with sessions() as session:
        return list(session.scalars(select(RetrainRun).where(RetrainRun.active.is_not(None)).order_by(RetrainRun.id)))


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


PASSED = "passed"  # the gate passed; production waits for a manager's sign-off
