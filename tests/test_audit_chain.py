"""The audit log is hash-chained: `tuesday audit --verify` finds an edit made behind the triggers' back,
two writers never fork the chain, TRUNCATE is refused on PostgreSQL, and revision 0010 chains the rows
already there (and moves settlement reasons out of them) and can be undone."""

from __future__ import annotations

import json
import threading

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from bot.cli.main import main
from bot.store import audit
from bot.store.base import make_session_factory
from bot.store.schema import _config, upgrade


@pytest.fixture
def engine(store_url):
    engine = create_engine(store_url)
    yield engine
    engine.dispose()


def _lift_triggers(conn) -> None:
    """What a database owner can do: the append-only triggers out of the way."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
    else:
        conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))


def _verify_cli(store_url, monkeypatch):
    monkeypatch.setenv("TUESDAY_DATABASE_URL", store_url)
    return CliRunner().invoke(main, ["audit", "--verify", "--json"], catch_exceptions=False)


def test_verify_finds_an_edit_and_a_removed_row_made_with_the_triggers_dropped(store_url, engine, monkeypatch):
    sessions = make_session_factory(store_url)
    for n in range(5):
        audit.record(sessions, f"cli:a{n}", "pause", detail_n=n)
    ok = _verify_cli(store_url, monkeypatch)
    assert ok.exit_code == 0, ok.output
    result = json.loads(ok.stdout)
    assert result["ok"] and result["checked"] == 5 and result["head"]["id"] == 5

    with engine.begin() as conn:
        _lift_triggers(conn)
        conn.execute(text("UPDATE audit_log SET actor = 'cli:someone-else' WHERE id = 3"))
    broken = _verify_cli(store_url, monkeypatch)
    assert broken.exit_code == 1
    found = json.loads(broken.stdout)
    assert not found["ok"] and found["broken"]["id"] == 3 and "edited" in found["broken"]["why"]
    assert found["checked"] == 2

    # Putting the text back is not enough to hide a removed row: the next one no longer follows.
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'cli:a2' WHERE id = 3"))
        conn.execute(text("DELETE FROM audit_log WHERE id = 2"))
    found = json.loads(_verify_cli(store_url, monkeypatch).stdout)
    assert found["broken"]["id"] == 3 and "removed" in found["broken"]["why"]
    text_out = CliRunner().invoke(main, ["audit", "--verify"], catch_exceptions=False)
    assert text_out.exit_code == 1 and "BROKEN at row 3" in text_out.output


def test_a_log_cut_short_is_found_against_a_head_noted_earlier(store_url, engine, monkeypatch):
    sessions = make_session_factory(store_url)
    for n in range(3):
        audit.record(sessions, "cli:a", "pause", n=n)
    noted = audit.verify(sessions)["head"]["hash"]
    with engine.begin() as conn:
        _lift_triggers(conn)
        conn.execute(text("DELETE FROM audit_log WHERE id = 3"))
    assert audit.verify(sessions)["ok"]  # a shorter chain still holds by itself ...
    monkeypatch.setenv("TUESDAY_DATABASE_URL", store_url)
    cut = CliRunner().invoke(main, ["audit", "--verify", "--expect", noted], catch_exceptions=False)
    assert cut.exit_code == 1 and "removed from the end" in cut.output  # ... but not against the head noted


def test_two_writers_at_once_never_fork_the_chain(store_url):
    sessions = make_session_factory(store_url)
    errors = []

    def write(name):
        try:
            for n in range(15):
                with sessions() as session:
                    audit.record(session, name, "pause", n=n)
                    session.commit()
        except Exception as exc:  # noqa: BLE001  (the test reports it below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"cli:{w}",)) for w in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    result = audit.verify(sessions)
    assert result["ok"] and result["checked"] == 45


def test_truncate_is_refused_on_postgresql(store_url):
    if not store_url.startswith("postgresql"):
        pytest.skip("TRUNCATE is PostgreSQL's (SQLite has none)")
    sessions = make_session_factory(store_url)
    audit.record(sessions, "cli:a", "pause")
    engine = create_engine(store_url)
    try:
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE audit_log"))
    finally:
        engine.dispose()
    assert audit.verify(sessions)["checked"] == 1


def _migrate(engine, target: str, down: bool = False) -> None:
    with engine.connect() as conn, conn.begin():
        (command.downgrade if down else command.upgrade)(_config(conn), target)


def test_revision_0010_chains_old_rows_moves_reasons_out_and_downgrades(engine, store_url):
    _migrate(engine, "0009")
    settle = json.dumps({"example": 7, "label": "billing", "reason": "the customer quoted invoice 99"}, sort_keys=True)
    with engine.begin() as conn:  # rows as revision 0009's code wrote them
        for n, (action, detail) in enumerate([("pause", "{}"), ("conflict.settle", settle), ("resume", "{}")], 1):
            conn.execute(text("INSERT INTO audit_log (id, at, actor, action, target, detail) "
                              "VALUES (:id, :at, 'cli:a', :action, '', :detail)"),
                         {"id": n, "at": f"2026-12-0{n} 10:00:00.123456", "action": action, "detail": detail})
    upgrade(engine)
    sessions = make_session_factory(store_url)
    assert audit.verify(sessions) == {"ok": True, "rows": 3, "checked": 3, "head": audit.verify(sessions)["head"],
                                      "broken": None}
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT detail FROM audit_log WHERE id = 2")).scalar_one()
        assert "invoice" not in stored and json.loads(stored)["reason_text"] == 1
        assert conn.execute(text("SELECT subject, text FROM audit_texts")).all() == [
            ("example:7", "the customer quoted invoice 99")]
    assert audit.entries(sessions)[1]["detail"]["reason"] == "the customer quoted invoice 99"
    audit.record(sessions, "cli:b", "pause")  # appends follow the migrated chain
    assert audit.verify(sessions)["checked"] == 4

    _migrate(engine, "0009", down=True)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT detail FROM audit_log WHERE id = 2")).scalar_one()
        assert json.loads(stored)["reason"] == "the customer quoted invoice 99"
        columns = set(conn.execute(text("SELECT * FROM audit_log")).keys())
        assert "hash" not in columns and "prev_hash" not in columns
    with pytest.raises(DBAPIError, match="append-only"):  # the triggers came back
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET actor = 'x'"))
    upgrade(engine)  # and up again
    assert audit.verify(make_session_factory(store_url))["ok"]
