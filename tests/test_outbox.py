"""The helpdesk write-back outbox on real Redis and SQLite/PostgreSQL, with Zendesk faked at HTTP: down, 429, 500,
slow, refusing; Redis down at the click and losing jobs; a worker dying mid-attempt."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import select

from bot.helpdesk import delivery
from bot.helpdesk.adapters import parse_retry_after
from bot.helpdesk.delivery import (
    DELIVER_JOB,
    deliver_job,
    delivery_job_id,
    enqueue_delivery,
    sweep_outbox,
    write_back_job,
)
from bot.helpdesk.outbox import RetryPolicy, claim, failed_write_backs, outbox_counts, recording_outbox, retry_failed
from bot.queues import WORKER_QUEUES, Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.blocks import ACCEPT
from bot.store.base import as_utc
from bot.store.feedback import Feedback, record_feedback
from bot.store.outbox import WriteBack
from bot.web.app import create_app
from bot.worker.jobs import worker as tuesday_worker
from tests.clicks import (  # noqa: F401
    CHANNEL,
    SIGNING_SECRET,
    ZENDESK_EMAIL,
    ZENDESK_TOKEN,
    click,
    fake_slack,
    fake_zendesk,
    post_slack,
    posted,
    wait_for,
)

REDIS_DB = 4  # this module's own database on the local Redis, flushed around every test
DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1: Redis is down
FAST = RetryPolicy(backoff_s=(1,), max_attempts=3)


@pytest.fixture
def parts(monkeypatch, store_url, redis_url, fake_slack, fake_zendesk):  # noqa: F811
    """(runtime, queues) as `tuesday serve` and a worker wire them, with one-second retries."""
    for key, value in {"REDIS_URL": redis_url, "DATABASE_URL": store_url, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                       "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": fake_slack.url,
                       "TRIAGE_CHANNEL": CHANNEL, "ZENDESK_URL": fake_zendesk.url, "ZENDESK_EMAIL": ZENDESK_EMAIL,
                       "ZENDESK_API_TOKEN": ZENDESK_TOKEN}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    monkeypatch.setattr(delivery, "POLICY", FAST)
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    yield runtime, queues
    queues.close()


def work(queues: Queues, *names: str, scheduler: bool = False) -> None:
    """Run a worker on the queues (default: writeback) until they are empty, as `tuesday worker` does."""
    tuesday_worker(queues, names or ("writeback",)).work(burst=True, with_scheduler=scheduler)


def outbox(runtime) -> list[WriteBack]:
    with runtime.sessions() as session:
        return list(session.scalars(select(WriteBack).order_by(WriteBack.id)))


def clicked(runtime, queues: Queues, slack, external_id: str = "5158") -> WriteBack:
    """Accept a Zendesk ticket's suggestion in Slack; returns the outbox row once the listener is done."""
    sid = posted(runtime, source="zendesk", external_id=external_id)
    before = len(slack.calls_to("chat.update"))
    assert post_slack(TestClient(create_app(runtime, queues)), click(sid, ACCEPT)).status_code == 200
    wait_for(lambda: len(slack.calls_to("chat.update")) > before)  # the listener's last step
    return outbox(runtime)[-1]


def paths(zendesk) -> list[str]:
    return [r["path"] for r in zendesk.requests]


# -- Redis down, Redis losing jobs, a worker dying --------------------------------------------------------

def test_a_click_while_redis_is_down_is_stored_and_the_sweeper_delivers_it_once(parts, fake_slack, fake_zendesk):
    runtime, queues = parts
    down = Queues(Redis.from_url(DOWN))
    try:
        row = clicked(runtime, down, fake_slack)
    finally:
        down.close()
    [update] = [c["body"] for c in fake_slack.calls_to("chat.update")]
    assert "Accepted as claim_status" in update["text"]  # Slack was answered as usual
    with runtime.sessions() as session:
        [feedback] = session.scalars(select(Feedback)).all()
    assert (row.feedback_id, row.helpdesk, row.label, row.status, row.attempts) == (
        feedback.id, "zendesk", "claim_status", "pending", 0)
    assert row.note.startswith("jane accepted in Slack. Tuesday suggested claim_status (82%")
    assert fake_zendesk.requests == [] and queues["writeback"].count == 0

    assert sweep_outbox(runtime, queues) == 1  # Redis is back: the row is found and queued
    assert sweep_outbox(runtime, queues) == 0  # its job is queued: not a second one
    work(queues)
    [row] = outbox(runtime)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None) and row.delivered_at is not None
    assert paths(fake_zendesk) == ["/api/v2/tickets/5158/tags.json", "/api/v2/tickets/5158.json"]
    assert sweep_outbox(runtime, queues) == 0
    work(queues)
    assert len(fake_zendesk.requests) == 2 and len(fake_zendesk.comments["5158"]) == 1


def test_a_500_is_retried_and_a_retry_redis_lost_is_queued_again_by_the_sweeper(parts, fake_slack, fake_zendesk):
    runtime, queues = parts
    fake_zendesk.fail_next(500)
    row = clicked(runtime, queues, fake_slack)
    work(queues)
    [row] = outbox(runtime)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error.startswith("attempt 1: Zendesk answered 500 to PUT /api/v2/tickets/5158/tags.json")
    assert queues.fetch(delivery_job_id(row.id, 2)).get_status() == "scheduled"  # one backoff step later

    queues.connection.flushdb()  # Redis loses everything, the scheduled retry with it
    due = as_utc(row.next_attempt_at)
    assert sweep_outbox(runtime, queues, now=due - timedelta(seconds=0.5)) == 0  # not due yet
    assert sweep_outbox(runtime, queues, now=due) == 1
    work(queues)
    [row] = outbox(runtime)
    assert (row.status, row.attempts) == ("delivered", 2)
    assert paths(fake_zendesk)[1:] == ["/api/v2/tickets/5158/tags.json", "/api/v2/tickets/5158.json"]


def test_an_attempt_whose_worker_died_is_made_again_once_its_lease_ran_out(parts, fake_slack, fake_zendesk):
    runtime, queues = parts
    down = Queues(Redis.from_url(DOWN))
    try:
        row = clicked(runtime, down, fake_slack)
    finally:
        down.close()
    now = datetime.now(timezone.utc)
    _, taken = claim(runtime.sessions, row.id, 1, FAST, now)  # a worker takes attempt 1 ...
    assert taken  # ... and is killed before it records anything
    assert sweep_outbox(runtime, queues, now=now + timedelta(seconds=FAST.lease_s - 1)) == 0  # still in hand
    assert sweep_outbox(runtime, queues, now=now + timedelta(seconds=FAST.lease_s + 1)) == 1
    work(queues)
    [row] = outbox(runtime)
    assert (row.status, row.attempts) == ("delivered", 2) and len(fake_zendesk.requests) == 2


# -- the helpdesk: rate limits, errors, slowness ---------------------------------------------------------

def test_a_429_postpones_the_next_attempt_by_its_retry_after_and_it_is_delivered_after(parts, fake_slack,
                                                                                       fake_zendesk):
    runtime, queues = parts
    fake_zendesk.fail_next(429, {"Retry-After": "2"})
    row = clicked(runtime, queues, fake_slack)
    job = queues.fetch(delivery_job_id(row.id, 1))
    assert (job.func_name, job.args, job.origin) == (DELIVER_JOB, [row.id, 1], "writeback")
    work(queues)
    [limited] = fake_zendesk.requests
    [row] = outbox(runtime)
    assert (row.status, row.attempts) == ("pending", 1) and "429" in row.last_error
    assert as_utc(row.next_attempt_at).timestamp() >= limited["at"] + 2  # not the 1 s backoff: Retry-After

    retry = queues.fetch(delivery_job_id(row.id, 2))
    assert retry.get_status() == "scheduled"
    assert sweep_outbox(runtime, queues) == 0  # not due, and queued already
    work(queues, scheduler=True)
    assert len(fake_zendesk.requests) == 1  # too early: nothing was tried
    time.sleep(max(0.0, as_utc(row.next_attempt_at).timestamp() + 1 - time.time()))
    work(queues, scheduler=True)
    [row] = outbox(runtime)
    assert (row.status, row.attempts) == ("delivered", 2)
    assert fake_zendesk.requests[1]["at"] - limited["at"] >= 2.0


def test_a_helpdesk_that_keeps_failing_ends_failed_with_its_error_and_can_be_retried(parts, fake_slack,
                                                                                     fake_zendesk, monkeypatch):
    runtime, queues = parts
    monkeypatch.setattr(delivery, "POLICY", RetryPolicy(backoff_s=(0,), max_attempts=3))
    fake_zendesk.failing = (502, {})
    clicked(runtime, queues, fake_slack)
    work(queues)  # with no backoff each failed attempt queues the next at once: all three run here
    [row] = outbox(runtime)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error.startswith("attempt 3: Zendesk answered 502 to PUT /api/v2/tickets/5158/tags.json")
    assert len(fake_zendesk.requests) == 3
    assert outbox_counts(runtime.sessions) == {"pending": 0, "delivered": 0, "failed": 1}
    assert [(r.id, r.last_error) for r in failed_write_backs(runtime.sessions)] == [(row.id, row.last_error)]
    assert sweep_outbox(runtime, queues) == 0  # failed is final until someone retries it

    fake_zendesk.failing = None  # Zendesk is fixed
    assert retry_failed(runtime.sessions) == 1
    assert sweep_outbox(runtime, queues) == 1
    work(queues)
    assert outbox_counts(runtime.sessions) == {"pending": 0, "delivered": 1, "failed": 0}


def test_a_refused_write_back_fails_at_once(parts, fake_slack, fake_zendesk):
    runtime, queues = parts
    fake_zendesk.fail_next(404)  # the ticket was deleted in Zendesk: no retry can help
    clicked(runtime, queues, fake_slack)
    work(queues, scheduler=True)
    [row] = outbox(runtime)
    assert (row.status, row.attempts) == ("failed", 1) and "404" in row.last_error
    assert queues.fetch(delivery_job_id(row.id, 2)) is None and len(fake_zendesk.requests) == 1


def test_a_slow_helpdesk_does_not_hold_up_suggestions(parts, fake_slack, fake_zendesk, stand_in_jobs):
    runtime, queues = parts
    assert WORKER_QUEUES["writeback"] == ("writeback",) and WORKER_QUEUES["suggest"][-1] == "writeback"
    fake_zendesk.delay = 0.5
    row = clicked(runtime, queues, fake_slack)
    assert (queues.suggest.count, queues["writeback"].count) == (0, 1)
    # A ticket arrives after the click; a CPU worker takes it before the waiting write-back.
    suggestion = queues.suggest.enqueue_call("time.sleep", args=[0], job_id="stand-in-suggestion")
    work(queues, *WORKER_QUEUES["suggest"])
    suggestion.refresh()
    write_back = queues.fetch(delivery_job_id(row.id, 1))
    assert suggestion.get_status() == write_back.get_status() == "finished"
    assert suggestion.ended_at <= write_back.started_at
    assert outbox(runtime)[0].status == "delivered"


# -- at most once ---------------------------------------------------------------------------------------

def test_a_delivered_write_back_is_not_delivered_again_when_its_job_runs_twice(parts, fake_slack, fake_zendesk):
    runtime, queues = parts
    row = clicked(runtime, queues, fake_slack)
    work(queues)
    assert len(fake_zendesk.requests) == 2
    # Redis hands the same job out again, and a stray job for a later attempt turns up too.
    queues.clear_ended(delivery_job_id(row.id, 1))
    assert enqueue_delivery(queues, row.id, 1) and enqueue_delivery(queues, row.id, 2)
    work(queues)
    again = [queues.fetch(delivery_job_id(row.id, n)).return_value() for n in (1, 2)]
    assert [(r["attempted"], r["status"]) for r in again] == [(False, "delivered")] * 2
    assert len(fake_zendesk.requests) == 2 and outbox(runtime)[0].attempts == 1


def test_two_jobs_for_one_attempt_at_the_same_moment_write_back_once(parts, fake_slack, fake_zendesk):
    runtime, queues = parts
    down = Queues(Redis.from_url(DOWN))
    try:
        row = clicked(runtime, down, fake_slack)
    finally:
        down.close()
    fake_zendesk.delay = 0.3  # the first is still writing when the second claims
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: deliver_job(row.id, 1), range(2)))
    assert sorted(r["attempted"] for r in results) == [False, True]
    assert len(fake_zendesk.requests) == 2 and outbox(runtime)[0].status == "delivered"


def test_a_job_queued_by_the_previous_release_delivers_through_the_outbox_once(parts, fake_zendesk, task):
    runtime, queues = parts
    sid = posted(runtime, source="zendesk", external_id="31")
    # Recorded as the release before the outbox did: no outbox row, a write_back_job on "suggest".
    row, _ = record_feedback(runtime.sessions, suggestion_id=sid, action="accept", label=None, user_id="U1",
                             labels=task.labels)
    assert outbox(runtime) == []
    queues.suggest.enqueue_call("bot.helpdesk.write_back_job", args=[row.id], job_id=f"writeback-{row.id}")
    work(queues, "suggest")
    [written] = outbox(runtime)
    assert (written.feedback_id, written.status) == (row.id, "delivered") and len(fake_zendesk.requests) == 2
    assert write_back_job(row.id)["attempted"] is False and len(fake_zendesk.requests) == 2


# -- the click's transaction ------------------------------------------------------------------------------

def test_the_outbox_row_is_part_of_the_clicks_transaction(parts, task):
    runtime, _ = parts
    sid = posted(runtime, source="zendesk", external_id="44")

    def broken(source):
        raise RuntimeError("the outbox row could not be made")

    with pytest.raises(RuntimeError):
        record_feedback(recording_outbox(runtime.sessions, broken), suggestion_id=sid, action="accept", label=None,
                        user_id="U1", labels=task.labels)
    with runtime.sessions() as session:
        assert session.scalars(select(Feedback)).all() == []  # no click without its write-back

    row, _ = record_feedback(recording_outbox(runtime.sessions, lambda source: source == "zendesk"),
                             suggestion_id=sid, action="accept", label=None, user_id="U1", labels=task.labels)
    [written] = outbox(runtime)
    assert (written.feedback_id, written.ticket_id, written.status) == (row.id, row.ticket_id, "pending")


def test_retry_after_is_read_as_seconds_or_an_http_date():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after("Tue, 01 Dec 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0.0  # already passed
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None
    with pytest.raises(ValueError):
        RetryPolicy(backoff_s=())
    assert [FAST.delay(n) for n in (1, 2, 5)] == [1.0, 1.0, 1.0]
    assert [RetryPolicy().delay(n) for n in (1, 2, 7, 30)] == [10.0, 30.0, 3600.0, 3600.0]
