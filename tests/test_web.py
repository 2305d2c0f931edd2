"""The webhook endpoints against real Redis and a real store, with requests signed as the senders sign them."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import func, select

from bot.intake import GENERIC_SIGNATURE, GENERIC_TIMESTAMP, ZENDESK_SIGNATURE, ZENDESK_TIMESTAMP, IncomingTicket
from bot.queues import SUGGEST_JOB, Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.masking import finish_masking
from bot.store.tickets import DoorText, Ticket
from bot.web.app import accept_ticket, create_app
from tests.test_intake import EVENT, generic_sign, zendesk_sign

SECRET = "zendesk-signing-secret"
GENERIC_SECRET = "generic-secret"
REDIS_DB = 9  # this module's own database on the local Redis, flushed around every test


def unreachable_queues() -> Queues:
    """Queues on a port nothing listens on, failing at once (no retries)."""
    return Queues(Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)))


@pytest.fixture
def parts(monkeypatch, redis_url):
    """(runtime, queues, client) wired from the environment, as `tuesday serve` wires them."""
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_ZENDESK_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TUESDAY_GENERIC_WEBHOOK_SECRET", GENERIC_SECRET)
    monkeypatch.setenv("TUESDAY_WEBHOOK_MAX_BYTES", "4096")
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    return runtime, queues, TestClient(create_app(runtime, queues))


def zendesk_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def post_zendesk(client, payload=None, *, body=None, secret=SECRET, ts=None, headers=None):
    body = json.dumps(payload).encode() if body is None else body
    ts = ts or zendesk_now()
    sent = {"Content-Type": "application/json", ZENDESK_SIGNATURE: zendesk_sign(secret, ts, body),
            ZENDESK_TIMESTAMP: ts, **(headers or {})}
    return client.post("/webhooks/zendesk", content=body, headers=sent)


def post_generic(client, payload, *, secret=GENERIC_SECRET, ts=None):
    body = json.dumps(payload).encode()
    ts = ts or str(int(time.time()))
    return client.post("/webhooks/generic", content=body, headers={
        "Content-Type": "application/json", GENERIC_SIGNATURE: generic_sign(secret, ts, body), GENERIC_TIMESTAMP: ts})


def tickets(runtime) -> list[Ticket]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def nothing_stored(runtime, queues) -> bool:
    with runtime.sessions() as session:
        return session.scalar(select(func.count(Ticket.id))) == 0 and queues.suggest.count == 0


def test_zendesk_event_is_stored_masked_and_queued(parts):
    runtime, queues, client = parts
    event = {**EVENT, "detail": {**EVENT["detail"], "description": "Reach me at j.doe@example.com or 555-013-2299."}}
    response = post_zendesk(client, event)
    assert response.status_code == 202, response.text
    assert response.json() == {"ticket_id": 1, "status": "queued", "job_id": "suggest-1"}
    [ticket] = tickets(runtime)
    assert (ticket.pii_stage, ticket.text) == ("door", "")  # the text waits for the worker's stage
    with runtime.sessions() as session:
        assert session.get(DoorText, ticket.id).text == "Reach me at [EMAIL] or [PHONE]."  # the door's stage
    finish_masking(runtime.sessions, ticket.id)
    [ticket] = tickets(runtime)
    assert (ticket.source, ticket.external_id, ticket.subject) == ("zendesk", "5158", "Where is my claim?")
    assert ticket.text == "Reach me at [EMAIL] or [PHONE]."
    assert ticket.requester == "8447388090494"  # Zendesk's numeric user id: no PII in it for the detector
    assert queues.suggest.job_ids == ["suggest-1"]
    job = queues.fetch("suggest-1")
    assert (job.func_name, job.args) == (SUGGEST_JOB, [1])  # JSON-serialized: a list, not a tuple


def test_zendesk_trigger_body_and_generic_body_are_accepted(parts):
    runtime, queues, client = parts
    trigger = {"ticket_id": "77", "subject": "Add my son to the policy", "description": "He turns 16 next week.",
               "url": "https://acme.zendesk.com/agent/tickets/77"}
    assert post_zendesk(client, trigger).status_code == 202
    assert post_generic(client, {"id": 77, "text": "Billing charged me twice"}).status_code == 202
    assert [(t.source, t.external_id, t.url) for t in tickets(runtime)] == [
        ("zendesk", "77", None), ("generic", "77", None)]  # the sent URL is not stored (bot.helpdesk.ticket_link)
    assert queues.suggest.job_ids == ["suggest-1", "suggest-2"]


def test_other_zendesk_events_are_acknowledged_and_ignored(parts):
    runtime, queues, client = parts
    response = post_zendesk(client, {**EVENT, "type": "zen:event-type:ticket.priority_changed"})
    assert (response.status_code, response.json()) == (200, {"status": "ignored"})
    assert nothing_stored(runtime, queues)


@pytest.mark.parametrize("case", ["wrong secret", "no signature", "tampered", "generic wrong secret"])
def test_bad_signature_is_401_and_nothing_is_stored(parts, case):
    runtime, queues, client = parts
    if case == "wrong secret":
        response = post_zendesk(client, EVENT, secret="guess")
    elif case == "no signature":
        response = client.post("/webhooks/zendesk", json=EVENT)
    elif case == "tampered":
        body = json.dumps(EVENT).encode()
        ts = zendesk_now()
        response = client.post("/webhooks/zendesk", content=body.replace(b"5158", b"5159"), headers={
            ZENDESK_SIGNATURE: zendesk_sign(SECRET, ts, body), ZENDESK_TIMESTAMP: ts})
    else:
        response = post_generic(client, {"id": 1, "text": "hello"}, secret="guess")
    assert response.status_code == 401, response.text
    assert "error" in response.json()
    assert nothing_stored(runtime, queues)


def test_stale_timestamp_is_401(parts):
    runtime, queues, client = parts
    old = (datetime.now(timezone.utc) - timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = post_zendesk(client, EVENT, ts=old)
    assert response.status_code == 401 and "tolerance" in response.json()["error"]
    response = post_generic(client, {"id": 1, "text": "hello"}, ts=str(int(time.time()) - 600))
    assert response.status_code == 401
    assert nothing_stored(runtime, queues)


def test_oversized_body_is_413_by_header_and_by_actual_size(parts):
    runtime, queues, client = parts
    big = {**EVENT, "detail": {**EVENT["detail"], "description": "x" * 5000}}
    assert post_zendesk(client, big).status_code == 413
    # a chunked body declares no length: the bytes themselves are counted
    chunks = iter([b'{"ticket_id": "1", "description": "'] + [b"x" * 1000] * 5 + [b'"}'])
    response = client.post("/webhooks/zendesk", content=chunks, headers={
        ZENDESK_SIGNATURE: "irrelevant", ZENDESK_TIMESTAMP: zendesk_now()})
    assert response.status_code == 413
    assert nothing_stored(runtime, queues)


@pytest.mark.parametrize("body, status", [
    (b"this is not json", 400),
    (b'["a", "list"]', 422),
    (b'{"ticket_id": "1"}', 422),
    (b'{"description": "no id"}', 422),
    (b'{"type": "zen:event-type:ticket.created", "detail": {"id": "9", "description": 42}}', 422),
])
def test_malformed_bodies_are_400_or_422(parts, body, status):
    runtime, queues, client = parts
    response = post_zendesk(client, body=body)
    assert response.status_code == status, response.text
    assert nothing_stored(runtime, queues)


def test_generic_missing_text_is_422(parts):
    runtime, queues, client = parts
    assert post_generic(client, {"id": 5, "subject": ""}).status_code == 422
    assert nothing_stored(runtime, queues)


def test_unset_secret_refuses_with_503(parts, monkeypatch):
    _, queues, _ = parts
    monkeypatch.delenv("TUESDAY_ZENDESK_WEBHOOK_SECRET")
    runtime = Runtime(Settings())
    client = TestClient(create_app(runtime, queues))
    assert post_zendesk(client, EVENT).status_code == 503
    assert nothing_stored(runtime, queues)


def test_duplicate_delivery_makes_one_ticket_and_one_job(parts, monkeypatch, store_url):
    _, queues, _ = parts
    monkeypatch.setenv("TUESDAY_DATABASE_URL", store_url)
    runtime = Runtime(Settings())
    client = TestClient(create_app(runtime, queues))
    first = post_zendesk(client, EVENT)
    again = post_zendesk(client, EVENT)
    # the same ticket through a trigger-connected webhook is the same ticket
    trigger = post_zendesk(client, {"ticket_id": 5158, "subject": "Where is my claim?", "description": "Any news?"})
    assert first.status_code == 202
    assert [again.status_code, trigger.status_code] == [200, 200]
    assert again.json() == {"ticket_id": first.json()["ticket_id"], "status": "duplicate"}
    assert len(tickets(runtime)) == 1
    assert queues.suggest.job_ids == ["suggest-1"]


def test_racing_deliveries_make_one_ticket_and_one_job(parts, monkeypatch, store_url):
    _, queues, _ = parts
    monkeypatch.setenv("TUESDAY_DATABASE_URL", store_url)
    runtime = Runtime(Settings())
    runtime.sessions  # create the tables before the race
    incoming = IncomingTicket("zendesk", "5158", "Any news on my claim?")
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: accept_ticket(runtime, queues, incoming), range(6)))
    # A redelivery that lands between the first one's commit and its enqueue may queue the job
    # itself (then both answer 202); either way there is one ticket and one job.
    assert {r.status_code for r in responses} <= {200, 202} and 202 in {r.status_code for r in responses}
    [ticket] = tickets(runtime)
    # the one ticket's job (on PostgreSQL a losing insert spends a sequence value: the id need not be 1)
    assert queues.suggest.job_ids == [f"suggest-{ticket.id}"]


def test_a_job_lost_with_redis_is_queued_again_on_redelivery(parts):
    runtime, queues, client = parts
    assert post_zendesk(client, EVENT).status_code == 202
    queues.connection.flushdb()  # Redis lost its data after the webhook was accepted
    response = post_zendesk(client, EVENT)
    assert (response.status_code, response.json()["status"]) == (202, "requeued")
    assert queues.suggest.job_ids == ["suggest-1"]
    assert len(tickets(runtime)) == 1


def test_redis_down_answers_503_and_the_retry_queues_the_job(parts):
    runtime, queues, client = parts
    response = post_zendesk(TestClient(create_app(runtime, unreachable_queues())), EVENT)
    assert response.status_code == 503
    assert queues.suggest.count == 0
    response = post_zendesk(client, EVENT)  # the helpdesk retries once Redis is back
    assert response.status_code == 202
    assert queues.suggest.job_ids == ["suggest-1"] and len(tickets(runtime)) == 1


def test_readiness_needs_the_store_not_redis_and_liveness_needs_neither(parts):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    runtime, _, client = parts
    assert client.get("/readyz").json() == {"ok": True, "sql": "ok"} and client.get("/livez").status_code == 200
    no_redis = TestClient(create_app(runtime, unreachable_queues()))
    assert no_redis.get("/readyz").status_code == 200  # Slack intake stores without Redis: stay in the Service
    assert no_redis.get("/healthz").status_code == 503  # ... while the humans' page says Redis is down
    down = create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/test", connect_args={"connect_timeout": 1})
    runtime.__dict__["sessions"] = sessionmaker(down, expire_on_commit=False)
    no_sql = TestClient(create_app(runtime, unreachable_queues()))
    assert no_sql.get("/readyz").status_code == 503 and no_sql.get("/readyz").json()["sql"].startswith("error")
    assert no_sql.get("/livez").status_code == 200


def test_healthz_checks_sql_and_redis(parts):
    runtime, _, client = parts
    assert client.get("/healthz").json() == {"ok": True, "sql": "ok", "redis": "ok"}
    down = TestClient(create_app(runtime, unreachable_queues()))
    response = down.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"].startswith("error") and response.json()["sql"] == "ok"


def test_embedded_redis_when_no_url_is_set(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", redis_url="")
    queues = Queues.from_settings(settings)
    try:
        assert queues.ping()
        job, enqueued = queues.enqueue_suggest(3)
        assert enqueued and job.id == "suggest-3"
        # another process opening the same data dir joins the same embedded server
        other = Queues.from_settings(settings)
        assert other.suggest.job_ids == ["suggest-3"]
        assert other.enqueue_suggest(3)[1] is False
        other.close()
        assert queues.ping()  # the first client still has its server
    finally:
        queues.connection.flushdb()
        queues.close()
    assert not queues.embedded.pid  # and the last one to close stopped it


def test_a_store_that_is_down_is_503_so_the_sender_retries(monkeypatch):
    """A database restart is not bad input: 503 (retry), never a 500 with a traceback."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    monkeypatch.setenv("TUESDAY_GENERIC_WEBHOOK_SECRET", GENERIC_SECRET)
    runtime = Runtime(Settings())
    down = create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/test", connect_args={"connect_timeout": 1})
    runtime.__dict__["sessions"] = sessionmaker(down, expire_on_commit=False)  # a database that went away
    response = post_generic(TestClient(create_app(runtime, unreachable_queues())), {"id": "1", "text": "hello"})
    assert response.status_code == 503 and response.json() == {"error": "store unavailable, retry later"}
