"""Retrain runs end to end: slash command → "train" queue → RQ worker → tiny model → gate → report in Slack."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli.main import main
from bot.lifecycle.runs import labels_since_last_training
from bot.store.examples import Example
from bot.store.importer import import_file
from bot.worker.jobs import worker as tuesday_worker
from tests.conftest import TINY_CONFIG, approve_tiny_bases
from tests.slash import ADMIN, CHANNEL, GROUP, LEAD, MANAGER, GroupSlack, Parts, env  # noqa: F401

pytestmark = pytest.mark.slow

REDIS_DB = 15  # this module's own database on the local Redis, flushed around every test


@pytest.fixture
def fake_slack():
    slack = GroupSlack({GROUP: [LEAD]}).start()
    yield slack
    slack.stop()


@pytest.fixture
def parts(env, fake_slack, tiny_base, tiny_bert, demo_rows, tmp_path):
    """A store with 60 labelled demo rows, the tiny model as base and a tiny training config for retrains."""
    env.setenv("TUESDAY_BASE_MODEL", str(tiny_base[1]))
    env.setenv("TUESDAY_ENCODER_MODEL", str(tiny_bert))
    (tmp_path / "tiny.yaml").write_text(json.dumps(TINY_CONFIG))
    env.setenv("TUESDAY_RETRAIN_CONFIG", str(tmp_path / "tiny.yaml"))
    p = Parts(fake_slack)
    approve_tiny_bases(p.runtime.sessions)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in demo_rows[:60]))
    assert import_file(rows, p.runtime.task, p.runtime.sessions, source="demo").added == 60
    yield p
    p.close()


def work(parts: Parts) -> None:
    """A run's three jobs as the CPU and GPU workers do them (`tuesday worker --queue ... --burst`), in this process."""
    for queue in ("control", "train", "control"):
        tuesday_worker(parts.queues, [queue]).work(burst=True)


def test_retrain_promotes_first_then_keeps_on_unchanged_data(parts, fake_slack):
    with parts.runtime.sessions() as session:  # reviewers disagreed on one text: it stays out of training
        disputed = session.scalars(select(Example).order_by(Example.id)).first()
        disputed.conflict_labels = json.dumps([disputed.label, "hand_off"])
        session.commit()
    assert "queued as run 1" in parts.slash(MANAGER, "retrain")[1]
    work(parts)

    registry = parts.runtime.registry
    [first] = parts.runs()
    assert (first.status, first.candidate_version, first.production_before) == ("promoted", "v1", None)
    assert first.active is None and first.snapshot and first.snapshot_at and first.finished_at
    assert first.snapshot.startswith("snapshots/")  # an artifact key, not a path on one host
    snapshot = [json.loads(line) for line in registry.store.get_bytes(first.snapshot).decode().splitlines()]
    assert len(snapshot) == 59 and disputed.key not in {row["id"] for row in snapshot}
    metrics = json.loads(first.metrics)
    assert metrics["production"] is None and 0 <= metrics["candidate"]["macro_f1"] <= 1 and metrics["candidate"]["n"] > 0
    cost = metrics["cost"]  # what the measures price (bot.monitor.measures.cost)
    assert cost["device"] == "cpu" and cost["cpu_s"] > 0 and cost["total_s"] >= cost["train_s"] > 0
    assert parts.runtime.production.name() == "v1"
    [event] = parts.runtime.production.history()
    assert event["by"] == f"slack:{MANAGER}" and event["reason"].startswith("no production model yet")
    assert parts.queues.fetch("gate-1").return_value()["status"] == "promoted"
    assert parts.queues.fetch("train-1").return_value()["version"] == "v1"

    [post] = fake_slack.calls_to("chat.postMessage")
    text = post["body"]["text"]
    assert post["body"]["channel"] == CHANNEL and post["headers"]["Authorization"] == "Bearer xoxb-test-token"
    assert f"Retrain run 1* of *topic* (requested by <@{MANAGER}> via /tuesday retrain)" in text
    assert "*v1 promoted to production*: no production model yet" in text
    assert f"{100 * metrics['candidate']['macro_f1']:.1f}%" in text and "hand-off recall" in text
    assert "no production model to compare with" in text
    assert labels_since_last_training(parts.runtime) == 0

    # same data, same seed: the candidate ties production and the gate keeps it out
    assert "queued as run 2" in parts.slash(LEAD, "retrain")[1]
    work(parts)
    second = parts.runs()[1]
    assert (second.status, second.candidate_version, second.production_before) == ("kept", "v2", "v1")
    assert "does not beat production" in second.why
    both = json.loads(second.metrics)
    assert both["candidate"]["macro_f1"] == both["production"]["macro_f1"]
    assert both["candidate"]["n"] == both["production"]["n"]  # one holdout for both
    assert parts.runtime.production.name() == "v1" and len(parts.runtime.production.history()) == 1

    report = fake_slack.calls_to("chat.postMessage")[1]["body"]["text"]
    assert "*v2 kept as candidate*; v1 stays in production: macro-F1" in report and "does not beat" in report
    assert "v1 (before)" in report and "v2 (new)" in report

    status = parts.slash(ADMIN, "status")[1]
    assert "production: *v1*" in status and "last retrain: run 2" in status and "v2 kept as candidate" in status
    assert "workers alive: suggest 0, train 0, control 0, writeback 0" in status and "queue depths: suggest 0, train 0, control 0, writeback 0" in status


def test_the_train_worker_runs_scheduled_retrains_and_records_failures(parts, fake_slack, tmp_path, env):
    """`tuesday worker --queue suggest --burst` asks the schedule and snapshots; a bad config fails the train job cleanly."""
    (tmp_path / "bad.yaml").write_text("rank: 0\n")
    env.setenv("TUESDAY_RETRAIN_CONFIG", str(tmp_path / "bad.yaml"))
    env.setenv("TUESDAY_RETRAIN_SCHEDULE_HOURS", "6")

    for queue in ("suggest", "train", "suggest"):
        result = CliRunner().invoke(main, ["worker", "--queue", queue, "--burst"], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    [run] = parts.runs()
    assert (run.trigger, run.status, run.active) == ("schedule", "failed", None)
    assert "rank must be >= 1" in run.error
    assert parts.queues.fetch("train-1").get_status() == "failed"  # RQ keeps the traceback
    [post] = fake_slack.calls_to("chat.postMessage")
    assert "Retrain run 1* of *topic* (requested by tuesday via the schedule) *failed*" in post["body"]["text"]
    assert "rank must be >= 1" in post["body"]["text"] and "Production is unchanged (none)" in post["body"]["text"]
    assert parts.runtime.production.name() is None
