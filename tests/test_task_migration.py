"""Revision 0007 on real SQLite and PostgreSQL: a single-task store becomes a store with one task, history kept."""

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from bot.store.base import make_session_factory
from bot.store.production import Production
from bot.store.schema import _config, head_revision, upgrade
from inference.registry import Registry
from tests.test_migrations import differences

TASKS = """
name: helpdesk
tasks:
  - name: priority
    labels: [low, high]
  - name: queue
    routing: true
    labels: [billing, tech, hand_off]
    handoff_label: hand_off
"""
NOW = "2027-01-30 12:00:00"
TABLES = ("examples", "suggestions", "feedback", "retrain_runs", "model_events", "writeback_outbox")


@pytest.fixture
def engine(store_url, tmp_path, monkeypatch):
    (tmp_path / "tasks.yaml").write_text(TASKS)
    monkeypatch.setenv("TUESDAY_TASK_FILE", str(tmp_path / "tasks.yaml"))  # the migration names rows after it
    engine = create_engine(store_url)
    yield engine
    engine.dispose()


def to_revision(engine, revision: str, *, down: bool = False) -> None:
    with engine.connect() as connection, connection.begin():
        (command.downgrade if down else command.upgrade)(_config(connection), revision)


def release_0006_rows(engine) -> None:
    """One of everything, as revision 0006 (the last release) stored it: one task, one pointer, an active run."""
    to_revision(engine, "0006")
    statements = [
        "INSERT INTO tickets (id, source, external_id, subject, text, created_at) "
        "VALUES (1, 'zendesk', '77', '', 'my invoice is wrong', :now)",
        "INSERT INTO examples (id, source, external_id, text, label, created_at) "
        "VALUES (1, 'feedback', 'ticket-1', 'my invoice is wrong', 'billing', :now)",
        "INSERT INTO suggestions (id, ticket_id, label, confidence, probabilities, reason, model_version, latency_ms, "
        "created_at) VALUES (1, 1, 'billing', 0.9, '{}', '', 'v1', 5, :now)",
        "INSERT INTO feedback (id, suggestion_id, ticket_id, user_id, user_name, action, label, model_version, "
        "created_at, conflict) VALUES (1, 1, 1, 'U1', '', 'accept', 'billing', 'v1', :now, false)",
        "INSERT INTO writeback_outbox (feedback_id, ticket_id, helpdesk, label, note, status, attempts, "
        "next_attempt_at, created_at) VALUES (1, 1, 'zendesk', 'billing', '', 'pending', 0, :now, :now)",
        "INSERT INTO model_events (id, at, action, version, previous, by, reason) "
        "VALUES (1, :now, 'promote', 'v1', NULL, 'gate', 'first')",
        "INSERT INTO production_pointer (slot, version, switched_at, event_id) VALUES ('production', 'v1', :now, 1)",
        "INSERT INTO retrain_runs (requested_by, trigger, status, active, metrics, why, created_at) "
        "VALUES ('U1', 'command', 'queued', 'retrain', '{}', '', :now)",
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), {"now": NOW})


def test_a_single_task_store_becomes_the_routing_tasks(engine, tmp_path):
    release_0006_rows(engine)
    assert upgrade(engine) == ("0006", head_revision())
    assert differences(engine) == []
    with engine.connect() as conn:
        for table in TABLES:
            assert conn.execute(text(f"SELECT DISTINCT task FROM {table}")).scalars().all() == ["queue"], table
        assert conn.execute(text("SELECT slot, version FROM production_pointer")).all() == [("queue", "v1")]
        assert conn.execute(text("SELECT active FROM retrain_runs")).scalars().all() == ["queue"]
    # The versions and history carry on as the routing task's; the other task starts with none.
    sessions = make_session_factory(engine.url.render_as_string(hide_password=False))
    registry = Registry.local(tmp_path / "models")
    assert Production(sessions, registry, "queue").name() == "v1"
    assert [e["version"] for e in Production(sessions, registry, "queue").history()] == ["v1"]
    assert Production(sessions, registry, "priority").name() is None
    with engine.begin() as conn:  # the same ticket's example, now for another task: a new row, not a duplicate
        conn.execute(text("INSERT INTO examples (id, task, source, external_id, text, label, created_at) "
                          "VALUES (2, 'priority', 'feedback', 'ticket-1', 'my invoice is wrong', 'high', :now)"),
                     {"now": NOW})
    sessions.kw["bind"].dispose()


def test_going_back_keeps_one_task_and_refuses_while_another_has_rows(engine):
    release_0006_rows(engine)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO model_events (id, task, at, action, version, by, reason) "
                          "VALUES (2, 'priority', :now, 'promote', 'v2', 'gate', 'first')"), {"now": NOW})
    with pytest.raises(RuntimeError, match="model_events holds 1 rows of tasks other than queue"):
        to_revision(engine, "0006", down=True)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM model_events WHERE task = 'priority'"))
    to_revision(engine, "0006", down=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT slot FROM production_pointer")).scalars().all() == ["production"]
        assert conn.execute(text("SELECT active FROM retrain_runs")).scalars().all() == ["retrain"]
