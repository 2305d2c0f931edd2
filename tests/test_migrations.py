"""Schema migrations on real SQLite and PostgreSQL: a fresh store, a store of the last release, racing starts."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import Column, MetaData, Table, Text, create_engine, inspect, select, text
from sqlalchemy.orm import sessionmaker

import bot.lifecycle.runs  # noqa: F401  (their tables join Base.metadata)
import bot.lifecycle.shadow  # noqa: F401
import bot.monitor.alerts  # noqa: F401
import bot.store.production  # noqa: F401
import bot.store.promise_checks  # noqa: F401
import bot.store.trail  # noqa: F401
from bot.cli.db import db
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.base import Base, make_session_factory
from bot.store.examples import Example
from bot.store.runs import Flag
from bot.store.schema import SchemaError, _config, current_revision, head_revision, upgrade, upgrade_if_behind
from bot.store.tickets import Suggestion, Ticket

LAST_RELEASE_TABLES = ["examples", "tickets", "suggestions", "feedback", "control_flags", "retrain_runs"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def engine(store_url):
    engine = create_engine(store_url)
    yield engine
    engine.dispose()


def drop_everything(engine) -> None:
    """Every Base table and Alembic's version table: the database as nothing had touched it."""
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


def last_release_store(engine) -> None:
    """The six tables as the last release's create_all left them (revision 0001's), and no alembic_version."""
    baseline = ScriptDirectory.from_config(_config()).get_revision("0001").module
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        for create in baseline.TABLES.values():
            create()


def differences(engine, metadata=Base.metadata) -> list:
    """What `alembic revision --autogenerate` would write to bring the database to `metadata`."""
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def test_a_fresh_store_upgrades_to_head_once(engine):
    assert current_revision(engine) is None
    assert upgrade(engine) == (None, head_revision())
    assert set(inspect(engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    assert current_revision(engine) == head_revision()
    assert upgrade(engine) == (head_revision(), head_revision())  # nothing left to do
    assert upgrade_if_behind(engine) is False


def test_the_models_match_the_head_revision(engine):
    upgrade(engine)
    # A column added to a model without a revision fails here.
    assert differences(engine) == []
    # ... which the comparison does notice: the models with one more column than head.
    later = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(later)
    Table("examples", later, Column("later", Text, nullable=True), extend_existing=True)
    assert [d[0] for d in differences(engine, later)] == ["add_column"]


def test_a_store_of_the_last_release_is_stamped_and_upgraded(engine):
    last_release_store(engine)
    now = "2026-11-30 12:00:00"
    with engine.begin() as conn:  # rows as the last release wrote them (its columns, not today's models')
        conn.execute(text("INSERT INTO tickets (id, source, external_id, subject, text, created_at) "
                          "VALUES (1, 'generic', '1', '', 'where is my claim', :now)"), {"now": now})
        conn.execute(text("INSERT INTO examples (source, external_id, text, label, created_at) "
                          "VALUES ('import', 'a', 'hi', 'claim_status', :now)"), {"now": now})
        conn.execute(text("INSERT INTO control_flags (name, value, set_by, set_at) VALUES ('paused', '1', 'U1', :now)"),
                     {"now": now})
        conn.execute(text("INSERT INTO suggestions (ticket_id, label, confidence, probabilities, reason, model_version, "
                          "latency_ms, created_at) VALUES (1, 'claim_status', 0.9, '{}', '', '', 0, :now)"), {"now": now})
    assert current_revision(engine) is None

    assert upgrade(engine) == (None, head_revision())
    assert differences(engine) == []
    with sessionmaker(engine)() as session:
        assert session.scalar(select(Example.label)) == "claim_status"
        assert session.scalar(select(Suggestion.ticket_id)) == session.scalar(select(Ticket.id))
        assert session.get(Ticket, 1).pii_stage == "full"  # masked whole at the door back then: nothing waits
        assert session.get(Flag, "paused").set_by == "U1"
    assert upgrade_if_behind(engine) is False


def test_a_store_at_a_revision_this_release_does_not_know_is_refused(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'newer.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="9999"):
        upgrade_if_behind(engine)
    engine.dispose()


def test_an_in_memory_store_gets_its_tables():
    sessions = make_session_factory("sqlite://")
    assert set(inspect(sessions.kw["bind"]).get_table_names()) == {*Base.metadata.tables, "alembic_version"}


# Imports first, then waits for the go file, so both processes reach the upgrade together.
RACER = """
import sys, time
from pathlib import Path
from sqlalchemy import create_engine
from bot.store.schema import upgrade_if_behind
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
engine = create_engine(url)
ready.touch()
while not go.exists():
    time.sleep(0.005)
print(upgrade_if_behind(engine))
"""


def race(store_url, folder: Path) -> list[str]:
    """What upgrade_if_behind returned in two processes started at once on the store."""
    folder.mkdir()
    go, ready = folder / "go", [folder / f"ready-{n}" for n in range(2)]
    racers = [subprocess.Popen([sys.executable, "-c", RACER, store_url, str(r), str(go)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in ready]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    results = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], results
    return sorted(out.strip() for out, _ in results)


def test_two_processes_starting_together_upgrade_once(engine, store_url, tmp_path):
    assert race(store_url, tmp_path / "fresh") == ["False", "True"]  # one upgraded, the other found it done
    assert (current_revision(engine), differences(engine)) == (head_revision(), [])

    drop_everything(engine)
    last_release_store(engine)
    assert race(store_url, tmp_path / "last-release") == ["False", "True"]
    assert (current_revision(engine), differences(engine)) == (head_revision(), [])


def test_tuesday_db_upgrade_and_current():
    runtime = Runtime(Settings())

    def invoke(*args):
        result = CliRunner().invoke(db, list(args), obj=runtime, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output.strip()

    head = head_revision()
    assert invoke("current") == f"current none, head {head} (run `tuesday db upgrade`)"
    assert json.loads(invoke("upgrade", "--json")) == {"from": None, "to": head, "adopted_versions": {}}
    assert invoke("upgrade") == f"schema at {head} (was {head})"
    assert json.loads(invoke("current", "--json")) == {"current": head, "head": head}


def test_revision_0014_keeps_only_the_type_of_shadow_errors_stored_before_error_ids(engine):
    """A failed shadow answer stored as "Type: message" (the message may quote a ticket) keeps its type only."""
    from alembic import command

    with engine.connect() as conn, conn.begin():
        command.upgrade(_config(conn), "0013")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tickets (id, source, external_id, subject, text, created_at) "
                          "VALUES (1, 't', '1', '', 'x', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO suggestions (id, ticket_id, task, confidence, reason, model_version, "
                          "probabilities, latency_ms, created_at) VALUES (1, 1, 'topic', 0.5, '', 'v1', '{}', 1.0, "
                          "CURRENT_TIMESTAMP)"))
        for sid, error in ((1, "ValueError: cannot tokenize 'my card 4111 was charged twice'"),
                           (2, "RuntimeError (error id 1a2b3c4d)"), (3, None)):
            conn.execute(text("INSERT INTO shadow_suggestions (id, suggestion_id, ticket_id, version, routing, error, "
                              "latency_ms, created_at) VALUES (:id, 1, 1, :version, 'failed', :error, 0, CURRENT_TIMESTAMP)"),
                         {"id": sid, "error": error, "version": f"v{sid + 1}"})
    upgrade(engine)
    with engine.connect() as conn:
        kept = dict(conn.execute(text("SELECT id, error FROM shadow_suggestions ORDER BY id")).all())
    assert kept == {1: "ValueError (stored before error ids; its message is not kept)",
                    2: "RuntimeError (error id 1a2b3c4d)", 3: None}
