"""Foreign errors reach logs, Slack and HTTP answers as a type and an error id, never as their text (bot/error_ids.py).

The store is made to refuse a ticket's text (a CHECK constraint on PostgreSQL, whose error quotes the failing row;
a trigger on SQLite) while the door stores it and while a worker masks it; real SQL, Redis and RQ; Slack's Web API
faked at HTTP, slash commands signed as Slack signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bot import intake
from bot.queues import SUGGEST_JOB, Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.tickets import Ticket, add_ticket
from bot.web.app import create_app
from bot.worker.jobs import worker as tuesday_worker
from bot.worker.upkeep import Upkeep
from tests.fake_slack import FakeSlack
from tests.slash import ADMIN, AGENT, env, fake_slack, parts  # noqa: F401

REDIS_DB = 15  # this module's own database on the local Redis, flushed around every test
MARKER = "zebraquokka"  # the ticket text no log line, Slack message or answer may carry
TICKET = f"my {MARKER} marmalade order arrived broken, please send another jar"
WEBHOOK_SECRET = "error-ids-webhook-secret"
ERROR_ID = re.compile(r"error id ([0-9a-f]{8})")


def refuse_marker(sessions, table: str) -> None:
    """Make the store refuse any row of `table` whose text holds MARKER, as a constraint or trigger would."""
    with sessions() as session:
        if session.bind.dialect.name == "postgresql":
            # PostgreSQL's error then says "Failing row contains (…)": the whole row, ticket text included.
            session.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT no_marker CHECK (text NOT LIKE '%{MARKER}%')"))
        else:
            for event in ("INSERT", "UPDATE"):
                session.execute(text(f"CREATE TRIGGER no_marker_{event.lower()} BEFORE {event} ON {table} "
                                     f"WHEN NEW.text LIKE '%{MARKER}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        session.commit()


@pytest.fixture
def stack(monkeypatch, redis_url, store_url):
    for key, value in {"REDIS_URL": redis_url, "DATABASE_URL": store_url,
                       "GENERIC_WEBHOOK_SECRET": WEBHOOK_SECRET}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    runtime = Runtime(Settings())
    queues = Queues.from_settings(runtime.settings)
    yield runtime, queues
    queues.close()


def test_bound_parameters_never_reach_an_error_message(stack):
    runtime, _ = stack
    refuse_marker(runtime.sessions, "door_texts")
    with pytest.raises(IntegrityError) as refused:
        add_ticket(runtime.sessions, source="generic", external_id="p1", text=TICKET)
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(refused.value)


def test_a_store_error_at_the_door_is_answered_and_logged_by_id(stack, caplog, capfd):
    runtime, queues = stack
    refuse_marker(runtime.sessions, "door_texts")
    web = TestClient(create_app(runtime, queues))
    body = ('{"id": "w1", "subject": "broken jar", "text": "%s"}' % TICKET).encode()
    ts = str(int(time.time()))
    with caplog.at_level(logging.WARNING):
        answer = web.post("/webhooks/generic", content=body, headers={
            intake.GENERIC_SIGNATURE: intake.generic_signature(WEBHOOK_SECRET, ts, body),
            intake.GENERIC_TIMESTAMP: ts, "Content-Type": "application/json"})
    assert answer.status_code == 500
    error_id = ERROR_ID.search(answer.json()["error"]).group(1)
    assert "IntegrityError" in answer.json()["error"] and MARKER not in answer.text
    line = next(r.getMessage() for r in caplog.records if error_id in r.getMessage())
    assert "POST /webhooks/generic: store failed: IntegrityError" in line and "tickets.py" in line
    assert MARKER not in caplog.text and MARKER not in "".join(capfd.readouterr())


def test_a_store_error_in_a_suggest_job_is_logged_and_kept_by_id(stack, caplog, capfd):
    runtime, queues = stack
    ticket, _ = add_ticket(runtime.sessions, source="generic", external_id="j1", text=TICKET)
    refuse_marker(runtime.sessions, "tickets")  # the worker's masking stage moves the text into tickets: refused
    # As enqueue_suggest queues it, less its retries: RQ keeps a failed job's traceback once no retry is left.
    job, _ = queues.enqueue("suggest", SUGGEST_JOB, ticket.id, job_id=f"suggest-{ticket.id}", timeout=120)
    with caplog.at_level(logging.INFO):
        tuesday_worker(queues, ["suggest"]).work(burst=True, with_scheduler=False)
    job.refresh()
    kept = job.latest_result().exc_string
    error_id = ERROR_ID.search(kept).group(1)
    assert "IntegrityError: message withheld" in kept and MARKER not in kept  # what RQ keeps in Redis
    line = next(r.getMessage() for r in caplog.records if error_id in r.getMessage())
    assert f"job {job.id} (suggest) failed: IntegrityError" in line and "masking.py" in line
    assert MARKER not in caplog.text and MARKER not in "".join(capfd.readouterr())
    with runtime.sessions() as session:
        assert session.get(Ticket, ticket.id).pii_stage == "door"  # nothing was half-written


def test_the_upkeep_logs_a_store_error_by_type_and_id(stack, caplog):
    runtime, queues = stack
    with runtime.sessions() as session:  # a store the upkeep's chores cannot read
        cascade = " CASCADE" if session.bind.dialect.name == "postgresql" else ""
        session.execute(text(f"DROP TABLE tickets{cascade}"))
        session.commit()
    with caplog.at_level(logging.WARNING):
        done = Upkeep(runtime, queues).tick()
    assert done["monitor"] is None  # the alert rules count failed tickets
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("upkeep: monitor failed"))
    assert ERROR_ID.search(line) and ("OperationalError" in line or "ProgrammingError" in line)
    assert "bot/store/tickets.py" in line and "in failed_count" in line  # where, in our code
    # The driver's message ("no such table: tickets", 'relation "tickets" does not exist', and the statement) is
    # not repeated: it could as well have quoted a row.
    assert "no such table" not in caplog.text and "does not exist" not in caplog.text
    assert "SELECT" not in caplog.text


def test_a_slash_command_over_a_broken_store_answers_with_an_id(parts, caplog):
    with parts.runtime.sessions() as session:
        session.execute(text("DROP TABLE control_flags"))
        session.commit()
    with caplog.at_level(logging.WARNING):
        status, reply = parts.slash(AGENT, "status")
    assert status == 200 and "database is unreachable" in reply
    error_id = ERROR_ID.search(reply).group(1)
    assert "control_flags" not in reply and "no such table" not in reply
    assert any(error_id in r.getMessage() and "/tuesday status failed" in r.getMessage() for r in caplog.records)
    assert "control_flags" not in caplog.text


def test_shadow_changes_are_for_admins_and_reading_it_is_open(parts):
    for user in (AGENT,):
        assert "only Tuesday's admins" in parts.slash(user, "shadow v2")[1]
        assert "only Tuesday's admins" in parts.slash(user, "shadow off")[1]
    assert "No version is in shadow" in parts.slash(AGENT, "shadow")[1]
    assert "No version was in shadow" in parts.slash(ADMIN, "shadow off")[1]


def test_any_other_error_in_the_web_app_is_answered_and_logged_by_id(stack, caplog, capfd, tmp_path, monkeypatch):
    # A SQLite file whose stored time was overwritten with text: reading the row raises a ValueError that quotes it.
    monkeypatch.setenv("TUESDAY_DATABASE_URL", f"sqlite:///{tmp_path / 'odd.db'}")
    runtime = Runtime(Settings())
    _, queues = stack
    web = TestClient(create_app(runtime, queues))
    body = b'{"id": "w2", "subject": "jar", "text": "broken jar"}'

    def deliver():
        ts = str(int(time.time()))
        return web.post("/webhooks/generic", content=body, headers={
            intake.GENERIC_SIGNATURE: intake.generic_signature(WEBHOOK_SECRET, ts, body),
            intake.GENERIC_TIMESTAMP: ts, "Content-Type": "application/json"})

    assert deliver().status_code == 202
    with runtime.sessions() as session:
        session.execute(text(f"UPDATE tickets SET created_at = '{MARKER}'"))
        session.commit()
    with caplog.at_level(logging.WARNING):
        answer = deliver()  # a redelivery reads the stored ticket back
    assert answer.status_code == 500 and MARKER not in answer.text
    error_id = ERROR_ID.search(answer.json()["error"]).group(1)
    assert any(error_id in r.getMessage() and "ValueError" in r.getMessage() for r in caplog.records)
    assert MARKER not in caplog.text and MARKER not in "".join(capfd.readouterr())


def test_a_slack_listener_that_fails_is_logged_by_id(stack, caplog, capfd, monkeypatch):
    # A message in the intake channel becomes a ticket; the store refuses its text, the listener raises.
    slack = FakeSlack().start()
    try:
        for key, value in {"SLACK_SIGNING_SECRET": "error-ids-signing", "SLACK_BOT_TOKEN": "xoxb-test",
                           "SLACK_API_URL": slack.url, "INTAKE_CHANNEL": "C0INTAKE"}.items():
            monkeypatch.setenv(f"TUESDAY_{key}", value)
        runtime, queues = Runtime(Settings()), stack[1]
        refuse_marker(runtime.sessions, "door_texts")
        web = TestClient(create_app(runtime, queues))
        event = {"type": "message", "channel": "C0INTAKE", "user": "U0CUSTOMER", "text": TICKET,
                 "ts": "1764489700.000200", "event_ts": "1764489700.000200", "channel_type": "channel"}
        body = json.dumps({"team_id": "T0TEST", "api_app_id": "A0TUESDAY", "event": event, "type": "event_callback",
                           "event_id": "Ev0ERRORID", "event_time": 1764489700}).encode()
        ts = str(int(time.time()))
        sig = "v0=" + hmac.new(b"error-ids-signing", f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        with caplog.at_level(logging.WARNING):
            answer = web.post("/slack/events", content=body, headers={
                "Content-Type": "application/json", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
        assert answer.status_code == 500 and MARKER not in answer.text  # stored before the ack: Slack retries
        line = next(r.getMessage() for r in caplog.records if "slack listener failed" in r.getMessage())
        assert "IntegrityError" in line and ERROR_ID.search(line) and "bot/slack/listeners/events.py" in line
        assert MARKER not in caplog.text and MARKER not in "".join(capfd.readouterr())
        assert all(MARKER not in json.dumps(call["body"]) for call in slack.calls)
    finally:
        slack.stop()
