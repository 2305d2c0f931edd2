"""The production pointers and their history, in the SQL store every host shares.

One row per task names that task's production version (its slot is the task's name); every switch (promotion or rollback) updates that row
and appends a history row in the same transaction, so every host sees a switch at once and
no switch goes unlogged. A switch names the version it expects to replace: when another host
moved the pointer in between, the switch is refused instead of silently undoing theirs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.store import audit
from bot.store.base import Base, as_utc, utc_now
from inference.errors import RegistryError

ANY = object()  # a switch that replaces whatever is live (a human's rollback)


class PointerMoved(RegistryError):
    """Production changed since the caller looked; the switch was not made."""


class ProductionPointer(Base):
    """The one row that names the production version."""

    __tablename__ = "production_pointer"

    slot: Mapped[str] = mapped_column(String(64), primary_key=True)  # the task's name
    version: Mapped[str] = mapped_column(String(64))
    switched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    event_id: Mapped[int] = mapped_column(Integer)


class ModelEvent(Base):
    """One promotion or rollback: who, when, why, and what was live before."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    task: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # promote | rollback
    version: Mapped[str] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)
    by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, default="")

    def to_dict(self) -> dict:
        return {"at": as_utc(self.at).isoformat(timespec="seconds"), "task": self.task, "action": self.action, "version": self.version,
                "previous": self.previous, "by": self.by, "reason": self.reason}


def production_name(sessions: sessionmaker[Session], task: str) -> str | None:
    with sessions() as session:
        return session.scalar(select(ProductionPointer.version).where(ProductionPointer.slot == task))


def history(sessions: sessionmaker[Session], task: str | None = None) -> list[dict]:
    """Every switch of a task (or of every task), oldest first."""
    query = select(ModelEvent).order_by(ModelEvent.id)
    if task is not None:
        query = query.where(ModelEvent.task == task)
    with sessions() as session:
        return [e.to_dict() for e in session.scalars(query)]


def switch(sessions: sessionmaker[Session], version: str, *, task: str, by: str, reason: str,
           action: str = "promote", expect=ANY) -> dict:
    """Make `version` the task's production and log it, in one transaction; `expect` is the version it must replace."""
    with sessions() as session:
        current = session.get(ProductionPointer, task, with_for_update=True)
        previous = current.version if current is not None else None
        if expect is not ANY and previous != expect:
            raise PointerMoved(f"{task} production is {previous or 'none'} now, not {expect or 'none'}: "
                               "another host switched it; nothing changed")
        event = ModelEvent(task=task, action=action, version=version, previous=previous, by=by, reason=reason)
        session.add(event)
        audit.record(session, by, action, version, previous=previous, reason=reason, task=task)  # same transaction
        session.flush()
        if current is None:
            session.add(ProductionPointer(slot=task, version=version, event_id=event.id))
        else:
            # Compare-and-set as well as the row lock: SQLite has no FOR UPDATE.
            moved = session.execute(update(ProductionPointer)
                                    .where(ProductionPointer.slot == task, ProductionPointer.version == previous)
                                    .values(version=version, switched_at=utc_now(), event_id=event.id))
            if moved.rowcount != 1:
                session.rollback()
                raise PointerMoved("production changed during the switch; nothing changed")
        try:
            session.commit()
        except IntegrityError:  # two first promotions at once: the other one won
            session.rollback()
            raise PointerMoved("another host promoted a first version at the same moment; nothing changed") from None
        return event.to_dict()


def version_task(manifest: dict) -> str | None:
    """The task a version was trained for, as its manifest says."""
    return manifest.get("task")


class Production:
    """One task's versions in the artifact store as this store sees them: production, retired or candidate.

    Version names are unique across tasks (v1, v2 … in the order they were built), so a name
    alone says which version is meant; each task sees only the versions trained for it.
    `others` (the deployment's other tasks, given for its routing task) makes this task also own
    the versions that name no task or a task the deployment does not have: built by hand, or
    before the task file named its tasks as it does now.
    """

    def __init__(self, sessions: sessionmaker[Session], registry, task: str, others: frozenset[str] | None = None):
        self.sessions, self.registry, self.task = sessions, registry, task
        self.others = others

    def name(self) -> str | None:
        return production_name(self.sessions, self.task)

    def names(self) -> list[str]:
        """This task's versions, oldest first."""
        return [n for n in self.registry.names() if self.owns(n)]

    def owns(self, name: str) -> bool:
        task = version_task(self.registry.get(name).manifest)
        return task == self.task or (self.others is not None and task not in self.others)

    def info(self):
        """The production version's manifest (not its files), or None."""
        name = self.name()
        return self.registry.get(name) if name else None

    def history(self) -> list[dict]:
        return history(self.sessions, self.task)

    def statuses(self) -> dict[str, str]:
        """{version: production | retired | candidate} for every version of this task."""
        live, was_live = self.name(), {event["version"] for event in self.history()}
        return {name: "production" if name == live else "retired" if name in was_live else "candidate"
                for name in self.names()}

    def newest(self):
        names = self.names()
        if not names:
            raise RegistryError(f"no model versions of {self.task} yet: run `tuesday train` (or `tuesday demo`) first")
        return self.registry.get(names[-1])

    def resolve(self, name: str | None = None):
        """The named version, or production, or the newest one (manifest only)."""
        if name:
            return self.registry.get(name)
        return self.info() or self.newest()

    def switch(self, version: str, *, by: str, reason: str, action: str = "promote", expect=ANY) -> dict:
        """Point this task's production at one of its stored versions (see `switch`)."""
        manifest = self.registry.get(version).manifest  # must exist and be complete in the artifact store
        if not self.owns(version):
            raise RegistryError(f"{version} is a version of {version_task(manifest) or 'another task'}, "
                                f"not of {self.task}: nothing changed")
        return switch(self.sessions, version, task=self.task, by=by, reason=reason, action=action, expect=expect)
