"""The paper trail: base-model approvals gate training, the audit log records every admin action and
refuses edits, release notes and `tuesday forget` tell the truth about versions."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from bot.cli.main import main
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store import audit
from bot.store.base import make_session_factory
from bot.store.runs import set_paused
from bot.trail.bases import BaseNoteError, approve, approved_licenses, notes, withdraw
from inference.base_models import RESTRICTIONS, UnapprovedBase
from tests.conftest import TINY_CONFIG, TINY_PATHS, approve_tiny_bases
from tests.slash import ADMIN, MANAGER, Parts, env, fake_slack  # noqa: F401
from tests.demo_names import DEMO_TASK
from tests.tickets import stored_ticket

pytestmark = pytest.mark.slow

REDIS_DB = 2


@pytest.fixture
def cli(tiny_base, tiny_bert, monkeypatch, tmp_path):
    """`tuesday ...` with the tiny bases configured (and not approved) and an encoder-only tiny config."""
    monkeypatch.setenv("TUESDAY_BASE_MODEL", str(tiny_base[1]))
    monkeypatch.setenv("TUESDAY_ENCODER_MODEL", str(tiny_bert))
    (tmp_path / "enc.yaml").write_text(json.dumps({**TINY_CONFIG, "families": ["encoder"]}))
    (tmp_path / "dec.yaml").write_text(json.dumps({**TINY_CONFIG, "families": ["decoder"]}))

    def invoke(*args, ok=True):
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture
def labelled(tmp_path, demo_rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in demo_rows[:120]))
    return path


def test_built_in_notes_ship_proposed_and_an_unapproved_base_is_refused(cli, labelled, tmp_path):
    listed = {n["name"]: n for n in json.loads(cli("base", "--json").stdout)}
    assert {n["status"] for n in listed.values()} == {"proposed"}
    assert set(listed) == {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    assert "proposed (not approved)" in cli("base").output
    cli("import", labelled)

    refused = cli("train", "--config", tmp_path / "enc.yaml", ok=False)
    assert refused.exit_code == 1
    assert "base model 'tiny-bert' (tiny-bert) has no approved license note" in refused.output
    assert "tuesday base approve tiny-bert --by NAME" in refused.output
    assert json.loads(cli("models", "--json").stdout) == []  # nothing was trained or stored

    # A base Tuesday does not ship needs its whole note before anyone can approve it.
    half = cli("base", "approve", "tiny-bert", "--by", "ana", ok=False)
    assert half.exit_code == 1 and "--model, --source, --version, --obtained, --license" in half.output
    cli("base", "approve", "tiny-bert", "--by", "ana", "--model", "tiny random BERT", "--source", "tests",
        "--version", "0", "--obtained", "2026-12-02", "--license", "MIT", "--path", TINY_PATHS["tiny-bert"],
        *[arg for key in RESTRICTIONS for arg in (f"--{key.replace('_', '-')}", "allowed")])
    summary = json.loads(cli("train", "--config", tmp_path / "enc.yaml", "--json").stdout)
    assert summary["promoted"]
    card = cli("base", "show", "tiny-bert").output
    assert "approved by cli:ana" in card and "RESTRICTED" not in card

    # Withdrawn: refused again, and the history keeps both rows.
    cli("base", "withdraw", "tiny-bert", "--by", "ben", "--reason", "license changed upstream")
    assert "has no approved license note" in cli("train", "--config", tmp_path / "enc.yaml", ok=False).output
    log = [(e["actor"], e["action"], e["target"]) for e in json.loads(cli("audit", "--json").stdout)]
    assert log == [("cli:ben", "base.withdraw", "tiny-bert"), ("cli", "promote", "v1"),
                   ("cli:ana", "base.approve", "tiny-bert")]


def test_a_restricted_license_shows_in_the_card_and_in_status(cli, labelled, tmp_path):
    rt = Runtime(Settings())
    approve_tiny_bases(rt.sessions)
    approve(rt.sessions, "tiny-base", by="cli:ana", restrictions={"hosted_use": "no hosted serving without a licence"})
    cli("import", labelled)
    summary = json.loads(cli("train", "--config", tmp_path / "dec.yaml", "--json").stdout)
    assert summary["promoted"] and summary["family"] == "decoder"
    version = rt.registry.fetch("v1", ["MODEL_CARD.md"])
    card = (version.path / "MODEL_CARD.md").read_text()
    assert "**RESTRICTED**: hosted use: no hosted serving without a licence" in card
    assert "Base license approved by cli:ana" in card
    status = cli("status").output
    assert "tiny-base: MIT, approved by cli:ana" in status and "RESTRICTED: hosted use" in status
    assert "base models not approved (training refuses them): smollm2-135m-instruct, all-minilm-l6-v2" in status


def test_build_version_checks_every_base_before_loading_anything(tiny_base, tiny_bert, task, demo_rows, tmp_path):
    from inference.registry import Registry
    from trainer.pipeline import build_version

    from inference.base_models import base_pins, content_sha256

    registry = Registry.local(tmp_path / "reg")
    pins = base_pins(tiny_bert)
    bert = {**_note("tiny-bert"), "approved_by": "x", "files": pins, "sha256": content_sha256(pins)}
    with pytest.raises(UnapprovedBase, match="'tiny-base'"):  # the decoder's base, though the encoder's is approved
        build_version(registry, task, tiny_base[1], demo_rows[:20], [], {"families": ["decoder"]},
                      encoder_base=tiny_bert, licenses={"tiny-bert": bert})
    other = {rel: "0" * 64 for rel in pins}
    wrong = {"tiny-bert": {**bert, "files": other, "sha256": content_sha256(other)},
             "tiny-base": {**_note("tiny-base"), "approved_by": "x"}}
    with pytest.raises(UnapprovedBase, match="not the content that was approved"):
        build_version(registry, task, tiny_base[1], demo_rows[:20], [], {"families": ["decoder"]},
                      encoder_base=tiny_bert, licenses=wrong)
    assert registry.names() == [] and not list((tmp_path / "reg").rglob("*.gguf"))


def _note(name: str) -> dict:
    return {"name": name, "model": name, "source": "tests", "version": "0", "obtained": "2026-12-02",
            "license": "MIT", "restrictions": {}, "status": "approved"}


def test_approvals_are_rows_and_the_newest_holds(store_url):
    sessions = make_session_factory(store_url)
    assert approved_licenses(sessions) == {}
    with pytest.raises(BaseNoteError, match="unknown restriction"):
        approve(sessions, "smollm2-135m-instruct", by="a", restrictions={"resale": "no"})
    approve(sessions, "smollm2-135m-instruct", by="cli:a")
    assert set(approved_licenses(sessions)) == {"smollm2-135m-instruct"}
    withdraw(sessions, "smollm2-135m-instruct", by="cli:b", reason="audit")
    assert approved_licenses(sessions) == {}
    assert {n.name: n.status for n in notes(sessions)}["smollm2-135m-instruct"] == "withdrawn"
    with pytest.raises(BaseNoteError, match="nothing to withdraw"):
        withdraw(sessions, "smollm2-135m-instruct", by="cli:b")


def test_the_audit_log_refuses_updates_and_deletes(store_url):
    sessions = make_session_factory(store_url)
    audit.record(sessions, "cli:a", "pause")
    engine = create_engine(store_url)
    try:
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(text(statement))
    finally:
        engine.dispose()
    assert [(e["actor"], e["action"]) for e in audit.entries(sessions)] == [("cli:a", "pause")]


def test_slash_base_and_audit_are_for_admins_and_every_action_is_logged(env, fake_slack):  # noqa: F811
    parts = Parts(fake_slack)
    try:
        assert "only Tuesday's admins" in parts.slash(MANAGER, "base")[1]
        assert "only Tuesday's admins" in parts.slash(MANAGER, "audit")[1]
        listing = parts.slash(ADMIN, "base")[1]
        assert "smollm2-135m-instruct" in listing and "proposed (not approved)" in listing
        assert "RESTRICTED" not in parts.slash(ADMIN, "base all-minilm-l6-v2")[1]
        assert "Approved the license note of *all-minilm-l6-v2*" in parts.slash(ADMIN, "base approve all-minilm-l6-v2")[1]
        assert "withdrawn" in parts.slash(ADMIN, "base withdraw all-minilm-l6-v2 wrong revision")[1]
        assert "nothing to withdraw" in parts.slash(ADMIN, "base withdraw all-minilm-l6-v2")[1]
        parts.slash(ADMIN, "pause")
        parts.slash(ADMIN, "resume")
        assert "queued as run 1" in parts.slash(MANAGER, "retrain")[1]
        parts.slash(ADMIN, "retrain cancel")
        set_paused(parts.runtime.sessions, True, by="cli:carl")
        log = parts.slash(ADMIN, "audit")[1]
        assert log.index("cli:carl  pause") < log.index(f"{ADMIN}  retrain.cancel run 1") \
            < log.index(f"{MANAGER}  retrain run 1") < log.index(f"{ADMIN}  resume")
        assert "base.withdraw all-minilm-l6-v2  (reason=wrong revision)" in log
        assert [e["action"] for e in reversed(audit.entries(parts.runtime.sessions))] == [
            "base.approve", "base.withdraw", "pause", "resume", "retrain", "retrain.cancel", "pause"]
        only = parts.slash(ADMIN, "audit base")[1]
        assert "base.approve" in only and "pause" not in only
    finally:
        parts.close()


def test_forget_removes_the_text_says_which_versions_saw_it_and_release_notes_follow(cli, labelled, tmp_path,
                                                                                     demo_rows):
    from sqlalchemy import select

    from bot.store.examples import Example
    from bot.store.feedback import Feedback, record_feedback
    from bot.store.tickets import add_suggestion
    from bot.trail.snapshots import version_rows
    from inference.predictor import Suggestion as Prediction

    rt = Runtime(Settings())
    approve_tiny_bases(rt.sessions)
    cli("import", labelled, "--source", "demo")
    ticket, _ = stored_ticket(rt.sessions, source="zendesk", external_id="4711", subject="Flood in the cellar",
                           text="Water came through the cellar wall last night, what do I do?", requester="Kim")
    with rt.sessions() as session:
        suggestion = add_suggestion(session, ticket.id, Prediction(label="new_claim", confidence=0.9,
                                                                   probabilities={"new_claim": 0.9}), threshold=0.5, task=DEMO_TASK)
    record_feedback(rt.sessions, suggestion_id=suggestion.id, action="accept", label=None, user_id="U1",
                    why="cellar flood is a new claim", labels=rt.task.labels)
    cli("train", "--config", tmp_path / "enc.yaml")
    v1 = rt.registry.get("v1")
    ids = {row["id"] for row in version_rows(rt.registry, v1)}
    assert f"feedback:ticket-{ticket.id}" in ids and "demo:" + str(demo_rows[0]["id"]) in ids

    result = json.loads(cli("forget", "4711", "--by", "dana", "--json").stdout)
    assert result["examples"] == [f"feedback:ticket-{ticket.id}"] and result["reasons_removed"] == 1
    assert [v["version"] for v in result["versions"]] == ["v1"]
    shown = {"id": f"demo:{demo_rows[0]['id']}", "text": demo_rows[0]["text"], "label": demo_rows[0]["label"],
             "reason": "as shown", "similarity": 0.9}
    other, _ = stored_ticket(rt.sessions, source="zendesk", external_id="4712", text="My cellar flooded too")
    with rt.sessions() as session:  # a later suggestion showed that row as evidence
        evidenced = add_suggestion(session, other.id, Prediction(
            label="new_claim", confidence=0.9, probabilities={"new_claim": 0.9}, evidence=[shown]), threshold=0.5, task=DEMO_TASK)
    assert "v1: " in cli("forget", f"demo:{demo_rows[0]['id']}", "--by", "dana").output
    with rt.sessions() as session:
        stored = session.get(type(ticket), ticket.id)
        assert (stored.text, stored.subject, stored.requester) == ("[forgotten]", "", None)
        assert session.scalar(select(Feedback.why).where(Feedback.ticket_id == ticket.id)) is None
        example = session.scalar(select(Example).where(Example.external_id == f"ticket-{ticket.id}"))
        assert (example.text, example.reason, example.label) == ("[forgotten]", None, "new_claim")
        [item] = session.get(type(evidenced), evidenced.id).evidence_rows
        assert (item["id"], item["text"], item["reason"]) == (shown["id"], "[forgotten]", None)
    # A second click on the forgotten ticket and a re-import of the forgotten row bring nothing back.
    record_feedback(rt.sessions, suggestion_id=suggestion.id, action="change", label="hand_off", user_id="U2",
                    labels=rt.task.labels)
    assert json.loads(cli("import", labelled, "--source", "demo", "--json").stdout)["forgotten"] == 1

    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps(r) + "\n" for r in demo_rows[120:160]))
    cli("import", more, "--source", "demo")
    (tmp_path / "enc2.yaml").write_text(json.dumps({"families": ["encoder"], "encoder": {"epochs": 2}}))
    cli("train", "--config", tmp_path / "enc2.yaml")
    v2_rows = version_rows(rt.registry, rt.registry.get("v2"))
    v2_ids = {row["id"] for row in v2_rows}
    assert not ({f"feedback:ticket-{ticket.id}", f"demo:{demo_rows[0]['id']}"} & v2_ids)
    assert "Water came through the cellar wall" not in json.dumps(v2_rows)

    notes = cli("release-notes", "v2").output
    facts = json.loads(cli("release-notes", "v2", "--json").stdout)
    new_train = [r for r in v2_rows if r["split"] == "train" and r["id"] not in ids]
    assert facts["previous"] == "v1" and facts["data"]["new"] == len(new_train) > 0
    before, after = facts["config_changes"]["encoder.epochs"]
    assert after == 2 and before != 2
    assert set(facts["per_label"]) <= set(rt.task.labels) and facts["worst"]
    assert "# Release notes: v2" in notes and f"`encoder.epochs`: {before} → 2" in notes
    assert "base tiny-bert (MIT): approved by cli:test" in notes
    log = json.loads(cli("audit", "--action", "forget", "--json").stdout)
    demo = f"demo:{demo_rows[0]['id']}"  # each forget, then what its purge of the files did
    assert [(e["actor"], e["action"], e["target"]) for e in log] == [
        ("cli:dana", "forget.purge", demo), ("cli:dana", "forget", demo),
        ("cli:dana", "forget.purge", "4711"), ("cli:dana", "forget", "4711")]
