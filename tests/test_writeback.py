"""Accepted labels written back to the helpdesk through the outbox and the writeback worker; Zendesk faked at HTTP."""

import base64

import httpx
import pytest

from bot.helpdesk.adapters import HelpdeskError, HelpdeskRefused, ZendeskAdapter, label_tag
from bot.helpdesk.delivery import DELIVER_JOB, deliver_job, delivery_job_id
from bot.helpdesk.outbox import recording_outbox
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.blocks import ACCEPT, CHANGE
from bot.store.feedback import record_feedback
from bot.store.tickets import Ticket
from bot.worker.jobs import worker as tuesday_worker
from tests.clicks import (  # noqa: F401  (fixtures)
    CHANNEL,
    SIGNING_SECRET,
    TS,
    ZENDESK_EMAIL,
    ZENDESK_TOKEN,
    click,
    context_lines,
    env,
    examples,
    fake_slack,
    fake_zendesk,
    feedback_rows,
    flushed_redis,
    outbox_rows,
    parts,
    post_slack,
    posted,
    slack_sign,
    submission,
    updates,
    user,
    wait_for,
)

# -- helpdesk write-back ----------------------------------------------------------------------------

def test_zendesk_write_back_adds_a_tag_and_an_internal_note_through_the_worker(parts, fake_slack, fake_zendesk):
    runtime, queues, client = parts
    sid = posted(runtime, source="zendesk", external_id="5158")
    fake_zendesk.tags["5158"] = ["vip", "auto"]
    assert post_slack(client, click(sid, ACCEPT)).status_code == 200
    updates(fake_slack, 1)
    [row] = feedback_rows(runtime)
    [outbox] = outbox_rows(runtime)  # stored with the click, delivered by a job on its own queue
    assert (outbox.feedback_id, outbox.status, outbox.attempts) == (row.id, "pending", 0)
    job = wait_for(lambda: queues.fetch(delivery_job_id(outbox.id, 1)))
    assert (job.func_name, job.args, job.origin) == (DELIVER_JOB, [outbox.id, 1], "writeback")
    assert queues.suggest.count == 0 and fake_zendesk.requests == []  # nothing is written inside the click

    tuesday_worker(queues, ["writeback"]).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    assert (job.return_value()["attempted"], job.return_value()["status"]) == (True, "delivered")
    tags, note = fake_zendesk.requests
    auth = "Basic " + base64.b64encode(f"{ZENDESK_EMAIL}/token:{ZENDESK_TOKEN}".encode()).decode()
    assert (tags["method"], tags["path"], tags["body"]) == ("PUT", "/api/v2/tickets/5158/tags.json",
                                                            {"tags": ["tuesday_claim_status"]})
    assert tags["headers"]["Authorization"] == auth and note["headers"]["Authorization"] == auth
    assert (note["method"], note["path"]) == ("PUT", "/api/v2/tickets/5158.json")
    comment = note["body"]["ticket"]["comment"]
    assert comment["public"] is False
    assert comment["body"].startswith("Tuesday triage label: claim_status\njane accepted in Slack.")
    assert fake_zendesk.tags["5158"] == ["vip", "auto", "tuesday_claim_status"]  # added, nothing replaced
    [outbox] = outbox_rows(runtime)
    assert (outbox.status, outbox.attempts) == ("delivered", 1)


def test_a_conflicting_label_is_not_written_back(parts, fake_slack):
    runtime, queues, client = parts
    sid = posted(runtime, source="zendesk", external_id="77")
    post_slack(client, click(sid, ACCEPT, uid="U1"))
    updates(fake_slack, 1)
    post_slack(client, click(sid, CHANGE, uid="U2", selected=f"{sid}:policy_change"))
    updates(fake_slack, 2)
    first, later = feedback_rows(runtime)
    assert later.conflict
    [outbox] = outbox_rows(runtime)
    assert outbox.feedback_id == first.id
    assert queues["writeback"].job_ids == [delivery_job_id(outbox.id, 1)]


def test_without_zendesk_settings_a_click_stores_no_write_back(env, monkeypatch, fake_zendesk, task):
    monkeypatch.setenv("TUESDAY_ZENDESK_URL", "")
    runtime = Runtime(Settings())
    sid = posted(runtime, source="zendesk", external_id="9")
    record_feedback(recording_outbox(runtime.sessions, lambda source: False), suggestion_id=sid, action="accept",
                    label=None, user_id="U1", labels=task.labels)
    assert outbox_rows(runtime) == []


def test_a_write_back_on_a_worker_without_zendesk_settings_waits_for_them(env, monkeypatch, fake_zendesk, task):
    runtime = Runtime(Settings())
    sid = posted(runtime, source="zendesk", external_id="9")
    record_feedback(recording_outbox(runtime.sessions, lambda source: True), suggestion_id=sid, action="accept",
                    label=None, user_id="U1", labels=task.labels)
    [outbox] = outbox_rows(runtime)
    monkeypatch.setenv("TUESDAY_ZENDESK_URL", "")  # this worker was started without them
    result = deliver_job(outbox.id, 1)
    assert (result["attempted"], result["status"]) == (True, "pending")
    assert "no write-back configured for zendesk tickets" in result["error"]
    assert fake_zendesk.requests == []


def test_zendesk_answers_are_told_apart_into_retry_later_and_give_up(fake_zendesk):
    ticket = Ticket(id=1, source="zendesk", external_id="12", text="x")
    with httpx.Client() as http:
        wrong_token = ZendeskAdapter(fake_zendesk.url, ZENDESK_EMAIL, "wrong-token", http)
        with pytest.raises(HelpdeskError, match="401") as refused:  # an admin can fix the token meanwhile
            wrong_token.write_back(ticket, "claim_status", "because")
        assert not isinstance(refused.value, HelpdeskRefused)
        adapter = ZendeskAdapter(fake_zendesk.url, ZENDESK_EMAIL, ZENDESK_TOKEN, http)
        with pytest.raises(HelpdeskRefused, match="not a Zendesk ticket id"):
            adapter.write_back(Ticket(id=2, source="zendesk", external_id="12/../../users", text="x"), "a", "b")
        fake_zendesk.fail_next(429, {"Retry-After": "7"})
        with pytest.raises(HelpdeskError, match="429") as limited:
            adapter.write_back(ticket, "claim_status", "because")
        assert limited.value.retry_after == 7.0 and not isinstance(limited.value, HelpdeskRefused)
        fake_zendesk.fail_next(503)
        with pytest.raises(HelpdeskError, match="503") as unavailable:
            adapter.write_back(ticket, "claim_status", "because")
        assert unavailable.value.retry_after is None and not isinstance(unavailable.value, HelpdeskRefused)
        fake_zendesk.fail_next(422)
        with pytest.raises(HelpdeskRefused, match="422"):
            adapter.write_back(ticket, "claim_status", "because")
    assert label_tag("Claim Status / EU") == "tuesday_claim_status_eu"
