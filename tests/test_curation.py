"""Labels a team can defend: conflicts out of every training path until a manager settles them, and data approval.

Signed Slack requests against the real app, a real store (SQLite and PostgreSQL) and Redis; Slack's
Web API faked at HTTP.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.slack.curation_blocks import SETTLE, SETTLE_LABEL, SETTLE_MODAL
from bot.store import audit
from bot.store.feedback import Feedback, record_feedback
from bot.trail import curation
from tests.clicks import post_slack, wait_for
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
