"""`/tuesday` through a real bolt App with signed requests, real Redis and SQL, Slack's Web API faked at HTTP."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from click.testing import CliRunner
from sqlalchemy import update

from bot.cli.main import main
from bot.lifecycle.jobs import CONTROL_TIMEOUT_S, PREPARE_JOB
from bot.lifecycle.reports import report_text
from bot.lifecycle.runs import request_retrain
from bot.lifecycle.status import HELP, status_text
from bot.store.runs import RetrainRun, finish_run
from bot.worker.jobs import worker as tuesday_worker
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

# -- retrain --------------------------------------------------------------------------------------

def test_non_manager_is_refused_and_nothing_is_queued(parts, fake_slack):
    status, text = parts.slash(AGENT, "retrain")
    assert status == 200 and "only Tuesday's managers" in text
    assert parts.queues.control.count == 0 and parts.runs() == []
    # AGENT is in no group: Slack was asked about the listed group, nothing else
    assert [c["body"]["usergroup"] for c in fake_slack.calls_to("usergroups.users.list")] == [GROUP]


def test_manager_queues_one_job_and_a_second_request_collapses(parts):
    status, text = parts.slash(MANAGER, "retrain")
    assert status == 200 and "queued as run 1" in text
    [job_id] = parts.queues.control.job_ids
    job = parts.queues.fetch(job_id)
    assert job_id == "retrain-1" and job.func_name == PREPARE_JOB and job.args == [1]
    assert job.timeout == CONTROL_TIMEOUT_S

    status, text = parts.slash(ADMIN, "retrain")  # admins may do what managers do
    assert "already queued as run 1" in text and f"<@{MANAGER}>" in text
    assert parts.queues.control.job_ids == ["retrain-1"]
    [run] = parts.runs()
    assert (run.requested_by, run.trigger, run.status, run.job_id) == (MANAGER, "command", "queued", "retrain-1")


def test_user_group_member_is_a_manager(parts, fake_slack):
    status, text = parts.slash(LEAD, "retrain")
    assert "queued as run 1" in text
    [call] = fake_slack.calls_to("usergroups.users.list")
    assert call["body"]["usergroup"] == GROUP and call["headers"]["Authorization"] == "Bearer xoxb-test-token"


def test_a_slow_group_lookup_answers_within_slacks_three_seconds(parts, fake_slack):
    parts.slash(LEAD, "help")  # bolt's first request calls auth.test
    fake_slack.group_delay_s = 5.0  # Slack's user groups API hangs
    started = time.monotonic()
    status, text = parts.slash(LEAD, "retrain")
    assert time.monotonic() - started < 3.0  # Slack shows "operation_timeout" after 3 s
    assert status == 200 and "could not check your user groups with Slack (no answer within 1 s" in text
    assert parts.queues.control.count == 0 and parts.runs() == []


def test_group_lookup_failure_is_an_ephemeral_warning(parts, fake_slack):
    parts.slash(LEAD, "help")  # bolt's first request calls auth.test; fail the call after it
    fake_slack.fail_next.append("missing_scope")
    status, text = parts.slash(LEAD, "retrain")
    assert status == 200 and "missing_scope" in text and parts.runs() == []


def test_a_lost_job_does_not_block_the_next_retrain(parts):
    parts.slash(MANAGER, "retrain")
    parts.queues.connection.flushdb()  # Redis lost the job
    status, text = parts.slash(MANAGER, "retrain")
    assert "already queued as run 1" in text  # young runs get a grace period (the enqueue may be in flight)
    with parts.runtime.sessions() as session:
        session.execute(update(RetrainRun).values(created_at=datetime.now(timezone.utc) - timedelta(minutes=5)))
        session.commit()
    status, text = parts.slash(MANAGER, "retrain")
    assert "queued as run 2" in text
    first, second = parts.runs()
    assert first.status == "failed" and "no longer in the queue" in first.error and second.status == "queued"


def test_a_redelivered_job_does_not_train_twice(parts):
    from bot.lifecycle.retrain import conclude_run, prepare_run

    run, _ = request_retrain(parts.runtime, parts.queues, MANAGER, "command")
    finish_run(parts.runtime.sessions, run.id, "kept", why="test")
    assert prepare_run(parts.runtime, parts.queues, None, run.id)["status"] == "kept"  # returns at once
    assert conclude_run(parts.runtime, parts.queues, None, run.id)["status"] == "kept"
    assert parts.queues.train.count == 0  # nothing queued to train


# -- pause, resume, rollback ----------------------------------------------------------------------

def test_pause_blocks_retrains_and_only_admins_may_pause(parts):
    assert "only Tuesday's admins" in parts.slash(MANAGER, "pause")[1]
    assert "paused" in parts.slash(ADMIN, "pause")[1]
    assert "already paused" in parts.slash(ADMIN, "pause")[1]
    text = parts.slash(MANAGER, "retrain")[1]
    assert "retraining is paused" in text and "/tuesday resume" in text
    assert parts.queues.control.count == 0 and parts.runs() == []
    assert "*paused* by <@U0ADMIN>" in parts.slash(AGENT, "status")[1]

    assert "only Tuesday's admins" in parts.slash(MANAGER, "resume")[1]
    assert "resumed" in parts.slash(ADMIN, "resume")[1]
    assert "queued as run 1" in parts.slash(MANAGER, "retrain")[1]


def test_a_run_queued_before_pause_is_closed_when_it_starts(parts, fake_slack):
    from bot.lifecycle.retrain import prepare_run
    from bot.runtime import slack_client

    run, _ = request_retrain(parts.runtime, parts.queues, MANAGER, "command")
    parts.slash(ADMIN, "pause")
    result = prepare_run(parts.runtime, parts.queues, slack_client(parts.settings), run.id)
    assert result["status"] == "failed" and result["error"] == "paused before the run started"
    [post] = fake_slack.calls_to("chat.postMessage")
    assert post["body"]["channel"] == CHANNEL and "failed" in post["body"]["text"]


def test_rollback_by_admin_switches_production_and_logs_it(parts):
    registry = parts.runtime.registry
    v1, v2, v3 = (fake_version(registry, f) for f in (0.4, 0.5, 0.45))
    parts.runtime.production.switch("v1", by="test", reason="first")
    parts.runtime.production.switch("v2", by="test", reason="better")

    assert "only Tuesday's admins" in parts.slash(MANAGER, "rollback v1")[1]
    assert parts.runtime.production.name() == "v2"
    assert "was never production" in parts.slash(ADMIN, "rollback v3")[1]
    assert "no model version 'v9'" in parts.slash(ADMIN, "rollback v9")[1]
    assert "already production" in parts.slash(ADMIN, "rollback v2")[1]
    assert "Usage" in parts.slash(ADMIN, "rollback")[1]
    assert parts.runtime.production.name() == "v2" and len(parts.runtime.production.history()) == 2

    text = parts.slash(ADMIN, "rollback v1 v2 misroutes hand-offs")[1]
    assert "production is now *v1* (was v2)" in text
    assert parts.runtime.production.name() == "v1"
    event = parts.runtime.production.history()[-1]
    assert (event["action"], event["version"], event["previous"], event["by"]) == ("rollback", "v1", "v2", f"slack:{ADMIN}")
    assert event["reason"] == "rollback: v2 misroutes hand-offs"
    assert parts.runtime.production.statuses()["v2"] == "retired"


# -- status, eval, help ---------------------------------------------------------------------------

def test_status_shows_production_queues_workers_and_last_run(parts):
    registry = parts.runtime.registry
    fake_version(registry, 0.5)
    parts.runtime.production.switch("v1", by="slack:U0MANAGER", reason="no production model yet")
    add_examples(parts.runtime, 3)
    parts.slash(MANAGER, "retrain")
    parts.queues.enqueue_suggest(7)
    worker = tuesday_worker(parts.queues, ["train"])
    worker.register_birth()
    try:
        status, text = parts.slash(AGENT, "status")
    finally:
        worker.register_death()
    assert status == 200
    assert "production: *v1*" in text and "macro-F1 50.0%" in text and "(n=40)" in text
    assert "labels since last training: 3 (auto-retrain at 50)" in text
    assert "queue depths: suggest 1, train 0, control 1, writeback 0" in text and "workers alive: suggest 0, train 1, control 0, writeback 0" in text
    assert "last retrain: run 1 (/tuesday retrain, <@U0MANAGER>): queued since" in text
    assert "not paused" in text


def test_status_states_what_production_thresholds_promise(parts):
    import numpy as np

    from inference.calibration import calibrate

    registry = parts.runtime.registry
    fake_version(registry, 0.5)  # committed without a calibration
    parts.runtime.production.switch("v1", by="test", reason="first")
    assert "   No guarantee recorded (the version has no calibration)" in parts.slash(AGENT, "status")[1]
    gold = np.array([0] * 120 + [1] * 30)  # 1 is the hand-off label; the model is right with confidence 0.9
    probs = np.where(np.eye(2)[gold] == 1, 0.9, 0.1)
    calibration = calibrate(probs, gold, max_wrong=0.05, in_scope=gold == 0, handoff_index=1, fit=False).to_dict()
    registry.commit(registry.stage(), {"metrics": {"n": 150, "macro_f1": 1.0}, "files": {},
                                       "calibration": calibration})
    parts.runtime.production.switch("v2", by="test", reason="calibrated")
    promise = ("Suggests above 90 %: ≤ 5 % of shown suggestions wrong with 90 % confidence, from 150 holdout tickets",
               "Hands off below 90 %: ≤ 5 % wrong escalations with 90 % confidence, from 120 in-scope holdout tickets")
    assert "\n   ".join(promise) in parts.slash(AGENT, "status")[1]
    text = CliRunner().invoke(main, ["status"], catch_exceptions=False).output
    assert all(line in text for line in promise)


def test_eval_replies_with_stored_metrics_and_says_so(parts):
    assert "No production model yet" in parts.slash(MANAGER, "eval")[1]
    fake_version(parts.runtime.registry, 0.5)
    parts.runtime.production.switch("v1", by="test", reason="test")
    text = parts.slash(LEAD, "eval")[1]
    assert "Production *v1*" in text and "macro-F1 50.0%" in text and "not a new evaluation" in text
    assert "only Tuesday's managers" in parts.slash(AGENT, "eval")[1]


def test_help_and_unknown_subcommands_list_the_commands(parts):
    assert parts.slash(AGENT, "help")[1] == HELP
    assert parts.slash(AGENT, "")[1] == HELP
    text = parts.slash(AGENT, "dance")[1]
    assert text.startswith("Unknown command `dance`") and "/tuesday rollback [task] <version>" in text


def test_a_badly_signed_command_is_refused(parts):
    status, _ = parts.slash(MANAGER, "retrain", secret="wrong")
    assert status == 401 and parts.runs() == [] and parts.queues.control.count == 0


def test_status_text_is_a_pure_function_of_its_data():
    run = {"id": 4, "trigger": "threshold", "requested_by": "tuesday", "status": "kept", "candidate_version": "v5",
           "production_before": "v4", "why": "macro-F1 0.500 does not beat production's 0.500 by more than 0.000",
           "metrics": {"candidate": {"n": 10, "accuracy": 0.6, "macro_f1": 0.5, "handoff_recall": 1.0},
                       "production": {"n": 10, "accuracy": 0.6, "macro_f1": 0.5, "handoff_recall": 1.0}},
           "error": None, "created_at": "2025-11-30T08:00:00+00:00", "started_at": "2025-11-30T08:01:00+00:00",
           "finished_at": "2025-11-30T08:09:00+00:00"}
    data = {"production": None, "labels_since_training": 0, "retrain_after_labels": 0, "retrain_schedule_hours": 24,
            "paused": False, "paused_by": None, "paused_at": None, "last_run": run, "active_run": None,
            "queues": None, "workers": None, "queue_error": "ConnectionError: refused"}
    text = status_text(data)
    assert "production: none yet" in text and "auto-retrain off, scheduled every 24 h" in text
    assert "queues: unreachable (ConnectionError: refused)" in text
    assert "run 4 (enough new labels, tuesday): v5 kept as candidate at 2025-11-30 08:09 UTC" in text
    report = report_text(run)
    assert "*v5 kept as candidate*; v4 stays in production: macro-F1 0.500 does not beat" in report
    assert "v4 (before)" in report and "v5 (new)" in report and "hand-off recall" in report
