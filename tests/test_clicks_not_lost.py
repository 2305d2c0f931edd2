"""No click is acknowledged and dropped: with the store down the clicker is told it was not saved, and the Reject
modal validates and records before it closes (signed Slack requests, a real store and Redis, Slack faked at HTTP)."""

import json

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from bot.slack.blocks import ACCEPT, REJECT
from tests.clicks import (  # noqa: F401  (fixtures)
    CHANNEL,
    click,
    env,
    fake_slack,
    fake_zendesk,
    feedback_rows,
    parts,
    post_slack,
    posted,
    submission,
    updates,
    wait_for,
)


def store_down(runtime):
    """Point the runtime at a database that went away; returns a function that brings the store back."""
    sessions = runtime.sessions
    down = create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/test", connect_args={"connect_timeout": 1})
    runtime.__dict__["sessions"] = sessionmaker(down, expire_on_commit=False)
    return lambda: runtime.__dict__.__setitem__("sessions", sessions)


def test_a_click_while_the_store_is_down_is_told_to_the_clicker_not_dropped(parts, fake_slack):
    runtime, _, client = parts
    sid = posted(runtime)
    back = store_down(runtime)
    assert post_slack(client, click(sid, ACCEPT)).status_code == 200  # Slack's 3 s: acknowledged
    [told] = [c["body"] for c in wait_for(lambda: fake_slack.calls_to("chat.postEphemeral"))]
    assert (told["channel"], told["user"]) == (CHANNEL, "U123")
    assert "Not recorded" in told["text"] and "click again" in told["text"]
    assert fake_slack.calls_to("chat.update") == []  # the message does not claim a decision
    back()
    assert feedback_rows(runtime) == []
    assert post_slack(client, click(sid, ACCEPT)).status_code == 200  # clicking again records it
    updates(fake_slack, 1)
    assert [(r.action, r.label) for r in feedback_rows(runtime)] == [("accept", "claim_status")]


def _reject_view(client, fake_slack, sid: int) -> dict:
    assert post_slack(client, click(sid, REJECT)).status_code == 200
    return wait_for(lambda: fake_slack.calls_to("views.open"))[-1]["body"]["view"]


def test_the_reject_modal_refuses_the_suggested_label_and_a_down_store_without_closing(parts, fake_slack):
    runtime, _, client = parts
    sid = posted(runtime, label="claim_status")
    view = _reject_view(client, fake_slack, sid)

    same = post_slack(client, submission(view, "claim_status", "it is right after all"))
    assert same.status_code == 200 and same.json()["response_action"] == "errors"  # the modal stays open
    assert "claim_status is what Tuesday suggested" in same.json()["errors"]["label"]

    back = store_down(runtime)
    down = post_slack(client, submission(view, "billing_dispute", None))
    assert down.json()["response_action"] == "errors" and "Not saved" in down.json()["errors"]["label"]
    back()
    assert feedback_rows(runtime) == []

    saved = post_slack(client, submission(view, "billing_dispute", None))
    assert saved.status_code == 200 and saved.text == ""  # recorded, then closed
    assert [(r.action, r.label) for r in feedback_rows(runtime)] == [("reject", "billing_dispute")]
    [update] = updates(fake_slack, 1)
    assert json.dumps(update["blocks"]).count("billing_dispute") >= 1
