"""Data approval: only what a manager saw and approved is trained on, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli.main import main
from bot.lifecycle.jobs import train_job_id
from bot.lifecycle.retrain import prepare_run
from bot.lifecycle.runs import labels_since_last_training, request_retrain
from bot.lifecycle.training import snapshot_for_training
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.curation_blocks import APPROVE_DATA
from bot.store import audit
from bot.store.base import utc_now
from bot.store.examples import Example
from bot.store.runs import RetrainRun, finish_run, get_run, record_snapshot
from bot.store.trail import DataApproval
from bot.trail import curation
from tests.clicks import post_slack
from tests.curation_parts import (  # noqa: F401  (fixtures)
    AGENT,
    ANN_WHY,
    BOB_WHY,
    CHANNEL,
    MANAGER,
    REDIS_DB,
    add_examples,
    button,
    by_id,
    disputed,
    env,
    fake_slack,
    parts,
    settle_submission,
    slash,
    stored_rows,
    the_example,
    three_snapshots,
    told,
    work_control,
)

# -- data approval ----------------------------------------------------------------------------------

def test_with_data_approval_only_what_a_manager_saw_and_approved_is_trained_on(parts, env, fake_slack):
    env.setenv("TUESDAY_DATA_APPROVAL", "true")
    runtime, queues, client = parts
    runtime.settings.data_approval = True
    add_examples(runtime, 4)
    add_examples(runtime, 1, start=10, label="billing_dispute")
    example = disputed(runtime)  # id 6

    # nothing approved yet: every path refuses, saying what to do
    said = "no approved data: a manager must approve with /tuesday data"
    with pytest.raises(curation.NoApprovedData, match=said):
        snapshot_for_training(runtime)
    result = CliRunner().invoke(main, ["train"])
    assert result.exit_code == 1 and said in result.output
    run, _ = request_retrain(runtime, queues, requested_by=MANAGER, trigger="command")
    with pytest.raises(curation.NoApprovedData):
        prepare_run(runtime, queues, None, run.id)
    failed = get_run(runtime.sessions, run.id)
    assert failed.status == "failed" and said in failed.error
    assert curation.holdout_rows(runtime.sessions, runtime.task, 0.5, approval_required=True) == []

    assert "only Tuesday's managers" in slash(client, AGENT, "data")["text"]
    reply = slash(client, MANAGER, "data")
    text = reply["blocks"][0]["text"]["text"]
    assert "*6* new examples (ids 1–6)" in text
    assert "by label: claim_status 5 · billing_dispute 1" in text  # the disputed example keeps its first label
    assert "by source: import 5 · feedback 1" in text and "open conflicts: 1" in text
    [approve] = [e for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert approve["action_id"] == APPROVE_DATA and approve["value"] == str(example.id)

    add_examples(runtime, 1, start=20)  # id 7 arrives between showing and clicking

    assert post_slack(client, button(APPROVE_DATA, approve["value"], AGENT)).status_code == 200
    assert "only Tuesday's managers" in told(fake_slack, 1)[0]["text"]
    with runtime.sessions() as session:
        assert session.scalars(select(DataApproval)).all() == []

    assert post_slack(client, button(APPROVE_DATA, approve["value"], MANAGER)).status_code == 200
    confirmation = told(fake_slack, 2)[1]
    assert "6 example(s) up to id 6 approved for training by <@U0MANAGER>" in confirmation["text"]
    with runtime.sessions() as session:
        [approval] = session.scalars(select(DataApproval)).all()
    assert (approval.up_to_example_id, approval.approved_by) == (6, f"slack:{MANAGER}")
    assert json.loads(approval.counts)["examples"] == 6
    [entry] = audit.entries(runtime.sessions, action="data.approve")
    assert entry["actor"] == f"slack:{MANAGER}" and entry["detail"]["up_to_example_id"] == 6

    # the snapshot: approved, unconflicted examples only, and the approval it used
    snapshot = snapshot_for_training(runtime)
    assert snapshot["data_approval"] == approval.id
    lines = stored_rows(runtime, snapshot["snapshot_key"])
    assert lines[0] == {"data_approval": approval.id, "split": "meta"}
    assert sorted(by_id(lines)) == ["import:0", "import:1", "import:10", "import:2", "import:3"]
    run, _ = request_retrain(runtime, queues, requested_by=MANAGER, trigger="command")
    prepare_run(runtime, queues, None, run.id)
    assert get_run(runtime.sessions, run.id).data_approval_id == approval.id
    assert queues.fetch(train_job_id(run.id)).kwargs["signed"]["args"]["data_approval"] == approval.id  # signed
    finish_run(runtime.sessions, run.id, "cancelled")

    # the list moves on; the old button cannot approve again
    assert "*1* new example (ids 7–7)" in slash(client, MANAGER, "data")["text"]
    post_slack(client, button(APPROVE_DATA, approve["value"], MANAGER))
    assert "approved already" in told(fake_slack, 3)[2]["text"]

    # the same from a terminal
    shown = CliRunner().invoke(main, ["data"], catch_exceptions=False)
    assert "1 new example (ids 7–7)" in shown.output and "tuesday data approve --by NAME --up-to 7" in shown.output
    approved = CliRunner().invoke(main, ["data", "approve", "--by", "alice", "--up-to", "7"], catch_exceptions=False)
    assert approved.exit_code == 0 and "1 example(s) up to id 7 approved for training by alice (CLI)" in approved.output
    assert audit.entries(runtime.sessions, action="data.approve")[0]["actor"] == "cli:alice"
    assert "import:20" in by_id(stored_rows(runtime, snapshot_for_training(runtime)["snapshot_key"]))
    again = CliRunner().invoke(main, ["data", "approve", "--by", "alice"])
    assert again.exit_code == 1 and "approved already" in again.output


def test_without_data_approval_nothing_waits_and_the_snapshot_carries_no_approval(parts):
    runtime, _, _ = parts
    add_examples(runtime, 3)
    snapshot = snapshot_for_training(runtime)
    lines = stored_rows(runtime, snapshot["snapshot_key"])
    assert snapshot["data_approval"] is None and len(lines) == 3 and all(r["split"] != "meta" for r in lines)


@pytest.mark.slow
def test_the_version_manifest_names_the_data_approval_it_was_trained_on(tiny_base, tiny_bert, demo_rows, monkeypatch,
                                                                         tmp_path):
    """`tuesday train` with data approval on: tiny encoder, trained on approved rows only."""
    from tests.conftest import TINY_CONFIG, approve_tiny_bases

    monkeypatch.setenv("TUESDAY_DATA_APPROVAL", "true")
    monkeypatch.setenv("TUESDAY_BASE_MODEL", str(tiny_base[1]))
    monkeypatch.setenv("TUESDAY_ENCODER_MODEL", str(tiny_bert))
    (tmp_path / "enc.yaml").write_text(json.dumps({**TINY_CONFIG, "families": ["encoder"]}))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in demo_rows[:60]))
    runtime = Runtime(Settings())
    approve_tiny_bases(runtime.sessions)

    def run(*args):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("import", str(tmp_path / "rows.jsonl"))
    run("data", "approve", "--by", "alice", "--up-to", "50")
    summary = json.loads(run("train", "--config", str(tmp_path / "enc.yaml"), "--json"))
    with runtime.sessions() as session:
        [approval] = session.scalars(select(DataApproval)).all()
    assert summary["data_approval"] == approval.id
    version = runtime.registry.get(summary["version"])
    assert version.manifest["data_approval"] == approval.id
    assert version.manifest["data"]["n_train"] + version.manifest["data"]["n_holdout"] == 50


def test_with_data_approval_the_retrain_triggers_count_only_approved_examples(parts, env):
    env.setenv("TUESDAY_DATA_APPROVAL", "true")
    runtime, queues, _ = parts
    runtime.settings.data_approval = True
    add_examples(runtime, 5)
    assert labels_since_last_training(runtime) == 0  # stored, but no manager has approved them
    curation.approve_data(runtime.sessions, by="cli:ann", up_to=3)
    assert labels_since_last_training(runtime) == 3
    run, _ = request_retrain(runtime, queues, requested_by=MANAGER, trigger="command")
    record_snapshot(runtime.sessions, run.id, "snapshots/x", utc_now())
    with runtime.sessions() as session:
        session.get(RetrainRun, run.id).data_approval_id = 1
        session.commit()
    finish_run(runtime.sessions, run.id, "kept")
    assert labels_since_last_training(runtime) == 0  # the last run trained on approval 1
    curation.approve_data(runtime.sessions, by="cli:ann", up_to=None)
    assert labels_since_last_training(runtime) == 2


def test_a_forgotten_example_is_out_of_training_and_its_id_is_never_reused(parts):
    from bot.trail.forget import forget

    runtime, _, _ = parts
    add_examples(runtime, 3)
    forget(runtime, "import:2", by="cli:dana")
    rows = curation.training_data(runtime.sessions, runtime.task, approval_required=False).rows
    assert [row["id"] for row in rows] == ["import:0", "import:1"]
    add_examples(runtime, 1, start=3)
    with runtime.sessions() as session:
        assert session.scalar(select(Example.id).where(Example.external_id == "3")) == 4  # not 3 again
