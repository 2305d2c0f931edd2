"""Only the right people teach it: clicks from people who are not labellers are held until a manager approves them.

Signed Slack clicks against the real app, a real store and Redis; Slack faked at HTTP (with user groups)."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.lifecycle.runs import labels_since_last_training
from bot.monitor.alerts import LABEL_FLOOD
from bot.monitor.rules import evaluate
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.blocks import ACCEPT, CHANGE
from bot.slack.listeners.commands import answer
from bot.slack.roles import Labellers
from bot.store.audit import entries
from bot.store.base import utc_now
from bot.store.feedback import APPROVED, HELD, LABELLER, REJECTED, Feedback, record_feedback
from bot.store.runs import RetrainRun
from bot.trail import labellers
from bot.trail.curation import holdout_rows
from bot.web.app import create_app
from tests.clicks import (  # noqa: F401  (fixtures)
    CHANNEL,
    click,
    context_lines,
    env,
    examples,
    fake_zendesk,
    feedback_rows,
    post_slack,
    posted,
    updates,
    wait_for,
)
from tests.slash import GroupSlack

GROUP, LEAD, MANAGER, STRANGER = "S0LABELLERS", "U0LEAD", "U0MANAGER", "U123"


@pytest.fixture
def fake_slack():
    slack = GroupSlack({GROUP: [LEAD]}).start()
    yield slack
    slack.stop()


@pytest.fixture
def default_parts(env, monkeypatch):
    """A deployment as it ships: TUESDAY_LABELLERS unset (managers and admins label), a manager, a retrain at 1 label."""
    monkeypatch.delenv("TUESDAY_LABELLERS")
    monkeypatch.setenv("TUESDAY_MANAGERS", MANAGER)
    monkeypatch.setenv("TUESDAY_RETRAIN_AFTER_LABELS", "1")
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    yield runtime, queues, TestClient(create_app(runtime, queues))
    queues.close()


def ephemerals(fake_slack) -> list[dict]:
    return [c["body"] for c in fake_slack.calls_to("chat.postEphemeral")]


def test_a_click_from_someone_not_a_labeller_is_held_shown_and_never_trained_on(default_parts, fake_slack):
    runtime, queues, client = default_parts
    sid = posted(runtime)
    assert post_slack(client, click(sid, CHANGE, selected=f"{sid}:policy_change")).status_code == 200
    [update] = updates(fake_slack, 1)
    assert any("Changed to `policy_change`" in line and "held until a manager approves" in line
               for line in context_lines(update["blocks"]))
    [row] = feedback_rows(runtime)
    assert (row.user_id, row.label, row.trust) == (STRANGER, "policy_change", HELD)
    assert examples(runtime) == []  # no training example, hence nothing in a snapshot or the holdout
    assert labels_since_last_training(runtime) == 0
    with runtime.sessions() as session:  # retrain_after_labels=1, yet the held click started nothing
        assert session.scalar(select(RetrainRun)) is None
    [told] = wait_for(lambda: ephemerals(fake_slack))
    assert told["user"] == STRANGER and "once a manager approves" in told["text"]

    second = posted(runtime, external_id="T-2")
    post_slack(client, click(second, ACCEPT))
    updates(fake_slack, 2)
    assert len(ephemerals(fake_slack)) == 1  # told once, at the first click waiting, not at every click


def test_a_managers_click_trains_at_once(default_parts, fake_slack):
    runtime, _, client = default_parts
    sid = posted(runtime)
    post_slack(client, click(sid, ACCEPT, uid=MANAGER, name="mia"))
    updates(fake_slack, 1)
    assert [r.trust for r in feedback_rows(runtime)] == [LABELLER]
    assert [(e.label, e.external_id) for e in examples(runtime)] == [("claim_status", "ticket-1")]
    assert ephemerals(fake_slack) == []


def test_a_member_of_a_labeller_group_labels_and_others_are_held(env, monkeypatch, fake_slack):
    monkeypatch.setenv("TUESDAY_LABELLERS", GROUP)
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    client = TestClient(create_app(runtime, queues))
    try:
        first, second = posted(runtime), posted(runtime, external_id="T-2")
        post_slack(client, click(first, ACCEPT, uid=LEAD, name="lee"))
        post_slack(client, click(second, ACCEPT))
        updates(fake_slack, 2)
    finally:
        queues.close()
    assert {r.user_id: r.trust for r in feedback_rows(runtime)} == {LEAD: LABELLER, STRANGER: HELD}
    assert [e.external_id for e in examples(runtime)] == ["ticket-1"]


def test_everyone_is_a_choice_that_trains_every_click(default_parts, fake_slack, monkeypatch):
    monkeypatch.setenv("TUESDAY_LABELLERS", "everyone")
    assert Labellers(Settings()).trusts(None, STRANGER)  # no Slack call needed
    monkeypatch.setenv("TUESDAY_LABELLERS", "")
    assert not Labellers(Settings()).trusts(None, STRANGER)


def test_a_group_lookup_that_times_out_holds_the_click_and_members_are_cached(env, monkeypatch, fake_slack):
    from slack_sdk import WebClient

    monkeypatch.setenv("TUESDAY_LABELLERS", GROUP)
    now = [0.0]
    who = Labellers(Settings(), clock=lambda: now[0])
    slack = WebClient(token="xoxb-test-token", base_url=fake_slack.url)
    assert who.trusts(slack, LEAD) and not who.trusts(slack, STRANGER)
    assert len(fake_slack.calls_to("usergroups.users.list")) == 1  # the second click read the kept members
    fake_slack.group_delay_s = 3.0
    now[0] = Labellers.GROUP_TTL_S + 1
    assert not who.trusts(slack, LEAD)  # Slack did not answer within a second: held, not trusted


def _held_clicks(runtime, labels: list[str], user: str = STRANGER, prefix: str = "H") -> list[int]:
    sids = [posted(runtime, external_id=f"{prefix}-{n}") for n in range(len(labels))]
    for sid, label in zip(sids, labels):
        record_feedback(runtime.sessions, suggestion_id=sid, action="change", label=label, user_id=user,
                        user_name="jane", labels=runtime.task.labels, trusted=False)
    return sids


def test_a_manager_approves_held_clicks_and_they_become_training_data(default_parts, fake_slack):
    runtime, queues, _ = default_parts
    _held_clicks(runtime, ["policy_change", "billing_dispute"])
    assert examples(runtime) == []
    listing = answer(runtime, queues, None, MANAGER, "labellers")
    assert f"<@{STRANGER}>: 2 clicks" in listing and "managers and admins" in listing

    refused = answer(runtime, queues, None, STRANGER, f"labellers approve <@{STRANGER}|jane>")
    assert refused.startswith(":no_entry:") and examples(runtime) == []  # not a manager

    said = answer(runtime, queues, None, MANAGER, f"labellers approve <@{STRANGER}|jane>")
    assert said.startswith("2 of <@U123>'s held clicks approved")
    assert sorted(e.label for e in examples(runtime)) == ["billing_dispute", "policy_change"]
    assert {(r.trust, r.trust_by) for r in feedback_rows(runtime)} == {(APPROVED, f"slack:{MANAGER}")}
    [entry] = entries(runtime.sessions, action="labels")
    assert (entry["action"], entry["target"], entry["detail"]["clicks"]) == ("labels.approve", STRANGER, 2)
    assert "No clicks are held" in answer(runtime, queues, None, MANAGER, "labellers")


def test_rejected_clicks_never_train_and_poisoned_labels_stay_out_of_the_holdout(default_parts, fake_slack):
    runtime, queues, _ = default_parts
    _held_clicks(runtime, ["policy_change"] * 6)
    said = answer(runtime, queues, None, MANAGER, "labellers reject all")
    assert said.startswith("6 of everyone's held clicks rejected")
    assert {r.trust for r in feedback_rows(runtime)} == {REJECTED} and examples(runtime) == []
    assert holdout_rows(runtime.sessions, runtime.task, 0.5, approval_required=False) == []
    with pytest.raises(labellers.LabellerError):
        labellers.decide_held(runtime.sessions, "all", approve=True, by="cli:ann")  # nothing is held any more


def test_an_approved_click_conflicting_with_a_labellers_label_is_a_conflict(default_parts, fake_slack):
    runtime, _, _ = default_parts
    sid = posted(runtime)
    record_feedback(runtime.sessions, suggestion_id=sid, action="accept", label=None, user_id=MANAGER,
                    labels=runtime.task.labels)
    record_feedback(runtime.sessions, suggestion_id=sid, action="change", label="policy_change", user_id=STRANGER,
                    labels=runtime.task.labels, trusted=False)
    [example] = examples(runtime)
    assert not example.conflicted  # a held click neither labels nor conflicts
    labellers.decide_held(runtime.sessions, STRANGER, approve=True, by="cli:ann")
    [example] = examples(runtime)
    assert example.conflicted and example.label == "claim_status"  # the first label kept, out of training


def test_each_persons_clicks_corrections_and_agreement(default_parts, fake_slack):
    runtime, _, _ = default_parts
    a, b, c = posted(runtime), posted(runtime, external_id="T-2"), posted(runtime, external_id="T-3")
    labels = runtime.task.labels
    for sid, user, label in [(a, "U1", "policy_change"), (a, "U2", "policy_change"), (b, "U1", "policy_change"),
                             (b, "U2", "billing_dispute"), (c, "U1", None)]:
        record_feedback(runtime.sessions, suggestion_id=sid, action="accept" if label is None else "change",
                        label=label, user_id=user, labels=labels)
    now = utc_now()
    rows = {r["user_id"]: r for r in labellers.people(runtime.sessions, now - timedelta(days=1), now)}
    assert (rows["U1"]["clicks"], rows["U1"]["corrections"], rows["U1"]["compared"]) == (3, 2, 2)
    assert rows["U1"]["agreement"] == 0.5 and rows["U2"]["agreement"] == 0.5
    assert rows["U1"]["held"] == 0 and rows["U1"]["trains"] == 3


def test_a_flood_of_changes_from_one_person_raises_an_alert(default_parts, fake_slack, monkeypatch):
    runtime, _, _ = default_parts
    monkeypatch.setenv("TUESDAY_ALERT_FLOOD_CHANGES", "5")
    scoped = Runtime(Settings())
    _held_clicks(scoped, ["policy_change"] * 5)
    assert [f for f in evaluate(scoped, utc_now()) if f.kind == LABEL_FLOOD] == []  # 5 is not above 5
    _held_clicks(scoped, ["policy_change"], prefix="late")
    [flood] = [f for f in evaluate(scoped, utc_now()) if f.kind == LABEL_FLOOD]
    assert flood.key == STRANGER and flood.measures["corrections"] == 6 and flood.measures["held"] == 6
    assert "labellers reject <@U123>" in flood.message
    # An hour later the flood is over: the rule no longer holds.
    assert [f for f in evaluate(scoped, utc_now() + timedelta(hours=2)) if f.kind == LABEL_FLOOD] == []


def test_the_dashboard_shows_each_persons_numbers(default_parts, fake_slack, monkeypatch):
    from urllib.parse import urlsplit

    from bot.monitor.pages import dashboard_link

    runtime, queues, _ = default_parts
    monkeypatch.setenv("TUESDAY_LINK_SECRET", "people-link-secret")
    monkeypatch.setenv("TUESDAY_PUBLIC_URL", "https://tuesday.example.test")
    settings = Settings()
    runtime = Runtime(settings)
    _held_clicks(runtime, ["policy_change"] * 3)
    record_feedback(runtime.sessions, suggestion_id=posted(runtime, external_id="M-1"), action="accept", label=None,
                    user_id=MANAGER, user_name="mia", labels=runtime.task.labels)
    url = urlsplit(dashboard_link(runtime, "people"))
    page = TestClient(create_app(runtime, queues)).get(f"{url.path}?{url.query}")
    assert page.status_code == 200, page.text
    html = page.text
    jane = html[html.index("<td>jane</td>"):].split("</tr>")[0]
    assert [cell.split(">")[-1] for cell in jane.split("</td>")[1:6]] == ["3", "3", "0", "3", "–"]
    assert "<td>mia</td>" in html and "managers and admins" in html
