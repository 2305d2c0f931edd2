"""What starts and holds a retrain: label-count and schedule triggers, control state on both stores, the CLI side, the one gate."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

from click.testing import CliRunner
from slack_sdk import WebClient
from sqlalchemy import update

from bot.cli.main import main
from bot.lifecycle.runs import labels_since_last_training, maybe_auto_retrain, maybe_scheduled_retrain, request_retrain
from bot.lifecycle.status import HELP
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.app import create_slack_app
from bot.store.runs import RetrainRun, active_run, finish_run, is_paused, pause_state, record_snapshot, set_paused
from bot.worker.upkeep import Upkeep
from tests.demo_names import DEMO_TASK
from tests.slash import (  # noqa: F401  (fixtures)
    ADMIN,
    AGENT,
    CHANNEL,
    GROUP,
    LEAD,
    MANAGER,
    REDIS_DB,
    SIGNING_SECRET,
    GroupSlack,
    Parts,
    add_examples,
    env,
    fake_slack,
    fake_version,
    parts,
)

# -- automatic triggers ---------------------------------------------------------------------------

def test_auto_retrain_after_n_new_labels(parts, monkeypatch):
    monkeypatch.setenv("TUESDAY_RETRAIN_AFTER_LABELS", "5")
    runtime = Runtime(Settings())
    add_examples(runtime, 4)
    assert maybe_auto_retrain(runtime, parts.queues) is None
    add_examples(runtime, 1, start=4)
    run, created = maybe_auto_retrain(runtime, parts.queues)
    assert created and (run.trigger, run.requested_by) == ("threshold", "tuesday")
    assert maybe_auto_retrain(runtime, parts.queues)[1] is False  # collapses onto the queued run
    assert parts.queues.control.job_ids == [run.job_id]

    # the run freezes its data; labels after that count toward the next one
    record_snapshot(runtime.sessions, run.id, "snap.jsonl", datetime.now(timezone.utc))
    finish_run(runtime.sessions, run.id, "kept", why="test")
    assert labels_since_last_training(runtime) == 0
    assert maybe_auto_retrain(runtime, parts.queues) is None
    add_examples(runtime, 5, start=10)
    assert labels_since_last_training(runtime) == 5
    set_paused(runtime.sessions, True, by="test")
    assert maybe_auto_retrain(runtime, parts.queues) is None  # paused: auto-retrain is off

    monkeypatch.setenv("TUESDAY_RETRAIN_AFTER_LABELS", "0")
    set_paused(runtime.sessions, False, by="test")
    assert maybe_auto_retrain(Runtime(Settings()), parts.queues) is None  # 0 = off


def test_versions_built_outside_runs_reset_the_label_count(parts):
    add_examples(parts.runtime, 3, at=datetime.now(timezone.utc) - timedelta(minutes=1))
    assert labels_since_last_training(parts.runtime) == 3
    fake_version(parts.runtime.registry, 0.5)  # what `tuesday train` leaves behind
    assert labels_since_last_training(parts.runtime) == 0


def test_schedule_requests_a_retrain_when_the_last_one_is_old(parts, monkeypatch):
    monkeypatch.setenv("TUESDAY_RETRAIN_SCHEDULE_HOURS", "24")
    runtime = Runtime(Settings())
    sessions = runtime.sessions
    run, _ = request_retrain(runtime, parts.queues, "U1", "command")
    record_snapshot(sessions, run.id, "s", datetime.now(timezone.utc))
    finish_run(sessions, run.id, "promoted", why="test")
    now = datetime.now(timezone.utc)
    assert maybe_scheduled_retrain(runtime, parts.queues, now=now + timedelta(hours=25)) is None  # no new labels
    add_examples(runtime, 2)
    assert maybe_scheduled_retrain(runtime, parts.queues, now=now + timedelta(hours=23)) is None  # too soon
    scheduled, created = maybe_scheduled_retrain(runtime, parts.queues, now=now + timedelta(hours=25))
    assert created and scheduled.trigger == "schedule"
    assert maybe_scheduled_retrain(runtime, parts.queues, now=now + timedelta(hours=50)) is None  # one active

    # the worker's thread: with the last run finished long ago, a tick requests one
    finish_run(sessions, scheduled.id, "failed", error="test")
    with sessions() as session:
        session.execute(update(RetrainRun).values(finished_at=now - timedelta(days=2)))
        session.commit()
    scheduler = Upkeep(runtime, parts.queues, interval_s=0.05).start()
    deadline = time.monotonic() + 10
    while active_run(sessions, DEMO_TASK) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert active_run(sessions, DEMO_TASK).trigger == "schedule"
    assert parts.queues.control.job_ids[-1] == "retrain-3"  # (the finished runs' jobs were never worked)


# -- control state on SQLite and PostgreSQL -------------------------------------------------------

def test_control_state_on_both_stores(store_url, env, fake_slack):
    env.setenv("TUESDAY_DATABASE_URL", store_url)
    p = Parts(fake_slack)
    try:
        sessions = p.runtime.sessions
        assert set_paused(sessions, True, by="ann") and is_paused(sessions)
        assert pause_state(sessions).set_by == "ann"
        assert set_paused(sessions, False, by="bob") and not is_paused(sessions)
        add_examples(p.runtime, 2)
        assert labels_since_last_training(p.runtime) == 2

        # many requests at once: one run, one job, everyone else joins it
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            request_retrain(p.runtime, p.queues, "U1", "command"))) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(created for _, created in results) == [False] * 5 + [True]
        assert {run.id for run, _ in results} == {1} and p.queues.control.job_ids == ["retrain-1"]

        record_snapshot(sessions, 1, "s", datetime.now(timezone.utc))
        done = finish_run(sessions, 1, "promoted", candidate_version="v1", metrics={"candidate": {"n": 1}})
        assert done.to_dict()["metrics"] == {"candidate": {"n": 1}} and done.to_dict()["finished_at"]
        assert labels_since_last_training(p.runtime) == 0
        again, created = request_retrain(p.runtime, p.queues, "U2", "cli")
        assert created and again.id > 1  # (PostgreSQL's sequence may skip ids the losing inserts took)
    finally:
        p.close()


# -- the CLI side ---------------------------------------------------------------------------------

def test_cli_status_pause_resume_retrain_rollback(parts):
    def run(*args, code=0):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    registry = parts.runtime.registry
    fake_version(registry, 0.4), fake_version(registry, 0.5)
    parts.runtime.production.switch("v1", by="test", reason="first")
    parts.runtime.production.switch("v2", by="test", reason="better")

    assert run("pause", "--by", "ann") == "retraining paused\n"
    assert "retraining is paused (by cli:ann" in run("retrain", code=1)
    assert run("resume") == "retraining resumed\n"
    queued = json.loads(run("retrain", "--by", "ann", "--json"))
    assert queued["created"] and queued["trigger"] == "cli" and queued["requested_by"] == "ann"
    assert "already queued as run 1" in run("retrain")

    assert "no model version 'v3'" in run("rollback", "v3", code=1)
    assert run("rollback", "v1", "--by", "ann", "--reason", "bad night") == "production is now v1 (was v2)\n"
    event = parts.runtime.production.history()[-1]
    assert (event["action"], event["by"], event["reason"]) == ("rollback", "cli:ann", "rollback: bad night")

    data = json.loads(run("status", "--json"))
    assert data["production"]["version"] == "v1" and data["queues"] == {"suggest": 0, "train": 0, "control": 1, "writeback": 0}
    assert data["last_run"]["status"] == "queued" and data["paused"] is False
    text = run("status")
    assert "production: v1" in text and "*" not in text


def test_the_app_the_web_process_serves_answers_tuesday(parts, fake_slack):
    """bot.slack.app registers /tuesday by a plain import: the served app answers it (no optional wiring)."""
    parts.app = create_slack_app(parts.runtime, parts.queues, WebClient(token="xoxb-test", base_url=fake_slack.url))
    assert parts.slash(MANAGER, "help") == (200, HELP)
    status, text = parts.slash(MANAGER, "retrain")
    assert status == 200 and text.startswith("Retrain queued as run 1") and len(parts.runs()) == 1


def test_the_gate_holds_when_production_changed_or_pause_came_during_training(parts):
    from bot.lifecycle.gate import gate_and_route

    registry = parts.runtime.registry
    for f in (0.4, 0.5, 0.9):
        fake_version(registry, f)
    parts.runtime.production.switch("v1", by="test", reason="first")
    better = {"version": "v3", "production": "v1", "metrics": {"n": 40, "macro_f1": 0.9, "handoff_recall": 0.5},
              "production_metrics": {"n": 40, "macro_f1": 0.4, "handoff_recall": 0.5}}

    parts.runtime.production.switch("v2", by="test", reason="meanwhile")  # e.g. an admin's rollback while v3 trained
    verdict = gate_and_route(parts.runtime, better, by="slack:U1", note="test")
    assert not verdict.passed and "production changed to v2 while it trained" in verdict.why

    parts.runtime.production.switch("v1", by="test", reason="back")
    set_paused(parts.runtime.sessions, True, by="ann")
    verdict = gate_and_route(parts.runtime, better, by="slack:U1", note="test")
    assert (verdict.passed, verdict.why) == (False, "retraining was paused while it trained; not promoted")
    assert parts.runtime.production.name() == "v1"

    set_paused(parts.runtime.sessions, False, by="ann")
    verdict = gate_and_route(parts.runtime, better, by="slack:U1", note="test")
    assert verdict.promoted and parts.runtime.production.name() == "v3" and parts.runtime.production.history()[-1]["by"] == "slack:U1"
