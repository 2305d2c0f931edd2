"""Two fields in one deployment, end to end: one suggest job, one message, a click on one field, per-task
rollback and retrain (the demo's topic and urgency; real tiny models, Redis, SQL; Slack faked at HTTP)."""

import json

import pytest
from sqlalchemy import select

from bot.lifecycle.runs import request_retrain
from bot.slack.blocks import CHANGE, option_value
from bot.slack.fields import ACCEPT_ALL
from bot.store.runs import active_runs
from bot.store.tickets import Suggestion
from bot.worker.jobs import worker as tuesday_worker
from inference.task import demo_task_path, load_tasks
from tests.clicks import click, examples, feedback_rows, parts, post_slack, updates  # noqa: F401 (fixtures)
from tests.clicks import env, fake_slack, fake_zendesk  # noqa: F401
from tests.conftest import TINY_CONFIG
from tests.test_suggest import copy_version
from tests.tickets import stored_ticket

pytestmark = pytest.mark.slow

TASKS = load_tasks(demo_task_path())


@pytest.fixture(autouse=True)
def demo_deployment(two_tasks):
    """Every test here runs the demo deployment's two fields."""


@pytest.fixture(scope="module")
def urgency_version(tiny_base, tiny_bert, demo_rows, tmp_path_factory):
    """A tiny model of the demo's second field, trained on the rows labelled for it."""
    from inference.registry import Registry
    from inference.splits import in_holdout
    from trainer.config import TrainConfig
    from trainer.pipeline import build_version

    rows = [{**r, "label": r["urgency"]} for r in demo_rows if r.get("urgency")]
    train = [r for r in rows if not in_holdout(r["text"])]
    holdout = [r for r in rows if in_holdout(r["text"])]
    registry = Registry.local(tmp_path_factory.mktemp("urgency"))
    return build_version(registry, TASKS["urgency"], tiny_base[1], train, holdout, TrainConfig(**TINY_CONFIG),
                         encoder_base=tiny_bert, progress=False, log=lambda _: None)


@pytest.fixture
def two_fields(parts, trained_version, urgency_version):  # noqa: F811
    """Each field's production model in the runtime's registry: topic v1, urgency v2."""
    runtime, queues, client = parts
    registry = runtime.registry
    topic = copy_version(registry, trained_version[1], {"handoff_threshold": 0.0, "abstain_threshold": 0.0})
    urgency = copy_version(registry, urgency_version, {"abstain_threshold": 0.0})
    runtime.production.switch(topic.name, by="test", reason="fixture")
    runtime.for_task("urgency").production.switch(urgency.name, by="test", reason="fixture")
    return runtime, queues, client, topic.name, urgency.name


def suggest_through_the_worker(runtime, queues, external_id: str, subject: str, text: str):
    """A stored ticket, its suggest job queued and run by a real worker; returns the ticket."""
    ticket, _ = stored_ticket(runtime.sessions, source="generic", external_id=external_id, subject=subject, text=text)
    queues.enqueue_suggest(ticket.id)
    tuesday_worker(queues, ["suggest"]).work(burst=True)
    return ticket


def rows_of(runtime) -> dict[str, Suggestion]:
    with runtime.sessions() as session:
        return {row.task: row for row in session.scalars(select(Suggestion).order_by(Suggestion.id))}


def test_one_job_suggests_every_field_in_one_message(two_fields, fake_slack):  # noqa: F811
    runtime, queues, client, topic, urgency = two_fields
    ticket = suggest_through_the_worker(runtime, queues, "T-9", "Water in the basement",
                                        "Our basement flooded last night and the furnace is under water. Policy HM-1.")

    [call] = fake_slack.calls_to("chat.postMessage")
    rows = rows_of(runtime)
    assert set(rows) == {"topic", "urgency"}
    assert (rows["topic"].model_version, rows["urgency"].model_version) == (topic, urgency)
    assert rows["urgency"].label in TASKS["urgency"].labels and rows["topic"].label in TASKS["topic"].labels
    assert rows["topic"].slack_ts is not None and rows["urgency"].slack_ts == rows["topic"].slack_ts
    text = json.dumps(call["body"]["blocks"], ensure_ascii=False)
    assert f"*urgency*: `{rows['urgency'].label}`" in text and f"models topic {topic} · urgency {urgency}" in text
    assert call["body"]["text"].startswith(f"Suggested topic {rows['topic'].label}, urgency {rows['urgency'].label}")
    # /metrics: each task's series under its own name
    from tests.test_dashboard import families

    m = families(client.get("/metrics").text)
    live = {(s.labels["task"], s.labels["version"]) for s in m["tuesday_production_info"].samples}
    assert live == {("topic", topic), ("urgency", urgency)}
    made = {(s.labels["task"], s.labels["version"]) for s in m["tuesday_suggestions"].samples
            if s.name == "tuesday_suggestions_total"}
    assert made == {("topic", topic), ("urgency", urgency)}
    # a retried job posts nothing twice and predicts nothing again
    queues.enqueue_suggest(ticket.id)
    tuesday_worker(queues, ["suggest"]).work(burst=True)
    again = {task: row.id for task, row in rows_of(runtime).items()}
    assert len(fake_slack.calls_to("chat.postMessage")) == 1 and again == {task: row.id for task, row in rows.items()}


def test_a_click_on_one_field_labels_that_task_only(two_fields, fake_slack):  # noqa: F811
    runtime, queues, client, topic, urgency = two_fields
    suggest_through_the_worker(runtime, queues, "T-10", "Refund",
                               "You charged me twice this month, please refund one of the payments.")
    rows = rows_of(runtime)
    other = next(label for label in TASKS["urgency"].labels if label != rows["urgency"].label)

    change = click(rows["topic"].id, CHANGE, selected=option_value(rows["urgency"].id, other))
    assert post_slack(client, change).status_code == 200
    [update] = updates(fake_slack, 1)
    [decision] = feedback_rows(runtime)
    assert (decision.task, decision.action, decision.label) == ("urgency", "change", other)
    assert [(e.task, e.label) for e in examples(runtime)] == [("urgency", other)]  # partial labelling: topic untouched
    text = json.dumps(update["blocks"], ensure_ascii=False)
    assert f"Changed to `{other}`" in text and any(b["type"] == "actions" for b in update["blocks"])  # more to do

    # Accept all now accepts what is left (topic), not the field already decided
    assert post_slack(client, click(rows["topic"].id, ACCEPT_ALL)).status_code == 200
    updates(fake_slack, 2)
    decided = [(f.task, f.action, f.label) for f in feedback_rows(runtime)]
    assert decided == [("urgency", "change", other), ("topic", "accept", rows["topic"].label)]
    assert sorted((e.task, e.label) for e in examples(runtime)) == sorted([("urgency", other),
                                                                           ("topic", rows["topic"].label)])


def test_rollback_and_retrain_of_one_task_leave_the_other_alone(two_fields, redis_url):  # noqa: F811
    runtime, queues, client, topic, urgency = two_fields
    scoped = runtime.for_task("urgency")
    newer = copy_version(runtime.registry, scoped.registry.fetch_all(urgency))
    scoped.production.switch(newer.name, by="test", reason="better", expect=urgency)
    assert scoped.production.statuses() == {urgency: "retired", newer.name: "production"}
    from bot.lifecycle.runs import rollback

    rollback(scoped.production, urgency, by="slack:U0ADMIN")
    assert (runtime.production.name(), scoped.production.name()) == (topic, urgency)
    assert [e["version"] for e in runtime.production.history()] == [topic]  # topic's history has no urgency switch

    # one active run per task: a retrain of urgency does not block one of topic
    urgency_run, created = request_retrain(scoped, queues, requested_by="U1", trigger="command")
    topic_run, created_too = request_retrain(runtime, queues, requested_by="U1", trigger="command")
    assert created and created_too and (urgency_run.task, topic_run.task) == ("urgency", "topic")
    assert {run.active for run in active_runs(runtime.sessions)} == {"urgency", "topic"}
    again, created = request_retrain(scoped, queues, requested_by="U2", trigger="command")
    assert not created and again.id == urgency_run.id


def test_each_decided_field_is_written_back_where_its_task_goes(parts, fake_zendesk, monkeypatch):  # noqa: F811
    from types import SimpleNamespace

    from bot.helpdesk.delivery import deliver_job
    from bot.store.tickets import add_suggestion, set_slack_message
    from tests.clicks import CHANNEL, TS, outbox_rows

    monkeypatch.setenv("TUESDAY_HELPDESK_FIELDS", "urgency=field:360001234")
    runtime, queues, client = parts
    ticket, _ = stored_ticket(runtime.sessions, source="zendesk", external_id="5158", subject="Charged twice",
                           text="You charged my card twice this month.")
    rows = {}
    with runtime.sessions() as session:
        for task, label in (("topic", "billing_dispute"), ("urgency", "soon")):
            prediction = SimpleNamespace(label=label, confidence=0.9, reason="", probabilities={label: 0.9},
                                         model_version="v1", latency_ms=1.0)
            rows[task] = add_suggestion(session, ticket.id, prediction, task=task, threshold=0.5)
            set_slack_message(session, rows[task].id, CHANNEL, TS)
    assert post_slack(client, click(rows["topic"].id, ACCEPT_ALL)).status_code == 200
    from tests.clicks import wait_for

    outbox = wait_for(lambda: len(outbox_rows(runtime)) == 2 and outbox_rows(runtime))
    assert sorted((o.task, o.label) for o in outbox) == [("topic", "billing_dispute"), ("urgency", "soon")]
    monkeypatch.setenv("TUESDAY_HELPDESK_FIELDS", "urgncy=field:360001234")  # a mistyped task: told, retried later
    refused = deliver_job(outbox[0].id, 1)
    assert refused["status"] == "pending" and "names urgncy, not a task of this deployment" in refused["error"]
    assert fake_zendesk.requests == []
    monkeypatch.setenv("TUESDAY_HELPDESK_FIELDS", "urgency=field:360001234")
    for row in outbox:
        attempt = 2 if row.id == outbox[0].id else 1
        assert deliver_job(row.id, attempt)["status"] == "delivered"
    puts = [(r["path"], r["body"]) for r in fake_zendesk.requests if r["method"] == "PUT"]
    assert ("/api/v2/tickets/5158/tags.json", {"tags": ["tuesday_billing_dispute"]}) in puts  # the routing task: a tag
    assert ("/api/v2/tickets/5158.json", {"ticket": {"custom_fields": [{"id": 360001234, "value": "soon"}]}}) in puts
    notes = [b["ticket"]["comment"]["body"].splitlines()[0] for _, b in puts if "comment" in b.get("ticket", {})]
    assert sorted(notes) == ["Tuesday triage label: billing_dispute", "Tuesday triage urgency: soon"]
    assert not any("urgency" in tag or "soon" in tag for _, b in puts for tag in b.get("tags", []))


def test_a_fields_candidate_runs_in_its_own_shadow_and_is_promoted_on_that_fields_labels(two_fields,
                                                                                          fake_slack):  # noqa: F811
    from click.testing import CliRunner

    from bot.cli.main import main
    from bot.lifecycle.gate import gate_and_route
    from bot.lifecycle.shadow import compare, shadow_state
    from bot.lifecycle.shadow_gate import settle
    from bot.lifecycle.signoff import record_passed
    from bot.store.shadow import ShadowSuggestion

    runtime, queues, client, topic, urgency = two_fields
    scoped = runtime.for_task("urgency")
    candidate = copy_version(runtime.registry, scoped.registry.fetch_all(urgency)).name
    scoped.settings.shadow_min_tickets = 1
    headline = {"n": 40, "accuracy": 0.5, "macro_f1": 0.5, "handoff_recall": None, "escalation_recall": None}
    summary = {"version": candidate, "production": urgency, "metrics": {**headline, "macro_f1": 0.6},
               "production_metrics": headline}
    verdict = gate_and_route(scoped, summary, by="test", note="a retrain of urgency")
    assert (verdict.passed, verdict.promoted, verdict.shadow["status"]) == (True, False, "waiting")
    run = record_passed(scoped, {**summary, "why": verdict.why, "shadow": verdict.shadow}, by="test")
    assert shadow_state(scoped)["version"] == candidate and shadow_state(runtime) is None  # urgency's own shadow
    shown = json.loads(CliRunner().invoke(main, ["shadow", "--json"], catch_exceptions=False).output)
    assert shown["topic"] is None and (shown["urgency"]["version"], shown["urgency"]["task"]) == (candidate, "urgency")

    suggest_through_the_worker(runtime, queues, "T-11", "Storm", "A tree fell on our roof in the storm, water is coming in.")
    rows = rows_of(runtime)
    with runtime.sessions() as session:
        [shadowed] = session.scalars(select(ShadowSuggestion)).all()
    assert (shadowed.suggestion_id, shadowed.version) == (rows["urgency"].id, candidate)  # beside urgency's row
    # topic's decision counts for nothing in urgency's comparison; urgency's own does
    assert post_slack(client, click(rows["topic"].id, ACCEPT_ALL)).status_code == 200
    updates(fake_slack, 1)  # the click is handled once the message is updated
    compared = compare(scoped, candidate)  # agents' final label is urgency's, not topic's newer click
    assert (compared["labelled"], compared["candidate"]["agreed"], compared["production_stats"]["agreed"]) == (1, 1, 1)
    assert settle(runtime)[0]["status"] == "promoted"  # the same model: it agrees as often as production
    assert (runtime.production.name(), scoped.production.name()) == (topic, candidate)
    assert shadow_state(scoped) is None and run.task == "urgency"
