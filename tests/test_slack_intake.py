"""Slack messages become tickets: signed Events API callbacks and the "Triage with Tuesday" shortcut against the
app, a real store and Redis, Slack faked at HTTP; and `tuesday socket` wiring without a network."""

import json
import time

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from slack_bolt.request import BoltRequest
from sqlalchemy import select

from bot.cli.main import main
from bot.cli.serve import socket_handler
from bot.helpdesk.adapters import ticket_link
from bot.queues import Queues, suggest_job_id
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.tickets import Ticket
from bot.web.app import create_app
from tests.clicks import SIGNING_SECRET, fake_slack, flushed_redis, parts, post_slack, slack_sign, wait_for  # noqa: F401
from tests.tickets import finish_all

INTAKE, OTHER = "C0INTAKE", "C0RANDOM"
TS = "1764489700.000200"
QUESTION = "Hi, I am j.doe@example.com, call me at 555-013-2299 about my claim"
MASKED = "Hi, I am [EMAIL], call me at [PHONE] about my claim"


@pytest.fixture
def env(monkeypatch, tmp_path, fake_slack):  # noqa: F811 (the fixture imported above)
    """The environment `tuesday serve` runs with: Redis database 10, SQLite, Slack faked."""
    conn = flushed_redis(10)
    for key, value in {"REDIS_URL": "redis://127.0.0.1:6379/10", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
                       "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": "xoxb-test-token",
                       "SLACK_API_URL": fake_slack.url, "TRIAGE_CHANNEL": "C0TRIAGE",
                       "INTAKE_CHANNEL": INTAKE}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    yield
    conn.flushdb()


def message(channel=INTAKE, ts=TS, text=QUESTION, **extra) -> dict:
    return {"type": "message", "channel": channel, "user": "U0CUSTOMER", "text": text, "ts": ts,
            "event_ts": ts, "channel_type": "channel", **extra}


def callback(event: dict, event_id="Ev0INTAKE1") -> dict:
    return {"token": "unused-verification-token", "team_id": "T0TEST", "api_app_id": "A0TUESDAY", "event": event,
            "type": "event_callback", "event_id": event_id, "event_time": 1764489700,
            "authorizations": [{"team_id": "T0TEST", "user_id": "U0TUESDAY", "is_bot": True}]}


def post_event(client, payload: dict, *, retry: int = 0):
    """POST a JSON body to /slack/events signed as Slack signs it; retry > 0 adds Slack's retry headers."""
    body = json.dumps(payload)
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": slack_sign(SIGNING_SECRET, ts, body)}
    if retry:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    return client.post("/slack/events", content=body, headers=headers)


def tickets(runtime) -> list[Ticket]:
    """The stored tickets, after the worker's masking stage (which the suggest job runs first)."""
    finish_all(runtime.sessions)
    with runtime.sessions() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def shortcut(channel=OTHER, ts=TS, text=QUESTION, uid="U0AGENT", response_url="https://hooks.slack.invalid/x") -> dict:
    """The message_action payload of "Triage with Tuesday" used on a message."""
    return {"type": "message_action", "token": "unused-verification-token", "action_ts": "1764489800.000100",
            "team": {"id": "T0TEST", "domain": "tuesday-test"}, "user": {"id": uid, "name": "agent"},
            "channel": {"id": channel, "name": "support"}, "callback_id": "tuesday_triage",
            "trigger_id": "1234.5678.abcdef", "message_ts": ts, "response_url": response_url,
            "message": {"type": "message", "user": "U0CUSTOMER", "text": text, "ts": ts}}


# -- events -----------------------------------------------------------------------------------------

def test_an_intake_message_becomes_one_masked_ticket_and_one_suggest_job(parts):
    runtime, queues, client = parts
    assert post_event(client, callback(message())).status_code == 200
    [ticket] = wait_for(lambda: tickets(runtime))
    assert (ticket.source, ticket.external_id, ticket.text) == ("slack", f"{INTAKE}:{TS}", MASKED)
    assert ticket.url is None  # messages link to it by its id
    assert ticket_link(Settings(), "slack", ticket.external_id) == f"https://slack.com/archives/{INTAKE}/p1764489700000200"
    assert ticket.requester == "U0CUSTOMER"
    wait_for(lambda: queues.suggest.job_ids)
    assert queues.suggest.job_ids == [suggest_job_id(ticket.id)]


def test_a_redelivered_event_makes_nothing_new(parts):
    runtime, queues, client = parts
    payload = callback(message())
    assert post_event(client, payload).status_code == 200
    wait_for(lambda: queues.suggest.job_ids)
    for retry in (1, 2):
        assert post_event(client, payload, retry=retry).status_code == 200
    time.sleep(0.3)  # a listener, had it stored anything, would have by now
    [ticket] = tickets(runtime)
    assert queues.suggest.job_ids == [suggest_job_id(ticket.id)]


@pytest.mark.parametrize("case", ["bot message", "bot_message subtype", "thread reply", "edit", "other channel",
                                  "channel join", "empty text"])
def test_other_messages_make_nothing(parts, case):
    runtime, queues, client = parts
    event = {"bot message": message(bot_id="B0OTHER"),
             "bot_message subtype": message(subtype="bot_message", bot_id="B0OTHER"),
             "thread reply": message(ts="1764489800.000300", thread_ts=TS),
             "edit": {"type": "message", "subtype": "message_changed", "channel": INTAKE, "ts": "1764489800.000300",
                      "message": message(edited={"user": "U0CUSTOMER", "ts": "1764489800.000300"}),
                      "previous_message": message(text="old")},
             "other channel": message(channel=OTHER),
             "channel join": message(subtype="channel_join", text="<@U0CUSTOMER> has joined the channel"),
             "empty text": message(text="   ")}[case]
    assert post_event(client, callback(event)).status_code == 200
    time.sleep(0.3)
    assert tickets(runtime) == [] and queues.suggest.job_ids == []


def test_without_an_intake_channel_messages_make_nothing(env, monkeypatch):
    monkeypatch.setenv("TUESDAY_INTAKE_CHANNEL", "")
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    assert post_event(TestClient(create_app(runtime, queues)), callback(message())).status_code == 200
    time.sleep(0.3)
    assert tickets(runtime) == [] and queues.suggest.job_ids == []
    queues.close()


def test_url_verification_is_answered(parts):
    _, _, client = parts
    payload = {"token": "unused-verification-token", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
               "type": "url_verification"}
    response = post_event(client, payload)
    assert response.status_code == 200 and response.json() == {"challenge": payload["challenge"]}


def test_an_unsigned_event_is_401(parts):
    runtime, _, client = parts
    body = json.dumps(callback(message()))
    response = client.post("/slack/events", content=body, headers={
        "Content-Type": "application/json", "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": "v0=" + "0" * 64})
    assert response.status_code == 401
    time.sleep(0.2)
    assert tickets(runtime) == []


# -- the message shortcut ---------------------------------------------------------------------------

def test_the_shortcut_makes_a_ticket_and_confirms_through_its_response_url(parts, fake_slack):  # noqa: F811
    runtime, queues, client = parts
    respond = f"{fake_slack.url}hooks/respond"  # a response_url works in any channel, the bot a member or not
    response = post_slack(client, shortcut(response_url=respond))
    assert response.status_code == 200 and response.text == ""
    [told] = [c["body"] for c in wait_for(lambda: fake_slack.calls_to("respond"))]
    [ticket] = tickets(runtime)
    assert (ticket.source, ticket.external_id, ticket.text) == ("slack", f"{OTHER}:{TS}", MASKED)
    assert ticket_link(Settings(), "slack", ticket.external_id) == f"https://slack.com/archives/{OTHER}/p1764489700000200"
    assert told["response_type"] == "ephemeral" and f"ticket #{ticket.id}" in told["text"]
    assert fake_slack.calls_to("chat.postEphemeral") == []
    assert queues.suggest.job_ids == [suggest_job_id(ticket.id)]

    # Used again (or on a message intake already took): the same ticket, said so, nothing queued twice.
    assert post_slack(client, shortcut(uid="U0OTHER", response_url=respond)).status_code == 200
    wait_for(lambda: len(fake_slack.calls_to("respond")) == 2)
    again = fake_slack.calls_to("respond")[1]["body"]
    assert f"already ticket #{ticket.id}" in again["text"]
    assert len(tickets(runtime)) == 1 and queues.suggest.job_ids == [suggest_job_id(ticket.id)]


def test_a_shortcut_whose_response_url_fails_is_confirmed_by_chat_post_ephemeral(parts, fake_slack):  # noqa: F811
    runtime, queues, client = parts
    assert post_slack(client, shortcut(response_url="http://127.0.0.1:1/hooks/respond")).status_code == 200
    [told] = [c["body"] for c in wait_for(lambda: fake_slack.calls_to("chat.postEphemeral"))]
    assert (told["channel"], told["user"]) == (OTHER, "U0AGENT") and "ticket #" in told["text"]


def test_the_shortcut_on_a_message_without_text_says_why(parts, fake_slack):  # noqa: F811
    runtime, queues, client = parts
    assert post_slack(client, shortcut(text="", response_url=f"{fake_slack.url}hooks/respond")).status_code == 200
    [told] = [c["body"] for c in wait_for(lambda: fake_slack.calls_to("respond"))]
    assert "Not triaged" in told["text"] and "no text" in told["text"]
    assert tickets(runtime) == [] and queues.suggest.job_ids == []


# -- tuesday socket -----------------------------------------------------------------------------------

@pytest.mark.parametrize("unset,said", [("SLACK_APP_TOKEN", "TUESDAY_SLACK_APP_TOKEN"),
                                        ("SLACK_BOT_TOKEN", "TUESDAY_SLACK_BOT_TOKEN")])
def test_socket_without_a_token_is_a_clean_error(env, monkeypatch, unset, said):
    monkeypatch.setenv("TUESDAY_SLACK_APP_TOKEN", "xapp-1-A0TUESDAY-1-abc")
    monkeypatch.setenv(f"TUESDAY_{unset}", "")
    result = CliRunner().invoke(main, ["socket"], catch_exceptions=False)
    assert result.exit_code == 1
    assert said in result.output and "Socket Mode needs" in result.output and "Traceback" not in result.output


def test_socket_refuses_a_bot_token_as_the_app_token(env, monkeypatch):
    monkeypatch.setenv("TUESDAY_SLACK_APP_TOKEN", "xoxb-test-token")
    result = CliRunner().invoke(main, ["socket"], catch_exceptions=False)
    assert result.exit_code == 1 and "xapp-" in result.output


def test_socket_handler_runs_the_same_listeners(env, monkeypatch, fake_slack):  # noqa: F811
    monkeypatch.setenv("TUESDAY_SLACK_APP_TOKEN", "xapp-1-A0TUESDAY-1-abc")
    monkeypatch.setenv("TUESDAY_SLACK_SIGNING_SECRET", "")  # Socket Mode needs none
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    handler = socket_handler(runtime, queues)  # builds, connects nothing
    try:
        assert handler.app_token == "xapp-1-A0TUESDAY-1-abc"
        # What the websocket would hand over, dispatched as the handler does (unsigned: socket mode).
        response = handler.app.dispatch(BoltRequest(body=callback(message()), mode="socket_mode"))
        assert response.status == 200
        [ticket] = wait_for(lambda: tickets(runtime))
        assert ticket.external_id == f"{INTAKE}:{TS}"
        response = handler.app.dispatch(BoltRequest(body=shortcut(), mode="socket_mode"))
        assert response.status == 200
        wait_for(lambda: fake_slack.calls_to("chat.postEphemeral"))
        assert len(tickets(runtime)) == 2 and len(queues.suggest.job_ids) == 2
    finally:
        handler.close()
        queues.close()


# -- stored before acknowledged -----------------------------------------------------------------------

def test_the_200_comes_only_after_the_ticket_is_stored(parts, monkeypatch):
    """Slack never resends an event it got a 200 for: by then the ticket must be in the store."""
    from bot.slack.listeners import payloads as listeners

    runtime, queues, client = parts
    real = listeners.add_ticket

    def slow_store(*args, **kwargs):
        time.sleep(0.5)  # a busy database
        return real(*args, **kwargs)

    monkeypatch.setattr(listeners, "add_ticket", slow_store)
    assert post_event(client, callback(message())).status_code == 200
    assert len(tickets(runtime)) == 1  # no waiting: stored before the answer


def test_a_store_failure_is_not_acknowledged_so_slack_retries(parts, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from bot.slack.listeners import payloads as listeners

    runtime, queues, client = parts

    def down(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(listeners, "add_ticket", down)
    assert post_event(client, callback(message())).status_code >= 500
    monkeypatch.undo()


def test_redis_down_after_the_store_loses_nothing(env, fake_slack):  # noqa: F811
    """The event is acknowledged, the ticket stored; the sweeper queues it once Redis answers."""
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from bot.queues import Queues, sweep_tickets
    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.store.production import switch
    from bot.web.app import create_app
    from tests.test_commands import fake_version
    from tests.test_web import unreachable_queues

    runtime = Runtime(Settings())
    client = TestClient(create_app(runtime, unreachable_queues()))
    assert post_event(client, callback(message())).status_code == 200
    [ticket] = tickets(runtime)
    fake_version(runtime.registry, 0.5)
    switch(runtime.sessions, "v1", task=runtime.task.name, by="test", reason="test")
    queues = Queues.from_settings(runtime.settings)
    try:
        assert sweep_tickets(runtime, queues, grace=timedelta(0)) == 1
        assert queues.suggest.job_ids == [suggest_job_id(ticket.id)]
    finally:
        queues.close()
