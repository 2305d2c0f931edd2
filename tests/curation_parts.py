"""Fixtures and helpers of the curation tests: managers, conflicts, data approval, snapshots."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.lifecycle.retrain import prepare_run
from bot.lifecycle.runs import maybe_scheduled_retrain, request_retrain
from bot.lifecycle.training import snapshot_for_training
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.curation_blocks import SETTLE_LABEL, SETTLE_REASON
from bot.store.base import utc_now
from bot.store.examples import Example
from bot.store.feedback import record_feedback
from bot.store.runs import finish_run, get_run
from bot.web.app import create_app
from bot.worker.jobs import worker as tuesday_worker
from tests.clicks import SIGNING_SECRET, posted, slack_sign, user, wait_for
from tests.fake_slack import FakeSlack
from tests.demo_names import DEMO_TASK

REDIS_DB = 3  # this module's own database on the local Redis, flushed around every test
CHANNEL = "C0TRIAGE"
MANAGER, AGENT = "U0MANAGER", "U0AGENT"
ANN_WHY = "Asks where the claim stands"
BOB_WHY = "Disputes the premium, mail j.doe@example.com"


@pytest.fixture
def fake_slack():
    slack = FakeSlack().start()
    yield slack
    slack.stop()


@pytest.fixture
def env(monkeypatch, store_url, redis_url, fake_slack):
    for key, value in {"REDIS_URL": redis_url, "DATABASE_URL": store_url, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                       "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": fake_slack.url,
                       "TRIAGE_CHANNEL": CHANNEL, "MANAGERS": MANAGER, "RETRAIN_AFTER_LABELS": "0"}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    return monkeypatch


@pytest.fixture
def parts(env):
    """(runtime, queues, client of the web app), wired as `tuesday serve` wires them."""
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    yield runtime, queues, TestClient(create_app(runtime, queues))
    queues.close()


# -- helpers ----------------------------------------------------------------------------------------

def add_examples(runtime, n: int, start: int = 0, label: str = "claim_status") -> None:
    with runtime.sessions() as session:
        session.add_all([Example(task=DEMO_TASK, source="import", external_id=str(i), text=f"where is my claim number {i} now",
                                 label=label) for i in range(start, start + n)])
        session.commit()


def disputed(runtime) -> Example:
    """A ticket ann accepted as claim_status and bob changed to billing_dispute; returns its example."""
    sid = posted(runtime, external_id="T-DISPUTED")
    labels = runtime.task.labels
    record_feedback(runtime.sessions, suggestion_id=sid, action="accept", label=None, user_id="U1", user_name="ann",
                    why=ANN_WHY, labels=labels)
    record_feedback(runtime.sessions, suggestion_id=sid, action="change", label="billing_dispute", user_id="U2",
                    user_name="bob", why=BOB_WHY, labels=labels)
    example = the_example(runtime, "ticket-1")
    assert example.conflicted
    return example


def the_example(runtime, external_id: str) -> Example:
    with runtime.sessions() as session:
        return session.scalar(select(Example).where(Example.external_id == external_id))


def stored_rows(runtime, key: str) -> list[dict]:
    """Every line of a snapshot in the artifact store (train, holdout and meta)."""
    return [json.loads(line) for line in runtime.registry.store.get_bytes(key).decode().splitlines()]


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows if row.get("split") in ("train", "holdout")}


def slash(client, uid: str, text: str) -> dict:
    """`/tuesday text` as Slack posts it; returns the ephemeral reply."""
    body = urlencode({"team_id": "T0TEST", "channel_id": CHANNEL, "user_id": uid, "user_name": uid.lower(),
                      "command": "/tuesday", "text": text, "response_url": "https://hooks.slack.invalid/x",
                      "trigger_id": "1.2.3"})
    ts = str(int(time.time()))
    response = client.post("/slack/events", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_sign(SIGNING_SECRET, ts, body)})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["response_type"] == "ephemeral"
    return reply


def button(action_id: str, value: str, uid: str) -> dict:
    """A click on a button of an ephemeral reply to a slash command."""
    return {"type": "block_actions", "team": {"id": "T0TEST", "domain": "tuesday-test"}, "user": user(uid, uid.lower()),
            "api_app_id": "A0TUESDAY", "token": "unused", "trigger_id": "9.8.7",
            "container": {"type": "message", "message_ts": "1764489600.000900", "channel_id": CHANNEL,
                          "is_ephemeral": True},
            "channel": {"id": CHANNEL, "name": "triage"},
            "response_url": "https://hooks.slack.invalid/actions/x",
            "actions": [{"type": "button", "action_id": action_id, "value": value, "block_id": "b",
                         "action_ts": "1764489700.000100"}]}


def settle_submission(view: dict, label: str, reason: str, uid: str) -> dict:
    values = {SETTLE_LABEL: {SETTLE_LABEL: {"type": "static_select", "selected_option": {
        "text": {"type": "plain_text", "text": label}, "value": label}}},
        SETTLE_REASON: {SETTLE_REASON: {"type": "plain_text_input", "value": reason}}}
    return {"type": "view_submission", "team": {"id": "T0TEST", "domain": "tuesday-test"}, "user": user(uid, "mo"),
            "api_app_id": "A0TUESDAY", "token": "unused", "trigger_id": "9.8.7",
            "view": {"id": "V0SETTLE", "team_id": "T0TEST", "type": "modal", "callback_id": view["callback_id"],
                     "private_metadata": view["private_metadata"], "state": {"values": values}, "hash": "1.abc"},
            "response_urls": []}


def told(fake_slack, n: int) -> list[dict]:
    """The first n ephemeral messages, once they have arrived (listeners work after the ack)."""
    wait_for(lambda: len(fake_slack.calls_to("chat.postEphemeral")) >= n)
    return [c["body"] for c in fake_slack.calls_to("chat.postEphemeral")]


def work_control(queues) -> None:
    """What a CPU worker does with the "control" queue (`tuesday worker --queue suggest --burst`)."""
    tuesday_worker(queues, ["control"]).work(burst=True)


def three_snapshots(runtime, queues) -> dict[str, dict]:
    """The snapshot rows (by id) of `tuesday train`, a queued retrain and a scheduled retrain, taken now."""
    now = utc_now() + timedelta(hours=7)  # the schedule (6 h) is due whenever the last run finished
    out = {"cli": by_id(stored_rows(runtime, snapshot_for_training(runtime)["snapshot_key"]))}
    run, created = request_retrain(runtime, queues, requested_by=MANAGER, trigger="command")
    assert created
    prepare_run(runtime, queues, None, run.id)
    run = get_run(runtime.sessions, run.id)
    out["queued"] = by_id(stored_rows(runtime, run.snapshot))
    finish_run(runtime.sessions, run.id, "cancelled")
    run, created = maybe_scheduled_retrain(runtime, queues, now=now)
    assert created and run.trigger == "schedule"
    work_control(queues)  # the scheduled run's prepare job, as a CPU worker runs it
    run = get_run(runtime.sessions, run.id)
    assert run.status == "running", run.error
    out["scheduled"] = by_id(stored_rows(runtime, run.snapshot))
    finish_run(runtime.sessions, run.id, "cancelled")
    return out
