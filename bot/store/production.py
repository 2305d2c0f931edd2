"""The production pointer and its history, in the SQL store every host shares.

One row names the production version; every switch (promotion or rollback) updates that row
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

POINTER = "production"
ANY = object()  # a switch that replaces whatever is live (a human's rollback)


class PointerMoved(RegistryError):
    """Production changed since the caller looked; the switch was not made."""


class ProductionPointer(Base):
    """The one row that names the production version."""

    __tablename__ = "production_pointer"

    slot: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    switched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    event_id: Mapped[int] = mapped_column(Integer)


class ModelEvent(Base):
    """One promotion or rollback: who, when, why, and what was live before."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    action: Mapped[str] = mapped_column(String(16))  # promote | rollback
    version: Mapped[str] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)
    by: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, default="")

    def to_dict(self) -> dict:
        return {"at": as_utc(self.at).isoformat(timespec="seconds"), "action": self.action, "version": self.version,
                "previous": self.previous, "by": self.by, "reason": self.reason}


def production_name(sessions: sessionmaker[Session]) -> str | None:
    with sessions() as session:
        return session.scalar(select(ProductionPointer.version).where(ProductionPointer.slot == POINTER))


def history(sessions: sessionmaker[Session]) -> list[dict]:
    """Every switch, oldest first."""
    with sessions() as session:
        return [e.to_dict() for e in session.scalars(select(ModelEvent).order_by(ModelEvent.id))]


def switch(sessions: sessionmaker[Session], version: str, *, by: str, reason: str, action: str = "promote",
           expect=ANY) -> dict:
    """Make `version` production and log it, in one transaction; `expect` is the version it must replace."""
    with sessions() as session:
        current = session.get(ProductionPointer, POINTER, with_for_update=True)
        previous = current.version if current is not None else None
        if expect is not ANY and previous != expect:
            raise PointerMoved(f"production is {previous or 'none'} now, not {expect or 'none'}: "
                               "another host switched it; nothing changed")
        event = ModelEvent(action=action, version=version, previous=previous, by=by, reason=reason)
        session.add(event)
        audit.record(session, by, action, version, previous=previous, reason=reason)  # same transaction
        session.flush()
        if current is None:
            session.add(ProductionPointer(slot=POINTER, version=version, event_id=event.id))
        else:
            # Compare-and-set as well as the row lock: SQLite has no FOR UPDATE.
            moved = session.execute(update(ProductionPointer)
                                    .where(ProductionPointer.slot == POINTER, ProductionPointer.version == previous)
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


class Production:
    """The versions in the artifact store as this store sees them: production, retired or candidate."""

    def __init__(self, sessions: sessionmaker[Session], registry):
        self.sessions, self.registry = sessions, registry

    def name(self) -> str | None:
        return production_name(self.sessions)

    def info(self):
        """The production version's manifest (not its files), or None."""
        name = self.name()
        return self.registry.get(name) if name else None

    def history(self) -> list[dict]:
        return history(self.sessions)

    def statuses(self) -> dict[str, str]:
        """{version: production | retired | candidate} for every stored version."""
        live, was_live = self.name(), {event["version"] for event in self.history()}
        return {name: "production" if name == live else "retired" if name in was_live else "candidate"
                for name in self.registry.names()}

    def resolve(self, name: str | None = None):
        """The named version, or production, or the newest one (manifest only)."""
        if name:
            return self.registry.get(name)
        return self.info() or self.registry.newest()

    def switch(self, version: str, *, by: str, reason: str, action: str = "promote", expect=ANY) -> dict:
        """Point production at a stored version (see `switch`)."""
        self.registry.get(version)  # must exist and be complete in the artifact store
        return switch(self.sessions, version, by=by, reason=reason, action=action, expect=expect)
