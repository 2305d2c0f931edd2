"""`/tuesday` through a real bolt App with signed requests, real Redis and SQL, Slack's Web API faked at HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from click.testing import CliRunner
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from sqlalchemy import select, update

from bot.cli.main import main
from bot.lifecycle.jobs import CONTROL_TIMEOUT_S, PREPARE_JOB
from bot.lifecycle.reports import report_text
from bot.lifecycle.runs import labels_since_last_training, maybe_auto_retrain, maybe_scheduled_retrain, request_retrain
from bot.lifecycle.status import HELP, status_text
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.app import create_slack_app
from bot.slack.listeners.commands import register
from bot.store.examples import Example
from bot.store.runs import RetrainRun, active_run, finish_run, is_paused, pause_state, record_snapshot, set_paused
from bot.worker.jobs import worker as tuesday_worker
from bot.worker.upkeep import Upkeep
from tests.fake_slack import FakeSlack

REDIS_DB = 14  # this module's own database on the local Redis, flushed around every test
SIGNING_SECRET = "slack-signing-secret"
CHANNEL = "C0TRIAGE"
MANAGER, LEAD, ADMIN, AGENT = "U0MANAGER", "U0LEAD", "U0ADMIN", "U0AGENT"
GROUP = "S0LEADS"


class GroupSlack(FakeSlack):
    """FakeSlack that also answers usergroups.users.list (a GET with query parameters)."""

    def __init__(self, groups: dict[str, list[str]]):
        self.groups = groups
        super().__init__()

    def _answer(self, method: str, headers: dict, body: dict) -> dict:
        answer = super()._answer(method, headers, body)
        if method != "usergroups.users.list" or not answer["ok"]:
            return answer
        if body.get("usergroup") not in self.groups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": self.groups[body["usergroup"]]}

    def _handler(self):
        fake, base = self, super()._handler()

        class Handler(base):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                answer = json.dumps(fake._answer(url.path.rsplit("/", 1)[-1], dict(self.headers),
                                                 dict(parse_qsl(url.query)))).encode()
                BaseHTTPRequestHandler.send_response(self, 200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return Handler


@pytest.fixture
def fake_slack():
    slack = GroupSlack({GROUP: [LEAD, "U0OTHER"]}).start()
    yield slack
    slack.stop()


@pytest.fixture
def env(monkeypatch, redis_url, fake_slack):
    """Settings of a Tuesday process with managers, a manager group and an admin."""
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("TUESDAY_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("TUESDAY_SLACK_API_URL", fake_slack.url)
    monkeypatch.setenv("TUESDAY_TRIAGE_CHANNEL", CHANNEL)
    monkeypatch.setenv("TUESDAY_MANAGERS", f"{MANAGER}, {GROUP}")
    monkeypatch.setenv("TUESDAY_ADMINS", ADMIN)
    return monkeypatch


class Parts:
    """Runtime, queues and a bolt App with /tuesday registered, as bot.slack.app wires them."""

    def __init__(self, fake_slack: FakeSlack):
        self.settings = Settings()
        self.runtime, self.queues = Runtime(self.settings), Queues.from_settings(self.settings)
        self.app = App(client=WebClient(token=self.settings.slack_bot_token, base_url=fake_slack.url),
                       signing_secret=self.settings.slack_signing_secret, token_verification_enabled=False)
        register(self.app, self.runtime, self.queues)
        self.fake = fake_slack

    def slash(self, user: str, text: str, *, secret: str = SIGNING_SECRET):
        """Send `/tuesday text` as Slack would; returns (HTTP status, ephemeral text or raw body)."""
        body = urlencode({"token": "legacy", "team_id": "T0TEAM", "team_domain": "harbor", "channel_id": CHANNEL,
                          "channel_name": "triage", "user_id": user, "user_name": user.lower(),
                          "command": "/tuesday", "text": text, "api_app_id": "A0TUESDAY",
                          "response_url": f"{self.fake.url}response", "trigger_id": "1.2.3"})
        ts = str(int(time.time()))
        signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        response = self.app.dispatch(BoltRequest(body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature}))
        if response.status != 200:
            return response.status, response.body
        reply = json.loads(response.body)
        assert reply["response_type"] == "ephemeral"
        return response.status, reply["text"]

    def runs(self) -> list[RetrainRun]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(RetrainRun).order_by(RetrainRun.id)))

    def close(self):
        self.queues.close()


@pytest.fixture
def parts(env, fake_slack):
    p = Parts(fake_slack)
    yield p
    p.close()


def add_examples(runtime, n: int, start: int = 0, at: datetime | None = None) -> None:
    at = at or datetime.now(timezone.utc)
    with runtime.sessions() as session:
        session.add_all([Example(source="test", external_id=str(i), text=f"where is my claim {i}", label="claim_status",
                                 created_at=at) for i in range(start, start + n)])
        session.commit()


def fake_version(registry, macro_f1: float):
    """A committed version with metrics only (enough for the registry, status and rollback)."""
    return registry.commit(registry.stage(), {"metrics": {"n": 40, "accuracy": macro_f1 + 0.1, "macro_f1": macro_f1,
                                                          "handoff_recall": 0.5}, "files": {}})


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
    assert text.startswith("Unknown command `dance`") and "/tuesday rollback <version>" in text


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
    while active_run(sessions) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert active_run(sessions).trigger == "schedule"
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
