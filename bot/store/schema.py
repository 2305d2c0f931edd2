"""The store's schema revision: Alembic migrations in bot/store/migrations, applied under a lock.

>>> upgrade("sqlite:///store.db")  # a fresh store: (None, head_revision())
(None, '0015')
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

from inference.errors import TuesdayError

MIGRATIONS = Path(__file__).parent / "migrations"
LAST_RELEASE = "0001"  # the schema of the last release made before migrations
# Columns the last release's tables gained after they first shipped; stores made in between lack
# them, and create_all never added columns, so adopting such a store adds them before stamping.
ADDED_LATE = {"examples": {"conflict_labels": sa.Text()},
              "suggestions": {"routing": sa.String(16), "evidence": sa.Text()}}
PG_LOCK_KEY = 0x7475657364  # "tuesd": any constant, as long as every Tuesday process uses the same


class SchemaError(TuesdayError):
    """The store's schema cannot be brought to this release's revision."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection  # env.py runs the revisions on it
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


@cache
def head_revision() -> str:
    """The revision this release's models match."""
    return _scripts().get_current_head()


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The store's revision; None for a store that has none (fresh, or made before migrations)."""
    with engine.connect() as connection:
        return _revision(connection)


def upgrade(url_or_engine: str | Engine) -> tuple[str | None, str]:
    """Bring the store to head under the migration lock; returns (revision before, revision after)."""
    engine = create_engine(url_or_engine, hide_parameters=True) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as connection, _migration_lock(connection):
            return _upgrade(connection)
    finally:
        if engine is not url_or_engine:
            engine.dispose()


def upgrade_if_behind(engine: Engine) -> bool:
    """Upgrade unless the store is at head already (the common, cheap case); True if this call upgraded."""
    if current_revision(engine) == head_revision():
        return False
    before, after = upgrade(engine)  # re-reads the revision under the lock: another process may have won
    return before != after


def _upgrade(connection: Connection) -> tuple[str | None, str]:
    # One transaction, so on PostgreSQL a failed upgrade leaves the store as it was.
    with connection.begin():
        before = _revision(connection)
        config = _config(connection)
        if before is not None and before not in {s.revision for s in _scripts().walk_revisions()}:
            raise SchemaError(f"the store is at revision {before}, which this release does not know: "
                              "a newer Tuesday has migrated it")
        if before is None and _made_by_last_release(connection):
            _adopt_last_release(connection, config)
        command.upgrade(config, "head")
        return before, _revision(connection)


def _made_by_last_release(connection: Connection) -> bool:
    baseline = _scripts().get_revision(LAST_RELEASE).module
    return not set(baseline.TABLES).isdisjoint(inspect(connection).get_table_names())


def _adopt_last_release(connection: Connection, config: Config) -> None:
    """Bring a store made before migrations to exactly revision 0001, and stamp it there."""
    baseline = _scripts().get_revision(LAST_RELEASE).module
    have = set(inspect(connection).get_table_names())
    with Operations.context(MigrationContext.configure(connection)):
        for table, create in baseline.TABLES.items():
            # bot.store.runs made its tables only when first used, so an old store may lack them.
            if table not in have:
                create()
        for table, columns in ADDED_LATE.items():
            present = {c["name"] for c in inspect(connection).get_columns(table)}
            for name, kind in columns.items():
                if name not in present:
                    op.add_column(table, sa.Column(name, kind, nullable=True))
    command.stamp(config, LAST_RELEASE)


@contextmanager
def _migration_lock(connection: Connection):
    """Hold the store's migration lock, so processes starting together upgrade one after another."""
    if connection.dialect.name == "postgresql":
        # A session-level lock on this connection, which outlives the transactions run under it.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
            connection.commit()
    elif connection.dialect.name == "sqlite" and (path := _sqlite_file(connection.engine.url)):
        with open(f"{path}.migrate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield
    else:
        # An in-memory SQLite store lives in one process; other databases get no lock.
        yield


def _sqlite_file(url: sa.URL) -> str | None:
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    return database.removeprefix("file:")
