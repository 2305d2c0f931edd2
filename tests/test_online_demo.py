"""`tuesday demo --online` end to end on a tiny model: the loop a new user sees in one terminal."""

import json

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from bot.runtime import Runtime
from bot.settings import Settings
from tests.conftest import TINY_CONFIG, approve_tiny_bases

pytestmark = pytest.mark.slow


def test_online_demo_runs_ticket_to_retrain(tiny_base, tiny_bert, monkeypatch, tmp_path, two_tasks):
    import redis

    conn = redis.Redis(host="127.0.0.1", port=6379, db=8)
    conn.flushdb()
    monkeypatch.setenv("TUESDAY_REDIS_URL", "redis://127.0.0.1:6379/8")
    monkeypatch.setenv("TUESDAY_BASE_MODEL", str(tiny_base[1]))
    monkeypatch.setenv("TUESDAY_ENCODER_MODEL", str(tiny_bert))
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY_CONFIG))
    approve_tiny_bases(Runtime(Settings()).sessions)
    runner = CliRunner()
    refused = runner.invoke(main, ["demo", "--online"])
    assert refused.exit_code == 1 and "tuesday demo" in refused.output
    assert runner.invoke(main, ["demo", "--config", str(config)], catch_exceptions=False).exit_code == 0

    result = runner.invoke(main, ["demo", "--online", "--config", str(config), "--json"], catch_exceptions=False)
    conn.flushdb()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.rindex("\n{\n") + 1:])
    assert [t["status"] for t in summary["tickets"]] == ["queued"] * 6
    topic = [c for c in summary["clicks"] if "field" not in c]
    urgency = [c for c in summary["clicks"] if c.get("field") == "urgency"]
    assert len(topic) == 6 and len(urgency) <= 1 and summary["updated"] >= len(summary["clicks"])
    # six suggestions (each with both fields) and one retrain report were posted
    assert summary["posted"] == 7
    assert "Tuesday posts" in result.output and "/tuesday retrain" in result.output
    assert "*urgency*: " in result.output  # the second field is on every message
    refusal = next(line for line in result.output.splitlines() if line.strip().startswith("U0STRANGER:"))
    assert "only Tuesday's managers" in refusal
    # `tuesday demo` made topic v1 and urgency v2; the retrain made v3 of the field the agent corrected,
    # and its report names that task; the other task's production did not move
    if urgency:
        assert summary["retrained"] == "urgency" and urgency[0]["agent"] != urgency[0]["suggested"]
        assert "Retrain run 1* of *urgency*" in result.output
        assert summary["production"] == "v1" and summary["fields_production"]["urgency"] in ("v2", "v3")
    else:
        assert summary["retrained"] == "topic" and summary["fields_production"] == {"urgency": "v2"}

    # the six tickets were holdout rows; the agent's clicks made feedback examples of them, which
    # stay in the holdout: no text is on both sides of the snapshot the next retrain trains on
    from bot.trail.curation import snapshot_store
    from inference.snapshot import read_snapshot
    from inference.splits import normalise

    runtime = Runtime(Settings())
    path, _ = snapshot_store(runtime.sessions, runtime.task, tmp_path / "snap", 0.2, approval_required=False)
    train, holdout = read_snapshot(path)
    feedback = [r for r in holdout if r["id"].startswith("feedback:")]
    assert len(feedback) == 6 and not any(r["id"].startswith("feedback:") for r in train)
    assert not {normalise(r["text"]) for r in train} & {normalise(r["text"]) for r in holdout}
