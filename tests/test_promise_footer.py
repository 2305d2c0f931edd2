"""The warning under posted suggestions while a version's promise is not valid now, and the re-set hand-off threshold
routing them: the real suggest job on the tiny trained model, Slack faked at HTTP, real SQLite and Redis."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.monitor import promise
from bot.runtime import Runtime, slack_client
from bot.settings import Settings
from bot.store.base import utc_now
from bot.store.promise_checks import add_check
from bot.store.tickets import OUT_OF_SCOPE, SUGGESTED, Suggestion, Ticket, add_ticket, route
from bot.worker.suggest import Suggester
from tests.demo_names import DEMO_TASK
from tests.fake_slack import FakeSlack
from tests.test_promise_watch import B, H, clicked, store

REDIS_DB = 12  # the module's database on the local Redis (shared with tests/test_promise_watch.py)
CHANNEL = "C0TRIAGE"
NOTHING = 1.0 + 1e-9  # a threshold above every confidence


# -- the posted message ------------------------------------------------------------------------------------------------

@pytest.fixture
def fake_slack():
    slack = FakeSlack().start()
    yield slack
    slack.stop()


@pytest.fixture
def served(trained_version, monkeypatch, redis_url, fake_slack):
    """The tiny trained model as production, never handing off by its own thresholds."""
    from tests.test_suggest import copy_version

    for key, value in {"REDIS_URL": redis_url, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": fake_slack.url,
                       "TRIAGE_CHANNEL": CHANNEL, "CONFIDENCE_THRESHOLD": "0"}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    runtime = Runtime(Settings())
    live = copy_version(runtime.registry, trained_version[1],
                        {"handoff_threshold": 0.0, "max_wrong": 0.05, "confidence": 0.9, "far_threshold": 0.0})
    runtime.production.switch(live.name, by="test", reason="fixture")
    return runtime, live


def post(runtime, fake_slack, external_id: str) -> tuple[Suggestion, dict]:
    suggester = Suggester(runtime, slack_client(runtime.settings))  # a fresh worker: nothing cached
    try:
        ticket, _ = add_ticket(runtime.sessions, source="generic", external_id=external_id, text="Where is my claim?")
        result = suggester.run(ticket.id)
    finally:
        suggester.close()
    with runtime.sessions() as session:
        row = session.get(Suggestion, result["suggestion_id"])
    return row, fake_slack.calls_to("chat.postMessage")[-1]["body"]


def footer(body: dict) -> list[str]:
    return [e["text"] for b in body["blocks"] if b["type"] == "context" for e in b["elements"]
            if "Promise not valid now" in e["text"]]


@pytest.mark.slow
def test_the_posted_message_warns_and_hands_off_by_the_reset_while_a_recent_check_says_shifted(served, fake_slack):
    runtime, live = served
    row, body = post(runtime, fake_slack, "before")
    assert footer(body) == [] and row.routing != OUT_OF_SCOPE  # its own thresholds: never out of scope

    check = {"version": live.name, "task": DEMO_TASK, "n": 200, "below": 90, "p05": 0.6, "p_value": 1e-30,
             "shifted": True, "reset_handoff": NOTHING, "reset_bound": 0.05, "far_on": False, "clicked_n": 120,
             "in_scope_n": 110, "rule": promise.RESET}
    add_check(runtime.sessions, checked_at=utc_now() - timedelta(hours=1), **check)  # too old to act on
    row, body = post(runtime, fake_slack, "stale")
    assert footer(body) == [] and row.routing != OUT_OF_SCOPE

    add_check(runtime.sessions, checked_at=utc_now(), **check)
    row, body = post(runtime, fake_slack, "shifted")
    [note] = footer(body)
    assert note == (":warning: Promise not valid now: recent tickets differ from the ones it was measured on (90 of 200 "
                    "less similar to any labelled ticket than 95 % of the holdout); hand-off threshold re-set to 100 % "
                    "from 120 clicked tickets")
    assert (row.routing, row.label) == (OUT_OF_SCOPE, H)  # the re-set threshold routed it
    assert "below the hand-off threshold 100%" in json.dumps(body["blocks"])

    add_check(runtime.sessions, checked_at=utc_now(), **{**check, "shifted": False, "reset_handoff": None,
                                                         "rule": None})
    row, body = post(runtime, fake_slack, "after")
    assert footer(body) == [] and row.routing != OUT_OF_SCOPE


@pytest.mark.slow
def test_live_tickets_that_shift_put_the_warning_under_the_next_message(served, fake_slack):
    """The whole way: stored live suggestions far below the version's holdout p05, with clicks, the upkeep's check,
    then a ticket posted by the real model."""
    runtime, live = served
    p05 = promise.reference(runtime, live.name)["holdout_similarity"]["p05"]
    now = utc_now()
    rows = [(SUGGESTED, B, conf, round(p05 - 0.3, 4), [final]) for conf, _, _, final in clicked()]
    store(runtime, live.name, rows, now=now)
    assert promise.check_promises(runtime, now) == {DEMO_TASK: True}
    row, body = post(runtime, fake_slack, "next")
    [note] = footer(body)
    assert "(50 of 50 less similar" in note and "re-set to 40 % from 50 clicked tickets" in note
    top = max(row.probs, key=row.probs.get)
    assert (row.routing, row.label) == route(top, row.confidence, threshold=0.0, handoff_threshold=0.40,
                                             handoff_label=H)


def test_the_footer_sits_under_the_models_line_of_single_and_several_field_messages():
    from bot.slack.blocks import suggestion_blocks
    from bot.slack.fields import fields_blocks
    from tests.demo_names import DEMO_TASKS

    ticket = Ticket(id=1, source="generic", external_id="1", subject="Card charged twice", text="masked",
                    pii_stage="full")
    routing, urgency = DEMO_TASKS.names[0], DEMO_TASKS.names[1]
    row = Suggestion(id=1, task=routing, label=B, routing=SUGGESTED, confidence=0.9, model_version="v1",
                     latency_ms=10.0, evidence="[]", reason="")
    field = Suggestion(id=2, task=urgency, label=DEMO_TASKS[urgency].label_names[0], routing=SUGGESTED, confidence=0.8,
                       model_version="v2", latency_ms=5.0, evidence="[]", reason="")
    note = ":warning: Promise not valid now: <recent tickets> differ"
    for blocks in (suggestion_blocks(ticket, row, DEMO_TASKS[routing], note=note),
                   fields_blocks(ticket, row, {urgency: field}, DEMO_TASKS, note=note)):
        kinds = [b["type"] for b in blocks]
        assert kinds[-2:] == ["context", "actions"]  # the footer, then the buttons
        assert blocks[-2]["elements"][0]["text"] == ":warning: Promise not valid now: &lt;recent tickets&gt; differ"
        assert "model" in blocks[-3]["elements"][0]["text"]  # right under the models line
    assert not any("Promise" in json.dumps(b) for b in suggestion_blocks(ticket, row, DEMO_TASKS[routing]))
