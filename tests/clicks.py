"""Signed Slack clicks against the app, a real store and Redis, Slack and Zendesk faked at HTTP: the fixtures and helpers the feedback tests share."""

import hashlib
import hmac
import json
import time
import types
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.examples import Example
from bot.store.feedback import Feedback
from bot.store.outbox import WriteBack
from bot.store.tickets import add_suggestion, set_slack_message
from bot.web.app import create_app
from tests.conftest import local_redis
from tests.fake_helpdesk import FakeZendesk
from tests.fake_slack import FakeSlack
from tests.demo_names import DEMO_TASK
from tests.tickets import stored_ticket

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL, TS = "C0TRIAGE", "1764489600.000001"
ZENDESK_EMAIL, ZENDESK_TOKEN = "bot@acme.example", "zd-api-token"


# -- fixtures ---------------------------------------------------------------------------------------

def flushed_redis(db: int):
    conn = local_redis(db)
    conn.flushdb()
    return conn


@pytest.fixture
def fake_slack():
    slack = FakeSlack().start()
    yield slack
    slack.stop()


@pytest.fixture
def fake_zendesk():
    zendesk = FakeZendesk(ZENDESK_EMAIL, ZENDESK_TOKEN).start()
    yield zendesk
    zendesk.stop()


@pytest.fixture
def env(monkeypatch, store_url, fake_slack, fake_zendesk):
    """The environment `tuesday serve` and a suggest worker would run with (Redis database 12)."""
    conn = flushed_redis(12)
    for key, value in {"REDIS_URL": "redis://127.0.0.1:6379/12", "DATABASE_URL": store_url,
                       "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": "xoxb-test-token",
                       "SLACK_API_URL": fake_slack.url, "TRIAGE_CHANNEL": CHANNEL, "ZENDESK_URL": fake_zendesk.url,
                       "ZENDESK_EMAIL": ZENDESK_EMAIL, "ZENDESK_API_TOKEN": ZENDESK_TOKEN}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    yield
    conn.flushdb()


@pytest.fixture
def parts(env):
    """(runtime, queues, client) wired from the environment, as `tuesday serve` wires them."""
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    yield runtime, queues, TestClient(create_app(runtime, queues))
    queues.close()


def posted(runtime, *, source="generic", external_id="T-1", label="claim_status", confidence=0.82) -> int:
    """A stored ticket with a suggestion posted to the triage channel; returns the suggestion id."""
    ticket, _ = stored_ticket(runtime.sessions, source=source, external_id=external_id, subject="Where is my claim?",
                           text="Filed last week, any news?")
    prediction = types.SimpleNamespace(label=label, confidence=confidence, reason="Asks about an open claim.",
                                       probabilities={label: confidence}, model_version="v1", latency_ms=120.0)
    with runtime.sessions() as session:
        row = add_suggestion(session, ticket.id, prediction, threshold=0.5, task=DEMO_TASK)
        set_slack_message(session, row.id, CHANNEL, TS)
    return row.id


# -- Slack, as Slack sends it ---------------------------------------------------------------------

def slack_sign(secret: str, timestamp: str, body: str) -> str:
    """X-Slack-Signature: v0=hex(HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw body))."""
    return "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()


def post_slack(client, payload: dict, *, secret=SIGNING_SECRET, ts=None, signature=None):
    body = urlencode({"payload": json.dumps(payload)})
    ts = ts or str(int(time.time()))
    return client.post("/slack/events", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature or slack_sign(secret, ts, body)})


def user(uid: str, name: str) -> dict:
    return {"id": uid, "username": name, "name": name, "team_id": "T0TEST"}


def click(suggestion_id, action_id: str, *, uid="U123", name="jane", selected: str | None = None) -> dict:
    """A block_actions payload for one click on the suggestion message."""
    if selected is None:
        action = {"type": "button", "action_id": action_id, "value": str(suggestion_id)}
    else:
        action = {"type": "static_select", "action_id": action_id,
                  "selected_option": {"text": {"type": "plain_text", "text": selected}, "value": selected}}
    action.update(block_id=f"tuesday_suggestion_{suggestion_id}", action_ts="1764489700.000100")
    return {"type": "block_actions", "team": {"id": "T0TEST", "domain": "tuesday-test"}, "user": user(uid, name),
            "api_app_id": "A0TUESDAY", "token": "unused-verification-token", "trigger_id": "1234.5678.abcdef",
            "container": {"type": "message", "message_ts": TS, "channel_id": CHANNEL, "is_ephemeral": False},
            "channel": {"id": CHANNEL, "name": "triage"}, "message": {"type": "message", "ts": TS, "text": "x"},
            "response_url": "https://hooks.slack.invalid/actions/T0TEST/1/x", "actions": [action]}


def submission(view: dict, label: str, why: str | None, *, uid="U123", name="jane") -> dict:
    """The view_submission Slack sends when the modal it was asked to open is saved."""
    values = {"label": {"label": {"type": "static_select", "selected_option": {
        "text": {"type": "plain_text", "text": label}, "value": label}}},
        "why": {"why": {"type": "plain_text_input", "value": why}}}
    return {"type": "view_submission", "team": {"id": "T0TEST", "domain": "tuesday-test"}, "user": user(uid, name),
            "api_app_id": "A0TUESDAY", "token": "unused-verification-token", "trigger_id": "1234.5678.abcdef",
            "view": {"id": "V0MODAL", "team_id": "T0TEST", "type": "modal", "callback_id": view["callback_id"],
                     "private_metadata": view["private_metadata"], "state": {"values": values}, "hash": "1.abc"},
            "response_urls": []}


def wait_for(check, timeout: float = 5.0):
    """Poll until check() is truthy: the listener's work continues after the ack."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the listener")


def updates(slack: FakeSlack, n: int) -> list[dict]:
    """The bodies of the first n chat.update calls, once they have arrived."""
    wait_for(lambda: len(slack.calls_to("chat.update")) >= n)
    return [c["body"] for c in slack.calls_to("chat.update")]


def feedback_rows(runtime) -> list[Feedback]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Feedback).order_by(Feedback.id)))


def examples(runtime) -> list[Example]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Example).order_by(Example.id)))


def outbox_rows(runtime) -> list[WriteBack]:
    with runtime.sessions() as session:
        return list(session.scalars(select(WriteBack).order_by(WriteBack.id)))


def context_lines(blocks: list[dict]) -> list[str]:
    return [b["elements"][0]["text"] for b in blocks if b["type"] == "context"]
