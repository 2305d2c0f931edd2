"""Labels a team can defend: conflicts out of every training path until a manager settles them, and data approval.

Signed Slack requests against the real app, a real store (SQLite and PostgreSQL) and Redis; Slack's
Web API faked at HTTP.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.cli.main import main
from bot.lifecycle.jobs import train_job_id
from bot.lifecycle.retrain import prepare_run
from bot.lifecycle.runs import labels_since_last_training, maybe_scheduled_retrain, request_retrain
from bot.lifecycle.training import snapshot_for_training
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.curation_blocks import APPROVE_DATA, SETTLE, SETTLE_LABEL, SETTLE_MODAL, SETTLE_REASON
from bot.store import audit
from bot.store.base import utc_now
from bot.store.examples import Example
from bot.store.feedback import Feedback, record_feedback
from bot.store.runs import RetrainRun, finish_run, get_run, record_snapshot
from bot.store.trail import DataApproval
from bot.trail import curation
from bot.web.app import create_app
from bot.worker.jobs import worker as tuesday_worker
from tests.fake_slack import FakeSlack
from tests.test_feedback import SIGNING_SECRET, post_slack, posted, slack_sign, user, wait_for

REDIS_DB = 3  # this module's own database on the local Redis, flushed around every test
CHANNEL = "C0TRIAGE"
MANAGER, AGENT = "U0MANAGER", "U0AGENT"
ANN_WHY = "Asks where the claim stands"
BOB_WHY = "Disputes the premium, mail j.doe@example.com"


@pytest.fixture
def fake_slack():
    slack = FakeSlack().start()
    yield slack
    slack.stop()


@pytest.fixture
def env(monkeypatch, store_url, redis_url, fake_slack):
    for key, value in {"REDIS_URL": redis_url, "DATABASE_URL": store_url, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                       "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": fake_slack.url,
                       "TRIAGE_CHANNEL": CHANNEL, "MANAGERS": MANAGER, "RETRAIN_AFTER_LABELS": "0"}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    return monkeypatch


@pytest.fixture
def parts(env):
    """(runtime, queues, client of the web app), wired as `tuesday serve` wires them."""
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    yield runtime, queues, TestClient(create_app(runtime, queues))
    queues.close()


# -- helpers ----------------------------------------------------------------------------------------

def add_examples(runtime, n: int, start: int = 0, label: str = "claim_status") -> None:
    with runtime.sessions() as session:
        session.add_all([Example(source="import", external_id=str(i), text=f"where is my claim number {i} now",
                                 label=label) for i in range(start, start + n)])
        session.commit()


def disputed(runtime) -> Example:
    """A ticket ann accepted as claim_status and bob changed to billing_dispute; returns its example."""
    sid = posted(runtime, external_id="T-DISPUTED")
    labels = runtime.task.labels
    record_feedback(runtime.sessions, suggestion_id=sid, action="accept", label=None, user_id="U1", user_name="ann",
                    why=ANN_WHY, labels=labels)
    record_feedback(runtime.sessions, suggestion_id=sid, action="change", label="billing_dispute", user_id="U2",
                    user_name="bob", why=BOB_WHY, labels=labels)
    example = the_example(runtime, "ticket-1")
    assert example.conflicted
    return example


def the_example(runtime, external_id: str) -> Example:
    with runtime.sessions() as session:
        return session.scalar(select(Example).where(Example.external_id == external_id))


def stored_rows(runtime, key: str) -> list[dict]:
    """Every line of a snapshot in the artifact store (train, holdout and meta)."""
    return [json.loads(line) for line in runtime.registry.store.get_bytes(key).decode().splitlines()]


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows if row.get("split") in ("train", "holdout")}


def slash(client, uid: str, text: str) -> dict:
    """`/tuesday text` as Slack posts it; returns the ephemeral reply."""
    body = urlencode({"team_id": "T0TEST", "channel_id": CHANNEL, "user_id": uid, "user_name": uid.lower(),
                      "command": "/tuesday", "text": text, "response_url": "https://hooks.slack.invalid/x",
                      "trigger_id": "1.2.3"})
    ts = str(int(time.time()))
    response = client.post("/slack/events", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_sign(SIGNING_SECRET, ts, body)})
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["response_type"] == "ephemeral"
    return reply


def button(action_id: str, value: str, uid: str) -> dict:
    """A click on a button of an ephemeral reply to a slash command."""
    return {"type": "block_actions", "team": {"id": "T0TEST", "domain": "tuesday-test"}, "user": user(uid, uid.lower()),
            "api_app_id": "A0TUESDAY", "token": "unused", "trigger_id": "9.8.7",
            "container": {"type": "message", "message_ts": "1764489600.000900", "channel_id": CHANNEL,
                          "is_ephemeral": True},
            "channel": {"id": CHANNEL, "name": "triage"},
            "response_url": "https://hooks.slack.invalid/actions/x",
            "actions": [{"type": "button", "action_id": action_id, "value": value, "block_id": "b",
                         "action_ts": "1764489700.000100"}]}


def settle_submission(view: dict, label: str, reason: str, uid: str) -> dict:
    values = {SETTLE_LABEL: {SETTLE_LABEL: {"type": "static_select", "selected_option": {
        "text": {"type": "plain_text", "text": label}, "value": label}}},
        SETTLE_REASON: {SETTLE_REASON: {"type": "plain_text_input", "value": reason}}}
    return {"type": "view_submission", "team": {"id": "T0TEST", "domain": "tuesday-test"}, "user": user(uid, "mo"),
            "api_app_id": "A0TUESDAY", "token": "unused", "trigger_id": "9.8.7",
            "view": {"id": "V0SETTLE", "team_id": "T0TEST", "type": "modal", "callback_id": view["callback_id"],
                     "private_metadata": view["private_metadata"], "state": {"values": values}, "hash": "1.abc"},
            "response_urls": []}


def told(fake_slack, n: int) -> list[dict]:
    """The first n ephemeral messages, once they have arrived (listeners work after the ack)."""
    wait_for(lambda: len(fake_slack.calls_to("chat.postEphemeral")) >= n)
    return [c["body"] for c in fake_slack.calls_to("chat.postEphemeral")]


def work_control(queues) -> None:
    """What a CPU worker does with the "control" queue (`tuesday worker --queue suggest --burst`)."""
    tuesday_worker(queues, ["control"]).work(burst=True)


def three_snapshots(runtime, queues) -> dict[str, dict]:
    """The snapshot rows (by id) of `tuesday train`, a queued retrain and a scheduled retrain, taken now."""
    now = utc_now() + timedelta(hours=7)  # the schedule (6 h) is due whenever the last run finished
    out = {"cli": by_id(stored_rows(runtime, snapshot_for_training(runtime)["snapshot_key"]))}
    run, created = request_retrain(runtime, queues, requested_by=MANAGER, trigger="command")
    assert created
    prepare_run(runtime, queues, None, run.id)
    run = get_run(runtime.sessions, run.id)
    out["queued"] = by_id(stored_rows(runtime, run.snapshot))
    finish_run(runtime.sessions, run.id, "cancelled")
    run, created = maybe_scheduled_retrain(runtime, queues, now=now)
    assert created and run.trigger == "schedule"
    work_control(queues)  # the scheduled run's prepare job, as a CPU worker runs it
    run = get_run(runtime.sessions, run.id)
    assert run.status == "running", run.error
    out["scheduled"] = by_id(stored_rows(runtime, run.snapshot))
    finish_run(runtime.sessions, run.id, "cancelled")
    return out


# -- conflicts --------------------------------------------------------------------------------------

def test_a_conflict_is_out_of_every_training_path_until_a_manager_settles_it(parts, env):
    env.setenv("TUESDAY_RETRAIN_SCHEDULE_HOURS", "6")
    runtime, queues, _ = parts
    runtime.settings.retrain_schedule_hours = 6
    add_examples(runtime, 12)
    example = disputed(runtime)

    before = three_snapshots(runtime, queues)
    for path, rows in before.items():
        assert example.key not in rows, path
        assert len(rows) == 12, path
    assert example.key not in {r["id"] for r in curation.holdout_rows(
        runtime.sessions, runtime.task, 0.5, approval_required=False)}

    curation.settle(runtime.sessions, example.id, label="billing_dispute", reason="They dispute the premium.",
                    by="cli:lee", labels=runtime.task.labels)

    after = three_snapshots(runtime, queues)
    for path, rows in after.items():
        assert len(rows) == 13, path
        row = rows[example.key]
        assert (row["label"], row["reason"]) == ("billing_dispute", "They dispute the premium."), path
    with runtime.sessions() as session:  # the clicks stay as they were
        assert [(f.user_id, f.label) for f in session.scalars(select(Feedback).order_by(Feedback.id))] == [
            ("U1", "claim_status"), ("U2", "billing_dispute")]


def test_the_conflicts_list_shows_labels_who_and_why_and_a_manager_settles_in_the_modal(parts, fake_slack):
    runtime, _, client = parts
    example = disputed(runtime)

    assert "only Tuesday's managers" in slash(client, AGENT, "conflicts")["text"]
    reply = slash(client, MANAGER, "conflicts")
    assert "1 open conflict" in reply["text"]
    [item] = [b for b in reply["blocks"] if b.get("accessory")]
    text = item["text"]["text"]
    assert "*<" not in text and "*Where is my claim?*" in text and "“Filed last week, any news?”" in text
    assert f"• `claim_status`: <@U1> — _{ANN_WHY}_" in text
    assert "• `billing_dispute`: <@U2> — _Disputes the premium, mail [EMAIL]_" in text  # masked when clicked
    assert item["accessory"]["action_id"] == SETTLE and item["accessory"]["value"] == str(example.id)

    # a non-manager's click opens nothing
    assert post_slack(client, button(SETTLE, str(example.id), AGENT)).status_code == 200
    [refused] = told(fake_slack, 1)
    assert refused["user"] == AGENT and "only Tuesday's managers" in refused["text"]
    assert fake_slack.calls_to("views.open") == []

    assert post_slack(client, button(SETTLE, str(example.id), MANAGER)).status_code == 200
    [opened] = [c["body"] for c in wait_for(lambda: fake_slack.calls_to("views.open"))]
    assert opened["trigger_id"] == "9.8.7"
    view = opened["view"]
    assert view["callback_id"] == SETTLE_MODAL
    assert json.loads(view["private_metadata"]) == {"example_id": example.id, "channel": CHANNEL}
    [select_block] = [b for b in view["blocks"] if b.get("block_id") == SETTLE_LABEL]
    values = [o["value"] for o in select_block["element"]["options"]]
    assert values[:2] == ["claim_status", "billing_dispute"] and sorted(values) == sorted(runtime.task.label_names)
    assert f"<@U1> — _{ANN_WHY}_" in view["blocks"][0]["text"]["text"]

    # a submission by someone who is not a manager (the form forwarded, say) settles nothing
    assert post_slack(client, settle_submission(view, "claim_status", "Because.", AGENT)).status_code == 200
    assert "only Tuesday's managers" in told(fake_slack, 2)[1]["text"]
    assert the_example(runtime, "ticket-1").conflicted

    reason = "They dispute the premium, see ann@example.com"
    response = post_slack(client, settle_submission(view, "billing_dispute", reason, MANAGER))
    assert response.status_code == 200 and response.text == ""  # an empty answer closes the modal
    confirmation = told(fake_slack, 3)[2]
    assert confirmation["user"] == MANAGER and "Settled ticket 1 as `billing_dispute`" in confirmation["text"]
    settled = the_example(runtime, "ticket-1")
    assert not settled.conflicted and settled.label == "billing_dispute" and settled.settled_at is not None
    assert (settled.settled_by, settled.settled_reason) == (f"slack:{MANAGER}", "They dispute the premium, see [EMAIL]")
    [entry] = audit.entries(runtime.sessions, action="conflict.settle")
    assert (entry["actor"], entry["target"]) == (f"slack:{MANAGER}", "ticket 1")
    assert entry["detail"]["label"] == "billing_dispute" and entry["detail"]["before"] == "claim_status"
    assert entry["detail"]["reason"] == "They dispute the premium, see [EMAIL]"
    with runtime.sessions() as session:
        assert len(session.scalars(select(Feedback)).all()) == 2  # the clicks stay

    assert slash(client, MANAGER, "conflicts")["text"].startswith("No open conflicts")
    post_slack(client, settle_submission(view, "claim_status", "Second thoughts.", MANAGER))
    assert "settled already" in told(fake_slack, 4)[3]["text"]
    assert the_example(runtime, "ticket-1").label == "billing_dispute"
    assert len(audit.entries(runtime.sessions, action="conflict.settle")) == 1


def test_a_settlement_needs_a_label_of_the_task_and_a_reason(parts):
    runtime, _, _ = parts
    example = disputed(runtime)
    with pytest.raises(curation.CurationError, match="needs a reason"):
        curation.settle(runtime.sessions, example.id, label="claim_status", reason="  ", by="cli:lee",
                        labels=runtime.task.labels)
    with pytest.raises(Exception, match="not a label of this task"):
        curation.settle(runtime.sessions, example.id, label="refunds", reason="Yes.", by="cli:lee",
                        labels=runtime.task.labels)
    add_examples(runtime, 1)
    with pytest.raises(curation.NotConflicted):
        curation.settle(runtime.sessions, the_example(runtime, "0").id, label="claim_status", reason="Yes.",
                        by="cli:lee", labels=runtime.task.labels)
    assert the_example(runtime, "ticket-1").conflicted and audit.entries(runtime.sessions) == []


def test_a_click_against_the_verdict_opens_the_conflict_again(parts):
    runtime, _, _ = parts
    example = disputed(runtime)
    curation.settle(runtime.sessions, example.id, label="billing_dispute", reason="The premium.", by="cli:lee",
                    labels=runtime.task.labels)
    sid = 1
    labels = runtime.task.labels
    record_feedback(runtime.sessions, suggestion_id=sid, action="change", label="billing_dispute", user_id="U3",
                    labels=labels)  # agrees with the verdict: nothing changes
    assert not the_example(runtime, "ticket-1").conflicted

    record_feedback(runtime.sessions, suggestion_id=sid, action="change", label="hand_off", user_id="U4",
                    labels=labels)
    reopened = the_example(runtime, "ticket-1")
    assert reopened.conflicted and reopened.label == "billing_dispute"
    assert (reopened.settled_by, reopened.settled_at, reopened.settled_reason) == (None, None, None)
    assert json.loads(reopened.conflict_labels) == ["billing_dispute", "claim_status", "hand_off"]
    assert example.key not in {r["id"] for r in curation.training_data(runtime.sessions, runtime.task,
                                                                        approval_required=False).rows}
    [entry] = audit.entries(runtime.sessions, action="conflict.settle")  # the earlier verdict stays on record
    assert entry["detail"]["label"] == "billing_dispute"
    conflicts, total = curation.open_conflicts(runtime.sessions)
    assert total == 1 and [d["user_id"] for d in conflicts[0]["decisions"]] == ["U1", "U2", "U3", "U4"]


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
    assert queues.fetch(train_job_id(run.id)).kwargs["data_approval"] == approval.id
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
