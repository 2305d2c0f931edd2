"""The store's foundations: the declarative Base, aware-UTC times, the session factory."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from bot.store.schema import upgrade_if_behind


def utc_now() -> datetime:
    """Now, aware UTC: what every stored time is."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as aware UTC (SQLite hands DateTime(timezone=True) back naive; every value written is UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


FORGOTTEN_TEXT = "[forgotten]"  # a ticket's or example's text after `tuesday forget` (bot.trail.forget)


def make_session_factory(url: str) -> sessionmaker[Session]:
    """Engine + a session factory for a SQLAlchemy URL, its schema brought to this release's revision."""
    # pre_ping: a connection the database dropped (a restart) is replaced, not handed out to fail once.
    engine = create_engine(url, future=True, pool_pre_ping=True)
    upgrade_if_behind(engine)
    return sessionmaker(engine, expire_on_commit=False)
