"""Work found again from the SQL store: waiting tickets, lost or failed jobs, dead and cancelled trainings."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from rq.job import JobStatus

from bot.lifecycle.jobs import RunCancelled, cancel_key, conclude_job_id, train_job_id
from bot.lifecycle.retrain import check_training, conclude_run
from bot.lifecycle.runs import request_retrain
from bot.queues import sweep_tickets
from bot.runtime import slack_client
from bot.store.runs import start_run
from bot.store.tickets import add_ticket, waiting_count
from bot.web.app import create_app
from bot.worker.jobs import worker as tuesday_worker
from bot.worker.train_job import Heartbeat
from bot.worker.upkeep import Upkeep
from inference.registry import RESULT
from tests.slash import ADMIN, MANAGER, Parts, env, fake_slack, fake_version  # noqa: F401
from tests.test_web import GENERIC_SECRET, post_generic

REDIS_DB = 7


@pytest.fixture
def parts(env, fake_slack, stand_in_jobs):
    env.setenv("TUESDAY_GENERIC_WEBHOOK_SECRET", GENERIC_SECRET)
    p = Parts(fake_slack)
    yield p
    p.close()


def work(parts, *queues) -> None:
    tuesday_worker(parts.queues, queues).work(burst=True)


def old_ticket(parts, n: int, age: timedelta = timedelta(minutes=5)) -> int:
    from sqlalchemy import update

    from bot.store.tickets import Ticket

    ticket, _ = add_ticket(parts.runtime.sessions, source="generic", external_id=f"t{n}", text=f"my claim {n}?")
    with parts.runtime.sessions() as session:
        session.execute(update(Ticket).where(Ticket.id == ticket.id)
                        .values(created_at=datetime.now(timezone.utc) - age))
        session.commit()
    return ticket.id


def test_a_ticket_before_any_model_waits_visibly_and_a_redelivery_queues_it_again(parts):
    client = TestClient(create_app(parts.runtime, parts.queues))
    body = {"id": "early-1", "subject": "Claim", "text": "Any news on my claim?"}
    assert post_generic(client, body).status_code == 202
    work(parts, "suggest")
    job = parts.queues.fetch("suggest-1")
    assert job.get_status() == "finished" and job.return_value()["status"] == "waiting"  # not a failure
    assert waiting_count(parts.runtime.sessions, posts=True) == 1
    assert "tickets waiting for a suggestion: 1 (no production model yet" in parts.slash(ADMIN, "status")[1]

    # the helpdesk sends it again: the ended job's id does not answer "duplicate" for ever
    again = post_generic(client, body)
    assert again.status_code == 202 and again.json()["status"] == "requeued"

    # a job that failed for good (Slack down past its retries) does not block it either
    parts.queues.fetch("suggest-1").delete()
    failing = parts.queues.suggest.enqueue_call("builtins.int", args=("not a number",), job_id="suggest-1")
    work(parts, "suggest")
    assert failing.get_status(refresh=True) == "failed"
    assert post_generic(client, body).json()["status"] == "requeued"


def test_the_sweeper_queues_tickets_redis_lost_once_a_model_exists(parts):
    lost, young = old_ticket(parts, 1), add_ticket(parts.runtime.sessions, source="generic", external_id="t2",
                                                    text="new")[0].id
    assert sweep_tickets(parts.runtime, parts.queues) == 0  # no model yet: they wait
    fake_version(parts.runtime.registry, 0.5)
    parts.runtime.production.switch("v1", by="test", reason="test")
    assert sweep_tickets(parts.runtime, parts.queues) == 1
    assert parts.queues.suggest.job_ids == [f"suggest-{lost}"]  # the young one is still its first job's
    assert sweep_tickets(parts.runtime, parts.queues) == 0  # a live job is not queued twice
    parts.queues.connection.flushdb()  # Redis lost everything
    assert sweep_tickets(parts.runtime, parts.queues, grace=None) == 2
    assert sorted(parts.queues.suggest.job_ids) == sorted([f"suggest-{lost}", f"suggest-{young}"])


def test_the_first_promotion_queues_the_waiting_tickets(parts):
    waiting = old_ticket(parts, 1, age=timedelta(seconds=1))
    run, _ = request_retrain(parts.runtime, parts.queues, MANAGER, "command")
    start_run(parts.runtime.sessions, run.id)
    fake_version(parts.runtime.registry, 0.6, run=run.id)
    summary = {"version": "v1", "production": None, "production_metrics": None, "run": run.id,
               "metrics": {"n": 40, "accuracy": 0.7, "macro_f1": 0.6, "handoff_recall": 0.5}}
    # the train job's result, as the GPU node stores it beside the version and leaves it in Redis
    parts.runtime.registry.add_paper("v1", RESULT, json.dumps(summary).encode("utf-8"))
    parts.queues.train.enqueue_call("json.loads", args=(json.dumps(summary),), job_id=train_job_id(run.id))
    work(parts, "train")
    done = conclude_run(parts.runtime, parts.queues, None, run.id)
    assert done["status"] == "promoted" and parts.runtime.production.name() == "v1"
    assert f"suggest-{waiting}" in parts.queues.suggest.job_ids


def started_train_job(parts, beat_at: datetime):
    run, _ = request_retrain(parts.runtime, parts.queues, MANAGER, "command")
    start_run(parts.runtime.sessions, run.id)
    job = parts.queues.train.enqueue_call("time.sleep", args=(0,), job_id=train_job_id(run.id))
    parts.queues.control.enqueue_call("time.sleep", args=(0,), job_id=conclude_job_id(run.id),
                                      depends_on=job)
    job.set_status(JobStatus.STARTED)
    job.heartbeat(beat_at, ttl=60)
    return run, job


def test_a_training_whose_heartbeat_stopped_fails_within_minutes_and_frees_retrains(parts, fake_slack):
    now = datetime.now(timezone.utc)
    run, job = started_train_job(parts, now - timedelta(seconds=30))
    assert check_training(parts.runtime, parts.queues, None, now=now) is None  # beating: a long training

    job.heartbeat(now - timedelta(minutes=4), ttl=60)
    failed = check_training(parts.runtime, parts.queues, slack_client(parts.settings), now=now)
    assert failed["status"] == "failed" and "stopped answering: no heartbeat since" in failed["error"]
    assert parts.queues.fetch(conclude_job_id(run.id)).get_status() == "canceled"
    [post] = fake_slack.calls_to("chat.postMessage")
    assert "*failed*: the training host stopped answering" in post["body"]["text"]
    assert "queued as run 2" in parts.slash(MANAGER, "retrain")[1]  # not blocked for hours


def test_the_upkeep_tick_runs_every_chore(parts):
    run, job = started_train_job(parts, datetime.now(timezone.utc) - timedelta(minutes=10))
    done = Upkeep(parts.runtime, parts.queues).tick()
    assert done["training"]["id"] == run.id and done["tickets"] == 0


def test_a_chore_that_raises_does_not_stop_the_others(parts, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug in one chore")

    monkeypatch.setattr("bot.worker.upkeep.sweep_tickets", broken)
    old_ticket(parts, 1)
    done = Upkeep(parts.runtime, parts.queues).tick()
    assert done["tickets"] is None and "writebacks" in done and "monitor" in done  # the rest still ran


def test_an_admin_cancels_a_retrain_and_the_training_stops_at_its_next_heartbeat(parts, fake_slack):
    assert "queued as run 1" in parts.slash(MANAGER, "retrain")[1]
    assert "only Tuesday's admins" in parts.slash(MANAGER, "retrain cancel")[1]
    assert "Retrain run 1 cancelled; production is unchanged (none)" in parts.slash(ADMIN, "retrain cancel")[1]
    [run] = parts.runs()
    assert (run.status, run.active, run.error) == ("cancelled", None, f"cancelled by {ADMIN}")
    assert parts.queues.fetch("retrain-1").get_status() == "canceled"
    assert "*cancelled*: cancelled by" in fake_slack.calls_to("chat.postMessage")[0]["body"]["text"]
    assert "no retrain is queued or running" in parts.slash(ADMIN, "retrain cancel")[1]

    # a started training is told through Redis; its heartbeat thread stops it
    class Job:
        id, connection, beats = "train-9", parts.queues.connection, []

        def heartbeat(self, when, ttl):
            self.beats.append(when)

    job = Job()
    parts.queues.connection.set(cancel_key(job.id), "1")
    started = time.monotonic()
    with pytest.raises(RunCancelled):
        with Heartbeat(job, every_s=0.05):
            while time.monotonic() - started < 10:
                time.sleep(0.01)
    assert time.monotonic() - started < 5 and job.beats


def test_the_report_says_how_the_labels_changed():
    from bot.lifecycle.reports import report_text

    run = {"id": 4, "requested_by": MANAGER, "trigger": "command", "status": "kept", "candidate_version": "v5",
           "production_before": "v4", "why": "macro-F1 0.600 does not beat production's 0.700",
           "metrics": {"candidate": {"n": 40, "macro_f1": 0.6}, "production": {"n": 40, "macro_f1": 0.7},
                       "label_changes": {"added": ["travel_claim"], "removed": ["agent_escalation"]}}}
    text = report_text(run)
    assert "The task's labels changed since v4: added travel_claim; removed agent_escalation." in text
    assert "v4 was scored with its own labels" in text


def test_a_retrain_whose_jobs_redis_lost_is_found_again_from_its_row(parts, fake_slack):
    from sqlalchemy import update

    from bot.lifecycle.retrain import recover_run
    from bot.store.runs import RetrainRun

    run, _ = request_retrain(parts.runtime, parts.queues, MANAGER, "command")
    assert recover_run(parts.runtime, parts.queues, None) is None  # its job is there
    parts.queues.connection.flushdb()
    with parts.runtime.sessions() as session:  # past the moment between the row and the push
        session.execute(update(RetrainRun).values(created_at=datetime.now(timezone.utc) - timedelta(minutes=5)))
        session.commit()
    assert recover_run(parts.runtime, parts.queues, None) == {"run": run.id, "requeued": "retrain-1"}
    assert parts.queues.control.job_ids == ["retrain-1"]

    # running, and the train job's result is still there but its gate job is gone: the gate is queued again
    start_run(parts.runtime.sessions, run.id)
    parts.queues.connection.flushdb()
    parts.queues.train.enqueue_call("json.loads", args=("{}",), job_id=train_job_id(run.id))
    work(parts, "train")
    assert recover_run(parts.runtime, parts.queues, None)["requeued"] == conclude_job_id(run.id)

    # running, and nothing of it is left in Redis: closed as failed, said in the channel
    parts.queues.connection.flushdb()
    failed = recover_run(parts.runtime, parts.queues, slack_client(parts.settings))
    assert failed["status"] == "failed" and "lost from Redis" in failed["error"]
    assert "*failed*: its jobs were lost from Redis" in fake_slack.calls_to("chat.postMessage")[-1]["body"]["text"]
