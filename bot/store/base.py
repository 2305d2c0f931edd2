"""The store's foundations: the declarative Base, aware-UTC times, the session factory."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import create_engine, make_url
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


# Every engine: a failed statement's message names the SQL, never its bound values (ticket text). The driver's
# own message may still quote a row (PostgreSQL's "Failing row contains …"): bot.error_ids logs types and ids.
ENGINE_OPTIONS = {"hide_parameters": True}

CONNECT_TIMEOUT_S = 5.0  # connecting, or waiting for a free pooled connection (TUESDAY_SQL_TIMEOUT_S)
STATEMENT_TIMEOUT_S = 30.0  # one statement on PostgreSQL (TUESDAY_SQL_STATEMENT_TIMEOUT_S)


def connect_args(url: str, *, connect_timeout_s: float, statement_timeout_s: float | None) -> dict:
    """The driver's own bounds: libpq's connect_timeout and the server's statement_timeout on PostgreSQL,
    the busy wait on SQLite (how long a write waits for another writer's lock)."""
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        args: dict = {"connect_timeout": max(1, round(connect_timeout_s))}
        if statement_timeout_s:
            args["options"] = f"-c statement_timeout={int(statement_timeout_s * 1000)}"
        return args
    if backend == "sqlite":
        return {"timeout": connect_timeout_s}
    return {}


def use_wal(engine) -> None:
    """Put a SQLite file in write-ahead-log mode (kept in the file): a commit writes and syncs the log once instead
    of a rollback journal made and deleted per transaction, and readers (a worker, a second web process) no longer
    wait for a writer. Still a full sync per commit: an acked ticket survives a power cut. Left as it is when
    another process holds the file locked (it is then in WAL mode already, or will be at its next start)."""
    from sqlalchemy.exc import OperationalError

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    except OperationalError:
        pass


def make_session_factory(url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                         statement_timeout_s: float | None = STATEMENT_TIMEOUT_S,
                         pool_size: int = 5, max_overflow: int = 10) -> sessionmaker[Session]:
    """Engine + a session factory for a SQLAlchemy URL, its schema brought to this release's revision.

    Every wait is bounded: connecting and a free pooled connection (connect_timeout_s; a pool that stays
    full raises sqlalchemy.exc.TimeoutError, which the web answers 503 with Retry-After) and, on
    PostgreSQL, each statement (statement_timeout_s)."""
    if make_url(url).database in (None, "", ":memory:"):  # SQLite in memory: one connection, its own database
        engine = create_engine(url, future=True, **ENGINE_OPTIONS)
        upgrade_if_behind(engine)
        return sessionmaker(engine, expire_on_commit=False)
    # Migrations run on an engine of their own without the statement bound: a long ALTER must finish.
    migrating = create_engine(url, **ENGINE_OPTIONS, connect_args=connect_args(url, connect_timeout_s=connect_timeout_s,
                                                              statement_timeout_s=None))
    try:
        upgrade_if_behind(migrating)
        if make_url(url).get_backend_name() == "sqlite":
            use_wal(migrating)
    finally:
        migrating.dispose()
    # pre_ping: a connection the database dropped (a restart) is replaced, not handed out to fail once. A SQLite
    # file has no server to drop it: no round trip before every session (the door's path counts them).
    server = make_url(url).get_backend_name() != "sqlite"
    engine = create_engine(url, future=True, **ENGINE_OPTIONS, pool_pre_ping=server, pool_size=pool_size, max_overflow=max_overflow,
                           pool_timeout=connect_timeout_s,
                           connect_args=connect_args(url, connect_timeout_s=connect_timeout_s,
                                                     statement_timeout_s=statement_timeout_s))
    return sessionmaker(engine, expire_on_commit=False)
