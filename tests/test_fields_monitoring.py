"""After launch, per field: each task's overridden labels alert under its own name, the weekly digest has a line per
field, the dashboard has a task picker (real SQLite and PostgreSQL, real Redis, Slack faked at HTTP)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.monitor import digest
from bot.monitor.checks import check_alerts
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.alerts import Alert
from bot.store.feedback import Feedback
from bot.store.production import ProductionPointer
from bot.store.tickets import Suggestion, Ticket
from bot.web.app import create_app
from tests.test_alerts import CHANNEL, LIVE_SINCE, NOW, SECRET, fake_slack, overridden_week, posts  # noqa: F401
from tests.test_alerts import slack_client
from tests.test_dashboard import LINK_SECRET, PUBLIC, signed

URGENCY_VERSION = "v7"


@pytest.fixture
def runtime(two_tasks, store_url, fake_slack, redis_url, monkeypatch):  # noqa: F811
    """The demo's two fields: topic's production v3 and urgency's v7, both live for 20 days."""
    for key, value in {"DATABASE_URL": store_url, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
                       "SLACK_API_URL": fake_slack.url, "TRIAGE_CHANNEL": CHANNEL, "DIGEST_DAY": "",
                       "REDIS_URL": redis_url, "LINK_SECRET": LINK_SECRET, "PUBLIC_URL": PUBLIC}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    rt = Runtime(Settings())
    with rt.sessions() as session:
        session.add(ProductionPointer(slot="topic", version="v3", switched_at=LIVE_SINCE, event_id=1))
        session.add(ProductionPointer(slot="urgency", version=URGENCY_VERSION, switched_at=LIVE_SINCE, event_id=2))
        session.commit()
    return rt


def urgency_week(runtime) -> None:
    """urgency this week: `soon` 25 reviewed, 9 changed to urgent + 3 to routine = 12 of 25 = 48 %;
    `routine` 10 reviewed, all accepted. Topic's rows (overridden_week) are on other tickets."""
    at = NOW - timedelta(days=2)
    clicks = [("soon", "accept", "soon")] * 13 + [("soon", "change", "urgent")] * 9 + \
             [("soon", "change", "routine")] * 3 + [("routine", "accept", "routine")] * 10
    with runtime.sessions() as session:
        for i, (label, action, given) in enumerate(clicks):
            ticket = Ticket(source="test", external_id=f"u-{i}", text="masked text", created_at=at)
            session.add(ticket)
            session.flush()
            row = Suggestion(task="urgency", ticket_id=ticket.id, label=label, routing="suggested", confidence=0.9,
                             model_version=URGENCY_VERSION, latency_ms=30.0, created_at=at, posted_at=at,
                             slack_channel=CHANNEL, slack_ts=f"1.{ticket.id}", predicted_label=label)
            session.add(row)
            session.flush()
            session.add(Feedback(task="urgency", suggestion_id=row.id, ticket_id=ticket.id, user_id="U0AGENT",
                                 action=action, label=given, model_version=URGENCY_VERSION,
                                 created_at=at + timedelta(seconds=60)))
        session.commit()


def test_each_fields_overridden_labels_alert_under_its_own_name(runtime, fake_slack):  # noqa: F811
    overridden_week(runtime)
    urgency_week(runtime)
    assert check_alerts(runtime, slack_client(fake_slack), NOW)["fired"] == 2
    with runtime.sessions() as session:
        keys = sorted(a.key for a in session.scalars(select(Alert)))
    assert keys == ["billing_dispute", "urgency/soon"]  # topic's key as before fields; urgency's names its task
    [field] = [text for text in posts(fake_slack) if text.startswith(":rotating_light: *urgency*")]
    assert field.startswith(":rotating_light: *urgency*: *soon* overridden 48 % this week (12 of 25 reviews")
    assert "since v7" in field and field.endswith("`/tuesday retrain urgency`")
    [topic] = [text for text in posts(fake_slack) if text.startswith(":rotating_light: *billing_dispute*")]
    assert topic.endswith("`/tuesday retrain`") and "since v3" in topic


def test_the_digest_has_a_line_per_field(runtime, fake_slack):  # noqa: F811
    overridden_week(runtime)
    urgency_week(runtime)
    runtime.settings.digest_day, runtime.settings.digest_hour = "thursday", 9
    assert digest.check_digest(runtime, slack_client(fake_slack), NOW)["posted"] is True
    [upload] = fake_slack.uploads.values()
    comment = upload["initial_comment"]
    assert "50 suggestions for 50 tickets" in comment  # topic's week, as with one field
    # urgency: 35 suggestions, 35 reviewed, 23 accepted (66 %), 12 changed (34 %)
    assert ("• *urgency* (v7): 35 suggestions, 35 reviewed: 66 % accepted, override rate 34 %; "
            "most overridden: soon 48 % of 25") in comment


def test_the_dashboard_picks_a_field(runtime):
    urgency_week(runtime)
    queues = Queues.from_settings(runtime.settings)
    now = datetime.fromtimestamp(1_800_000_000.0, timezone.utc)
    client = TestClient(create_app(runtime, queues, clock=lambda: now.timestamp()))
    try:
        topic = unescape(client.get(signed("/dashboard/labels") + "&days=366").text)
        assert "<strong>topic</strong>" in topic and "&task=urgency" in topic  # the picker, topic shown
        assert "soon" not in topic
        picked = unescape(client.get(signed("/dashboard/labels") + "&days=366&task=urgency").text)
        assert "<strong>urgency</strong>" in picked and ">soon<" in picked and "billing_dispute" not in picked
        assert "&task=urgency" in picked.split("<nav>")[1].split("</nav>")[0]  # navigation keeps the field
        assert client.get(signed("/dashboard/labels") + "&task=nope").status_code == 400
    finally:
        queues.close()
