"""Routing a prediction (suggested / unsure / out of scope) and showing its evidence in Slack; no model needed."""

import json
import types

import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.blocks import (
    ACCEPT,
    CHANGE,
    EVIDENCE_ITEMS,
    HANDOFF,
    REJECT,
    TEXT_CHARS,
    decided_blocks,
    suggestion_blocks,
    suggestion_text,
)
from bot.store.base import make_session_factory
from bot.store.feedback import record_feedback
from bot.store.schema import _config, current_revision, head_revision
from bot.store.tickets import OUT_OF_SCOPE, SUGGESTED, UNSURE, Suggestion, Ticket, add_suggestion, route
from bot.worker.predictors import DEFAULT_THRESHOLD, version_thresholds
from bot.worker.suggest import Suggester
from inference.predictor import Suggestion as Prediction
from inference.task import Task
from tests.demo_names import DEMO_TASK
from tests.tickets import stored_ticket

EVIDENCE = [
    {"id": "demo:12", "text": "My claim was filed two weeks ago and I have heard nothing since. Any news on it?",
     "label": "claim_status", "reason": "Asks where an open claim stands.", "similarity": 0.91},
    {"id": "demo:40", "text": "How do I cancel my policy <before> the renewal & get money back?",
     "label": "cancellation", "reason": "", "similarity": 0.72},
    {"id": "demo:7", "text": "Third one", "label": "billing", "reason": "Premium question.", "similarity": 0.5},
    {"id": "demo:9", "text": "Fourth, never shown", "label": "other", "reason": "", "similarity": 0.4},
]


def prediction(label="claim_status", confidence=0.8, evidence=EVIDENCE, reason="Mentions an open claim.") -> Prediction:
    return Prediction(label=label, confidence=confidence, probabilities={label: confidence}, reason=reason,
                      model_version="v1", latency_ms=42.0, evidence=list(evidence))


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(Settings())


def stored(runtime, pred: Prediction, **cut) -> tuple[Ticket, Suggestion]:
    ticket, _ = stored_ticket(runtime.sessions, source="generic", external_id="T-1", subject="Where is my claim?",
                           text="Filed last week, any news?")
    with runtime.sessions() as session:
        row = add_suggestion(session, ticket.id, pred, **{"threshold": 0.5, **cut}, task=DEMO_TASK)
    return ticket, row


def all_mrkdwn(blocks: list[dict]) -> list[str]:
    """Every mrkdwn/plain text string in a message."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def evidence_context(blocks: list[dict]) -> dict:
    [block] = [b for b in blocks if b["type"] == "context" and "Similar labelled tickets" in json.dumps(b)]
    return block


def action_ids(blocks: list[dict]) -> list[str]:
    [actions] = [b for b in blocks if b["type"] == "actions"]
    return [e["action_id"] for e in actions["elements"]]


# -- routing ---------------------------------------------------------------------------------------

def test_route_gives_the_three_outcomes():
    cut = {"threshold": 0.6, "handoff_threshold": 0.2, "handoff_label": "hand_off"}
    assert route("claim_status", 0.9, **cut) == (SUGGESTED, "claim_status")
    assert route("claim_status", 0.6, **cut) == (SUGGESTED, "claim_status")  # at the threshold: shown
    assert route("claim_status", 0.59, **cut) == (UNSURE, None)
    assert route("claim_status", 0.2, **cut) == (UNSURE, None)  # at the hand-off threshold: still in scope
    assert route("claim_status", 0.19, **cut) == (OUT_OF_SCOPE, "hand_off")
    # no hand-off label in the task: never out of scope, however low
    assert route("claim_status", 0.01, threshold=0.6, handoff_threshold=0.2) == (UNSURE, None)
    # the hand-off cut wins even when the abstain threshold would have shown the label
    assert route("claim_status", 0.3, threshold=0.0, handoff_threshold=0.5, handoff_label="hand_off") == \
        (OUT_OF_SCOPE, "hand_off")


def test_thresholds_come_from_the_calibration_and_the_setting_overrides(task):
    def info(manifest):
        return types.SimpleNamespace(manifest=manifest)

    calibrated = info({"calibration": {"abstain_threshold": 0.7, "handoff_threshold": 0.15, "max_wrong": 0.1}})
    cut = version_thresholds(calibrated, task)
    assert (cut.abstain, cut.handoff, cut.handoff_label) == (0.7, 0.15, "hand_off")
    assert version_thresholds(calibrated, task, override=0.3).abstain == 0.3
    assert version_thresholds(calibrated, task, override=0.0).abstain == 0.0  # 0 is a value, not "unset"
    assert version_thresholds(calibrated, task, override=0.3).handoff == 0.15  # the override is the abstain cut only
    # a version without calibration (old, or no holdout)
    for manifest in ({}, {"calibration": {}}, {"calibration": None}):
        cut = version_thresholds(info(manifest), task)
        assert (cut.abstain, cut.handoff) == (DEFAULT_THRESHOLD, 0.0)
    # a task without a hand-off label ignores the hand-off threshold
    plain = Task(name="plain", labels={"a": "", "b": ""}, handoff_label=None)
    cut = version_thresholds(calibrated, plain)
    assert (cut.abstain, cut.handoff, cut.handoff_label) == (0.7, 0.0, None)


def test_suggester_reads_a_committed_versions_calibration_and_task(runtime, task, monkeypatch):
    registry = runtime.registry
    staging = registry.stage()
    (staging / "task.yaml").write_text(task.to_yaml(), encoding="utf-8")
    v1 = registry.commit(staging, {"calibration": {"abstain_threshold": 0.66, "handoff_threshold": 0.12}})
    old = registry.commit(registry.stage(), {})  # no calibration, no task.yaml: the runtime's task
    suggester = Suggester(runtime, None)
    cut = suggester.thresholds(v1.name)
    assert (cut.abstain, cut.handoff, cut.handoff_label) == (0.66, 0.12, "hand_off")
    assert suggester.thresholds(old.name).abstain == DEFAULT_THRESHOLD

    monkeypatch.setenv("TUESDAY_CONFIDENCE_THRESHOLD", "0.4")
    overridden = Suggester(Runtime(Settings()), None)
    assert overridden.thresholds(v1.name).abstain == 0.4 and overridden.thresholds(v1.name).handoff == 0.12


def test_add_suggestion_stores_routing_and_evidence(runtime):
    ticket, row = stored(runtime, prediction(confidence=0.8), threshold=0.6, handoff_threshold=0.2,
                         handoff_label="hand_off")
    with runtime.sessions() as session:
        row = session.get(Suggestion, row.id)
        assert (row.routing, row.label) == (SUGGESTED, "claim_status")
        assert row.evidence_rows == EVIDENCE and json.loads(row.evidence) == EVIDENCE
        unsure = add_suggestion(session, ticket.id, prediction(confidence=0.5), threshold=0.6, handoff_threshold=0.2,
                                handoff_label="hand_off", task=DEMO_TASK)
        out = add_suggestion(session, ticket.id, prediction(confidence=0.1), threshold=0.6, handoff_threshold=0.2,
                             handoff_label="hand_off", task=DEMO_TASK)
        assert (unsure.routing, unsure.label, unsure.abstained) == (UNSURE, None, True)
        assert (out.routing, out.label, out.out_of_scope, out.abstained) == (OUT_OF_SCOPE, "hand_off", True, False)
        assert out.evidence_rows == EVIDENCE  # an unsure or handed-off ticket keeps its evidence
        # callers that know nothing of evidence or hand-off (a prediction without .evidence) still work
        bare = types.SimpleNamespace(label="billing", confidence=0.3, reason="", probabilities={"billing": 0.3},
                                     model_version="v1", latency_ms=1.0)
        legacy = add_suggestion(session, ticket.id, bare, threshold=0.5, task=DEMO_TASK)
        assert (legacy.routing, legacy.label, legacy.evidence_rows) == (UNSURE, None, [])


def test_accepting_an_out_of_scope_suggestion_accepts_the_hand_off(runtime, task):
    _, row = stored(runtime, prediction(confidence=0.05), handoff_threshold=0.2, handoff_label="hand_off")
    feedback, conflicts = record_feedback(runtime.sessions, suggestion_id=row.id, action="accept", label=None,
                                          user_id="U1", labels=task.labels)
    assert (feedback.label, conflicts) == ("hand_off", [])


def test_an_older_store_is_stamped_and_upgraded_with_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    # The store as an older Tuesday's create_all left it: no alembic_version, no routing or evidence.
    baseline = ScriptDirectory.from_config(_config()).get_revision("0001").module
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        baseline.TABLES["tickets"]()
        baseline.TABLES["suggestions"]()
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE suggestions DROP COLUMN routing"))
        conn.execute(text("ALTER TABLE suggestions DROP COLUMN evidence"))
        conn.execute(text("INSERT INTO tickets (source, external_id, subject, text, created_at) "
                          "VALUES ('generic', '1', '', 'hi', '2025-01-01')"))
        conn.execute(text("INSERT INTO suggestions (ticket_id, label, confidence, probabilities, reason, "
                          "model_version, latency_ms, created_at) "
                          "VALUES (1, NULL, 0.3, '{}', '', 'v1', 1, '2025-01-01')"))
    assert {"routing", "evidence"}.isdisjoint(c["name"] for c in inspect(engine).get_columns("suggestions"))
    sessions = make_session_factory(url)
    assert current_revision(engine) == head_revision()
    with sessions() as session:
        row = session.get(Suggestion, 1)
        assert (row.routing, row.evidence_rows, row.abstained) == (None, [], True)
        blocks = suggestion_blocks(session.get(Ticket, 1), row, Task(name="t", labels={"a": ""}, handoff_label=None))
    assert "Tuesday is unsure" in json.dumps(blocks) and "Similar labelled tickets" not in json.dumps(blocks)


# -- the message -----------------------------------------------------------------------------------

def test_a_suggestion_shows_the_evidence_apart_from_the_generated_reason(runtime, task):
    ticket, row = stored(runtime, prediction(confidence=0.8))
    blocks = suggestion_blocks(ticket, row, task)
    evidence = evidence_context(blocks)["elements"][0]["text"]
    lines = evidence.splitlines()
    assert "Similar labelled tickets" in lines[0] and "reviewers" in lines[0]
    assert len(lines) == 1 + EVIDENCE_ITEMS  # heading + the 3 nearest; the 4th is left out
    assert lines[1] == ("• `claim_status` · “My claim was filed two weeks ago and I have heard nothing since. "
                        "Any news on it?” · _Asks where an open claim stands._")
    # mrkdwn control characters escaped; a row without a reason has no italic part
    assert lines[2] == "• `cancellation` · “How do I cancel my policy &lt;before&gt; the renewal &amp; get money back?”"
    assert "billing" in lines[3] and "_Premium question._" in lines[3]
    assert "Fourth" not in json.dumps(blocks)

    text = json.dumps(blocks)
    assert ":robot_face: _Reason (generated by the model):_ Mentions an open claim." in text
    generated = [b for b in blocks if "generated by the model" in json.dumps(b)]
    assert generated and evidence_context(blocks) not in generated  # two separate blocks
    assert blocks.index(generated[0]) < blocks.index(evidence_context(blocks))
    assert action_ids(blocks) == [ACCEPT, CHANGE, REJECT, HANDOFF]


def test_unsure_shows_the_evidence_to_help_pick(runtime, task):
    ticket, row = stored(runtime, prediction(confidence=0.3), threshold=0.5)
    blocks = suggestion_blocks(ticket, row, task)
    text = json.dumps(blocks)
    assert "Tuesday is unsure" in text and "Suggested label" not in text and "generated by the model" not in text
    assert "`claim_status`" in evidence_context(blocks)["elements"][0]["text"]
    assert action_ids(blocks) == [CHANGE, HANDOFF]
    assert "unsure" in suggestion_text(ticket, row)


def test_a_version_without_an_abstain_promise_shows_its_best_guess_as_such(runtime, task):
    """A small holdout makes no abstain promise: every ticket asks for a label, however confident; the message
    says why and names the guess instead of calling a 96 % guess a doubt."""
    from inference.calibration import NOTHING_SHOWN

    ticket, row = stored(runtime, prediction(confidence=0.96), threshold=NOTHING_SHOWN)
    assert row.abstained and row.predicted_label == "claim_status"
    text = json.dumps(suggestion_blocks(ticket, row, task, unpromised=True), ensure_ascii=False)
    assert "*Best guess `claim_status`* (96%), not promised" in text and "Tuesday is unsure" not in text
    assert "Suggested label" not in text and action_ids(suggestion_blocks(ticket, row, task)) == [CHANGE, HANDOFF]
    # a version that promises and still abstains on this ticket doubts it
    assert "Tuesday is unsure" in json.dumps(suggestion_blocks(ticket, row, task, unpromised=False))


def test_out_of_scope_says_so_and_keeps_the_ordinary_buttons(runtime, task):
    ticket, row = stored(runtime, prediction(confidence=0.12), threshold=0.5, handoff_threshold=0.2,
                         handoff_label="hand_off")
    blocks = suggestion_blocks(ticket, row, task, handoff_threshold=0.2)
    text = json.dumps(blocks, ensure_ascii=False)
    assert (":raising_hand: *Out of scope for Tuesday* (confidence 12% is below the hand-off threshold 20%): "
            "handed to a human as `hand_off`.") in text
    assert "Tuesday is unsure" not in text and "Suggested label" not in text
    assert "Similar labelled tickets" in text
    assert action_ids(blocks) == [ACCEPT, CHANGE, REJECT, HANDOFF]
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert actions["elements"][0]["value"] == str(row.id)
    fallback = suggestion_text(ticket, row)
    assert fallback.startswith("Out of scope for Tuesday (12%), handed to a human as hand_off")
    assert "Where is my claim?" in fallback
    # close to the cut, the percentages do not read as equal
    assert "19.6% is below the hand-off threshold 20.0%" in json.dumps(
        suggestion_blocks(ticket, stored_again(runtime, ticket, 0.196), task, handoff_threshold=0.2))
    # the decided message (no threshold at hand) still says which rules hand off
    decided = json.dumps(decided_blocks(ticket, row, []))
    assert ("Out of scope for Tuesday* (confidence 12%: below the hand-off threshold or unlike every labelled "
            "ticket)") in decided


def test_a_ticket_unlike_every_labelled_one_says_so(runtime, task):
    """The far rule (issue 21): handed off however confident, and the message says why."""
    ticket, row = stored(runtime, prediction(confidence=0.97), threshold=0.5, handoff_threshold=0.2,
                         handoff_label="hand_off", far=0.95)
    assert row.out_of_scope and row.nearest_similarity < 0.95
    text = json.dumps(suggestion_blocks(ticket, row, task, handoff_threshold=0.2, far=0.95), ensure_ascii=False)
    assert (f"(unlike every labelled ticket: its closest labelled ticket is only {row.nearest_similarity:.2f} similar)"
            ": handed to a human as `hand_off`") in text
    assert "below the hand-off threshold" not in text
    # a task without a hand-off label: the ticket asks for a label, as a new kind of ticket
    ticket, row = stored(runtime, prediction(confidence=0.97), threshold=0.5, far=0.95)
    assert row.abstained
    text = json.dumps(suggestion_blocks(ticket, row, task, far=0.95), ensure_ascii=False)
    assert "*A new kind of ticket*: unlike every labelled one" in text and "Tuesday is unsure" not in text


def stored_again(runtime, ticket, confidence) -> Suggestion:
    with runtime.sessions() as session:
        return add_suggestion(session, ticket.id, prediction(confidence=confidence), threshold=0.5,
                              handoff_threshold=0.2, handoff_label="hand_off", task=DEMO_TASK)


def test_long_and_hostile_texts_stay_within_slacks_limits(runtime, task):
    huge = [{"id": f"x{i}", "text": "&<>" * 5000 + "\n" * 50, "label": "claim_status" + "&" * 300,
             "reason": "<!channel> " + "&" * 5000, "similarity": 0.9} for i in range(20)]
    ticket, row = stored(runtime, prediction(confidence=0.9, evidence=huge, reason="&" * 5000))
    blocks = suggestion_blocks(ticket, row, task)
    assert all(len(t) <= TEXT_CHARS for t in all_mrkdwn(blocks))
    assert all(len(b.get("elements", [])) <= 10 for b in blocks if b["type"] == "context")
    assert len(blocks) <= 50
    evidence = evidence_context(blocks)["elements"][0]["text"]
    assert len(evidence.splitlines()) == 1 + EVIDENCE_ITEMS and len(evidence) < TEXT_CHARS // 2
    assert "<!channel>" not in evidence and "&lt;!channel&gt;" in evidence
    # escaping never cuts an entity in half, and an excerpt ends with an ellipsis
    for line in evidence.splitlines()[1:]:
        stripped = line.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
        assert "&" not in stripped and "<" not in stripped and ">" not in stripped
        assert "…”" in line
    assert len(suggestion_text(ticket, row)) < 300


def test_the_ticket_title_links_to_the_ticket_by_its_id(runtime, task):
    ticket, row = stored(runtime, prediction())
    link = "https://desk.example/t/T-1"
    [heading, *_] = all_mrkdwn(suggestion_blocks(ticket, row, task, link=link))
    assert heading.startswith(f"*<{link}|Where is my claim?>*")
    assert all_mrkdwn(decided_blocks(ticket, row, [], link=None))[0].startswith("*Where is my claim?*")
