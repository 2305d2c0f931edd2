"""Shadow mode: a candidate answers live tickets beside production, stored and never posted; the comparison on
agents' decisions; the shadow gate (TUESDAY_SHADOW_MIN_TICKETS). Real SQL, Redis, RQ and the tiny models; Slack's
Web API faked at HTTP; slash commands signed as Slack signs them."""

from __future__ import annotations

import json
import logging
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli.main import main
from bot.lifecycle.jobs import train_job_id
from bot.lifecycle.reports import APPROVE
from bot.lifecycle.retrain import conclude_run
from bot.lifecycle.shadow import FAILED, better_or_equal, compare, comparison_table, shadow_state, start_shadow
from bot.lifecycle.shadow_gate import settle
from bot.lifecycle.signoff import SignOffRefused, approve
from bot.runtime import Runtime, slack_client
from bot.settings import Settings
from bot.store import audit
from bot.store.feedback import record_feedback
from bot.store.runs import RetrainRun, get_run, start_run
from bot.store.shadow import ShadowSuggestion
from bot.store.tickets import Suggestion, Ticket
from bot.worker.jobs import JOBS
from bot.worker.jobs import worker as tuesday_worker
from bot.worker.shadow_runner import ShadowRunner
from bot.worker.suggest import Suggester
from bot.worker.upkeep import Upkeep
from inference.registry import RESULT
from tests.slash import ADMIN, AGENT, GROUP, LEAD, MANAGER, GroupSlack, Parts, env  # noqa: F401
from tests.test_suggest import NOTHING, copy_version
from tests.demo_names import DEMO_TASK


@pytest.fixture(autouse=True)
def no_far_rule(monkeypatch):
    """These tests route by confidence on the tiny random encoder, whose similarities mean nothing: the far rule
    (tests/test_promise_rows.py, tests/test_evidence_blocks.py) is off here (TUESDAY_FAR_RULE)."""
    monkeypatch.setenv("TUESDAY_FAR_RULE", "false")


REDIS_DB = 12  # this module's own database on the local Redis, flushed around every test
HANDOFF = "hand_off"
TEXTS = ["Where is my claim? I sent the photos last week.", "Please change the address on my home policy.",
         "You charged me twice this month, refund one.", "I want to report a new claim: a tree fell on my car.",
         "Which documents do you need for the water damage?", "My lawyer will contact you about this."]


@pytest.fixture
def fake_slack():
    slack = GroupSlack({GROUP: [LEAD]}).start()
    yield slack
    slack.stop()


def served_copy(parts: Parts, trained_version, run: int | None = None, **calibration):
    """The tiny trained model committed once more (next version name), routed by the given thresholds (and as
    retrain run `run`'s candidate)."""
    return copy_version(parts.runtime.registry, trained_version[1],
                        {"abstain_threshold": 0.0, "handoff_threshold": 0.0, **calibration}, run=run)


@pytest.fixture
def parts(env, fake_slack, trained_version):
    """Managers, an admin, Slack faked; production v1 is the tiny model, suggesting every ticket."""
    p = Parts(fake_slack)
    v1 = served_copy(p, trained_version)
    p.runtime.production.switch(v1.name, by="test", reason="fixture")
    yield p
    p.close()


def shadow_rows(parts: Parts) -> list[ShadowSuggestion]:
    with parts.runtime.sessions() as session:
        return list(session.scalars(select(ShadowSuggestion).order_by(ShadowSuggestion.id)))


def new_tickets(parts: Parts, n: int, start: int = 0) -> list[int]:
    from bot.store.tickets import add_ticket

    return [add_ticket(parts.runtime.sessions, source="generic", external_id=str(i),
                       text=TEXTS[i % len(TEXTS)] + f" (ref {i})")[0].id for i in range(start, start + n)]


def accept(parts: Parts, suggestion_id: int, label: str | None = None) -> None:
    """An agent's decision on production's suggestion: accept it (label None) or change it to `label`."""
    record_feedback(parts.runtime.sessions, suggestion_id=suggestion_id, action="change" if label else "accept",
                    label=label, user_id=AGENT, labels=parts.runtime.task.labels)


# -- stored, never shown; a failing shadow; who may start it ---------------------------------------

@pytest.mark.slow
def test_the_shadow_answers_every_ticket_is_never_posted_and_only_admins_start_it(parts, fake_slack,
                                                                                 trained_version):
    v2 = served_copy(parts, trained_version, abstain_threshold=NOTHING)  # routed by its own threshold: never sure
    assert v2.name == "v2"
    assert "only Tuesday's admins" in parts.slash(AGENT, "shadow v2")[1]
    assert "only Tuesday's admins" in parts.slash(MANAGER, "shadow v2")[1]
    assert "v1 is production" in parts.slash(ADMIN, "shadow v1")[1]
    assert "v9" in parts.slash(ADMIN, "shadow v9")[1] and shadow_state(parts.runtime) is None
    reply = parts.slash(ADMIN, "shadow v2")[1]
    assert "*v2* now runs in shadow beside production v1" in reply and "never shown" in reply
    assert shadow_state(parts.runtime)["by"] == f"slack:{ADMIN}"

    suggester = Suggester(parts.runtime, slack_client(parts.settings))
    ids = new_tickets(parts, 3)
    results = [suggester.run(ticket_id) for ticket_id in ids]
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) == 3 and all(r["model_version"] == "v1" and r["slack_ts"] for r in results)
    assert all("v2" not in json.dumps(post["body"]) for post in posts)  # nothing of the shadow reaches Slack
    rows = shadow_rows(parts)
    assert [(r.ticket_id, r.suggestion_id, r.version) for r in rows] == [
        (t, r["suggestion_id"], "v2") for t, r in zip(ids, results)]
    # The same model, so the same confidence; routed by v2's own threshold, it shows no label.
    assert [r.confidence for r in rows] == pytest.approx([r["confidence"] for r in results])
    assert all(r.routing == "unsure" and r.label is None and r.latency_ms > 0 and r.error is None for r in rows)
    assert all(r["label"] is not None for r in results)

    suggester.run(ids[0])  # a retried job neither posts nor answers twice
    assert len(fake_slack.calls_to("chat.postMessage")) == 3 and len(shadow_rows(parts)) == 3

    text = parts.slash(AGENT, "shadow")[1]  # anyone may read the numbers
    assert "*v2* runs in shadow beside production v1" in text and "3 live tickets answered, 0 of them labelled" in text
    accept(parts, results[0]["suggestion_id"])
    text = parts.slash(AGENT, "shadow")[1]
    assert "1 of them labelled" in text and "agreement with agents" in text and "0.0%" in text and "100.0%" in text
    assert "• shadow: *v2* since " in parts.slash(AGENT, "status")[1]

    assert "Shadow mode ended: v2" in parts.slash(ADMIN, "shadow off")[1]
    suggester.run(new_tickets(parts, 1, start=10)[0])
    assert len(shadow_rows(parts)) == 3 and suggester.shadow.predictors.predictor is None  # memory given back
    assert "No version is in shadow (last ended by slack:U0ADMIN" in parts.slash(AGENT, "shadow")[1]

    runner = CliRunner()
    out = runner.invoke(main, ["shadow", "v2", "--by", "ana"], catch_exceptions=False)
    assert out.exit_code == 0 and "v2 now runs in shadow beside production v1" in out.output
    data = json.loads(runner.invoke(main, ["shadow", "--json"], catch_exceptions=False).output)
    assert (data["version"], data["by"], data["comparison"]["tickets"]) == ("v2", "cli:ana", 3)
    assert runner.invoke(main, ["shadow", "off", "--by", "ana"], catch_exceptions=False).exit_code == 0
    refused = runner.invoke(main, ["shadow", "v1", "--by", "ana"])
    assert refused.exit_code == 1 and "v1 is production" in refused.output

    trail = [(e["actor"], e["action"], e["target"]) for e in audit.entries(parts.runtime.sessions, action="shadow")]
    assert trail == [("cli:ana", "shadow.off", "v2"), ("cli:ana", "shadow", "v2"),
                     (f"slack:{ADMIN}", "shadow.off", "v2"), (f"slack:{ADMIN}", "shadow", "v2")]
    suggester.close()


@pytest.mark.slow
def test_a_shadow_model_that_fails_never_touches_the_production_suggestion(parts, fake_slack, trained_version, caplog):
    import shutil

    broken = served_copy(parts, trained_version)
    stored = parts.runtime.registry.store.root / "models" / broken.name / broken.manifest["files"][broken.manifest["serve"]]
    stored.write_bytes(stored.read_bytes()[:1000])  # a partial upload
    shutil.rmtree(broken.path)  # this worker has no copy of it yet
    start_shadow(parts.runtime, broken.name, by="cli:test")

    suggester = Suggester(parts.runtime, slack_client(parts.settings))
    ids = new_tickets(parts, 2)
    results = [suggester.run(ticket_id) for ticket_id in ids]
    assert all(r["model_version"] == "v1" and r["label"] and r["slack_ts"] for r in results)
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    first, second = shadow_rows(parts)
    assert (first.routing, first.label, second.routing) == (FAILED, None, FAILED)
    assert "does not match the manifest" in first.error
    assert "did not load" in second.error  # not downloaded again for every ticket
    assert suggester.shadow.failures == 2 and suggester.predictors.version == "v1"
    text = parts.slash(ADMIN, "shadow")[1]
    assert "0 live tickets answered, 2 failed" in text and "failed on 2 ticket(s)" in text

    # A model that loads but fails to predict: the same. Its error quotes the ticket (as a tokenizer's may): the
    # row and /tuesday shadow hold its type and an error id, the worker's log the id, none of them the text.
    class Failing:
        def predict(self, text):
            raise RuntimeError(f"llama_decode returned -1 on {text!r}")

        def close(self):
            pass

    suggester.shadow = ShadowRunner(parts.runtime, lambda name: Failing(), suggester.thresholds)
    with caplog.at_level(logging.WARNING):
        result = suggester.run(new_tickets(parts, 1, start=20)[0])
    assert result["slack_ts"] and re.fullmatch(r"RuntimeError \(error id [0-9a-f]{8}\)", shadow_rows(parts)[-1].error)
    error_id = shadow_rows(parts)[-1].error[-9:-1]
    assert f"error id {error_id}" in caplog.text and "RuntimeError" in caplog.text
    assert "llama_decode" not in caplog.text and "charged me twice" not in caplog.text
    reply = parts.slash(AGENT, "shadow")[1]  # reading it stays open to anyone: it shows no raw error
    assert f"the last error: RuntimeError (error id {error_id})" in reply
    assert "llama_decode" not in reply and "charged me twice" not in reply
    assert len(fake_slack.calls_to("chat.postMessage")) == 3
    assert all("llama_decode" not in json.dumps(call["body"]) for call in fake_slack.calls)
    suggester.close()


# -- the comparison on constructed decisions -------------------------------------------------------

def test_the_comparison_equals_hand_computed_values(store_url, task):
    rt = Runtime(Settings(database_url=store_url))
    sessions = rt.sessions
    bd, cs, dr, nc = "billing_dispute", "claim_status", "document_request", "new_claim"
    # ticket: (production version, label production showed, label the shadow showed, clicks (action, label))
    cases = {
        1: ("v1", cs, cs, [("accept", None)]),  # both agree
        2: ("v1", cs, bd, [("change", bd)]),  # production overridden, shadow agrees
        3: ("v1", nc, None, [("reject", dr)]),  # production overridden, shadow abstained
        4: ("v1", HANDOFF, cs, [("accept", None)]),  # production's hand-off right; shadow misses it
        5: ("v1", bd, HANDOFF, [("accept", None)]),  # shadow escalates wrongly
        6: ("v1", cs, cs, [("handoff", HANDOFF)]),  # agents hand off: both missed it
        7: ("v1", cs, nc, [("accept", None), ("change", nc)]),  # the newest click is the final label
        8: ("v1", cs, cs, []),  # not labelled yet
        9: ("v1", cs, FAILED, [("accept", None)]),  # the shadow failed: left out, counted as failed
        10: ("v0", dr, dr, [("accept", None)]),  # suggested by an earlier production
    }
    with sessions() as session:
        session.add_all([Ticket(id=n, source="t", external_id=str(n), text=f"ticket {n}") for n in cases])
        session.flush()  # no ORM relationships: the rows referred to go in first
        session.add_all([Suggestion(task=DEMO_TASK, id=100 + n, ticket_id=n, label=shown, confidence=0.9, model_version=version,
                                    routing="out_of_scope" if shown == HANDOFF else "suggested")
                         for n, (version, shown, _, _) in cases.items()])
        session.flush()
        for n, (_, _, shadow, _) in cases.items():
            session.add(ShadowSuggestion(ticket_id=n, suggestion_id=100 + n, version="v2",
                                         label=None if shadow == FAILED else shadow, latency_ms=1.0,
                                         routing=FAILED if shadow == FAILED else "unsure" if shadow is None
                                         else "suggested", error="boom" if shadow == FAILED else None))
        session.commit()
    for n, (_, _, _, clicks) in cases.items():
        for action, label in clicks:
            record_feedback(sessions, suggestion_id=100 + n, action=action, label=label, user_id="U1",
                            labels=task.labels)

    c = compare(rt, "v2", production="v1")
    assert (c["tickets"], c["failed"], c["labelled"], c["production"], c["last_error"]) == (8, 1, 7, "v1", "boom")
    assert c["production_stats"] == {"n": 7, "agreed": 3, "agreement": 3 / 7, "shown": 7, "abstained": 0,
                                     "overridden": 3, "override_rate": 3 / 7, "handoffs": 1,
                                     "wrong_escalations": 0, "missed_handoffs": 1}
    assert c["candidate"] == {"n": 7, "agreed": 3, "agreement": 3 / 7, "shown": 6, "abstained": 1,
                              "overridden": 1, "override_rate": 1 / 6, "handoffs": 1,
                              "wrong_escalations": 1, "missed_handoffs": 2}
    assert better_or_equal(c)  # a tie on agreement is enough
    table = comparison_table(c)
    assert "v2 (shadow)" in table and "v1 (production)" in table and "42.9%" in table and "16.7%" in table

    every = compare(rt, "v2")  # any production version
    assert (every["labelled"], every["production"], every["candidate"]["agreed"]) == (8, "v0, v1", 4)
    assert compare(rt, "v3")["labelled"] == 0


# -- the shadow gate -------------------------------------------------------------------------------

def trained_elsewhere(summary: dict) -> dict:
    """The GPU node's train job, as far as the CPU side sees it: the summary it leaves in Redis."""
    return summary


def gate_run(parts: Parts, make_version, *, by: str = MANAGER) -> RetrainRun:
    """A retrain run whose training (on the GPU node) built make_version(run id) and returned it as a candidate
    better than production on the holdout; then its real gate job (conclude_run) on this CPU side."""
    with parts.runtime.sessions() as session:
        run = RetrainRun(task=DEMO_TASK, requested_by=by, trigger="command", status="queued", active=DEMO_TASK)
        session.add(run)
        session.commit()
    start_run(parts.runtime.sessions, run.id)
    version = make_version(run.id).name
    headline = {"n": 40, "accuracy": 0.5, "macro_f1": 0.5, "handoff_recall": 0.5, "escalation_recall": 0.5}
    summary = {"version": version, "production": parts.runtime.production.name(),
               "metrics": {**headline, "macro_f1": 0.6}, "production_metrics": headline, "family": "decoder",
               "choice": "only the decoder family was trained", "families": {}, "calibration": None, "run": run.id}
    # Stored beside the version as the GPU node stores it: the gate reads this copy, not Redis'.
    parts.runtime.registry.add_paper(version, RESULT, json.dumps(summary).encode("utf-8"))
    parts.queues.enqueue("train", "tests.test_shadow.trained_elsewhere", job_id=train_job_id(run.id),
                         kwargs={"summary": summary})
    tuesday_worker(parts.queues, ["train"]).work(burst=True)
    conclude_run(parts.runtime, parts.queues, slack_client(parts.settings), run.id)
    return get_run(parts.runtime.sessions, run.id)


def suggest_and_get(parts: Parts, suggester: Suggester, n: int, start: int) -> list[dict]:
    return [suggester.run(ticket_id) for ticket_id in new_tickets(parts, n, start=start)]


@pytest.fixture
def gated(env, fake_slack, trained_version):
    env.setenv("TUESDAY_SHADOW_MIN_TICKETS", "3")
    env.setitem(JOBS, "tests.test_shadow.trained_elsewhere", trained_elsewhere)  # the GPU node's job, stood in
    p = Parts(fake_slack)
    p.runtime.production.switch(served_copy(p, trained_version).name, by="test", reason="fixture")
    yield p
    p.close()


@pytest.mark.slow
def test_the_gate_holds_a_candidate_in_shadow_until_enough_is_labelled_then_promotes(gated, fake_slack,
                                                                                     trained_version):
    parts = gated
    # the same model and thresholds: it agrees as often as production
    run = gate_run(parts, lambda run_id: served_copy(parts, trained_version, run=run_id))
    assert (run.status, run.candidate_version, run.production_before) == ("passed", "v2", "v1")
    assert json.loads(run.metrics)["shadow"]["status"] == "waiting"
    assert parts.runtime.production.name() == "v1"
    assert shadow_state(parts.runtime)["by"] == "tuesday"
    [entry] = audit.entries(parts.runtime.sessions, action="shadow")
    assert (entry["actor"], entry["action"], entry["target"], entry["detail"]["note"]) == (
        "tuesday", "shadow", "v2", f"retrain run {run.id}")
    [report] = fake_slack.calls_to("chat.postMessage")
    assert "*v2 passed the gate and runs in shadow beside v1*" in report["body"]["text"]
    assert "labelled 3 of the live tickets" in report["body"]["text"] and APPROVE not in json.dumps(report["body"])
    assert "runs in shadow until agents label 3 of its live tickets" in parts.slash(AGENT, "status")[1]

    suggester = Suggester(parts.runtime, slack_client(parts.settings))
    results = suggest_and_get(parts, suggester, 4, start=0)
    assert len(shadow_rows(parts)) == 4
    upkeep = Upkeep(parts.runtime, parts.queues, slack_client(parts.settings))
    for result in results[:2]:
        accept(parts, result["suggestion_id"])
    assert upkeep.tick()["shadow"] == [] and get_run(parts.runtime.sessions, run.id).status == "passed"

    accept(parts, results[2]["suggestion_id"])
    [done] = upkeep.tick()["shadow"]
    assert (done["id"], done["status"]) == (run.id, "promoted") and parts.runtime.production.name() == "v2"
    assert "in shadow: agreement with agents v2 100.0% vs v1 100.0% on 3 labelled tickets" in done["why"]
    shadow = done["metrics"]["shadow"]
    assert shadow["status"] == "done" and shadow["comparison"]["labelled"] == 3
    event = parts.runtime.production.history()[-1]
    assert (event["version"], event["previous"], event["by"]) == ("v2", "v1", f"slack:{MANAGER}")
    assert event["reason"].startswith("in shadow on live tickets: agreement with agents v2 100.0%")
    assert shadow_state(parts.runtime) is None  # ended once decided
    assert [e["actor"] for e in audit.entries(parts.runtime.sessions, action="shadow.off")] == ["tuesday"]
    report = fake_slack.calls_to("chat.postMessage")[-1]["body"]["text"]
    assert "*v2 promoted to production*" in report and "v2 (shadow)" in report and "n = 3 live tickets" in report
    assert upkeep.tick()["shadow"] == []  # decided once
    assert len(parts.runtime.production.history()) == 2
    suggester.close()


@pytest.mark.slow
def test_a_worse_candidate_is_kept_and_a_later_candidate_takes_the_shadow(gated, fake_slack, trained_version):
    parts = gated
    first = gate_run(parts, lambda run_id: served_copy(parts, trained_version, run_id, abstain_threshold=NOTHING))
    assert first.status == "passed" and shadow_state(parts.runtime)["version"] == "v2"
    # A second retrain passes the holdout gate meanwhile: its candidate takes the shadow, the first is closed.
    second = gate_run(parts, lambda run_id: served_copy(parts, trained_version, run_id, abstain_threshold=NOTHING),
                      by=LEAD)
    assert second.status == "passed" and shadow_state(parts.runtime)["version"] == "v3"
    [closed] = settle(parts.runtime, slack_client(parts.settings))
    assert (closed["id"], closed["status"]) == (first.id, "kept")
    assert closed["why"] == ("not promoted: v3 took its place in shadow (tuesday) before 3 of its live tickets were "
                             "labelled by agents")

    suggester = Suggester(parts.runtime, slack_client(parts.settings))
    for result in suggest_and_get(parts, suggester, 3, start=0):
        accept(parts, result["suggestion_id"])
    [kept] = settle(parts.runtime, slack_client(parts.settings))
    assert (kept["id"], kept["status"]) == (second.id, "kept") and parts.runtime.production.name() == "v1"
    assert kept["why"] == "not promoted after its shadow: agreement with agents v3 0.0% vs v1 100.0% on 3 labelled tickets"
    assert shadow_state(parts.runtime) is None
    report = fake_slack.calls_to("chat.postMessage")[-1]["body"]["text"]
    assert "*v3 kept as candidate*; v1 stays in production" in report and "v3 (shadow)" in report
    assert settle(parts.runtime, slack_client(parts.settings)) == []
    suggester.close()


@pytest.mark.slow
def test_with_sign_off_the_manager_signs_after_the_shadow_result(gated, fake_slack, trained_version, env):
    env.setenv("TUESDAY_PROMOTION_SIGNOFF", "true")
    parts = Parts(fake_slack)
    run = gate_run(parts, lambda run_id: served_copy(parts, trained_version, run=run_id))
    assert run.status == "passed" and APPROVE not in json.dumps(fake_slack.calls_to("chat.postMessage")[0]["body"])
    with pytest.raises(SignOffRefused, match="v2 is still in shadow: 0 of the 3 live tickets"):
        approve(parts.runtime, run.id, by=f"slack:{MANAGER}")

    suggester = Suggester(parts.runtime, slack_client(parts.settings))
    for result in suggest_and_get(parts, suggester, 3, start=0):
        accept(parts, result["suggestion_id"])
    [done] = settle(parts.runtime, slack_client(parts.settings))
    assert (done["status"], done["metrics"]["shadow"]["status"]) == ("passed", "done")
    assert parts.runtime.production.name() == "v1" and shadow_state(parts.runtime) is None
    repost = fake_slack.calls_to("chat.postMessage")[-1]["body"]
    assert APPROVE in json.dumps(repost["blocks"]) and "v2 (shadow)" in repost["text"]
    assert "awaits a manager's sign-off" in repost["text"]

    promoted = approve(parts.runtime, run.id, by=f"slack:{MANAGER}")
    assert promoted["status"] == "promoted" and parts.runtime.production.name() == "v2"
    suggester.close()
    parts.close()
