"""bot.trail.purge on a version made by hand (fast, no training): files rewritten with a redaction record that
fetch follows, a stale cached copy fetched again, a purge cut short finished by the next one, nothing twice."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from bot.trail.purge import purge_host, purge_store
from bot.trail.snapshots import version_rows
from inference.artifacts import ArtifactError
from inference.redaction import redact_tfidf
from inference.registry import REVIEW, Registry
from inference.snapshot import upload_snapshot, write_snapshot

GONE = {"id": "feedback:ticket-7", "text": "the grumblewort pipe leaked", "label": "new_claim"}
ROWS = [GONE, {"id": "demo:1", "text": "where is my refund", "label": "billing"},
        {"id": "demo:2", "text": "my refund is late", "label": "billing"}]


def _version(registry: Registry, tmp_path, holdout: bool = False) -> str:
    snapshot = write_snapshot(ROWS, tmp_path / "data" / "snapshots", 0.0, meta={"data_approval": 1})
    keys = upload_snapshot(registry.store, snapshot)
    staging = registry.stage()
    (staging / "evidence.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    np.save(staging / "evidence.npy", np.arange(len(ROWS) * 4, dtype=np.float16).reshape(len(ROWS), 4))
    (staging / "drift.json").write_text(json.dumps({"n_train": 3, "training_labels": {"billing": 2, "new_claim": 1},
                                                    "vocabulary": {"grumblewort": 1, "pipe": 1, "leaked": 1,
                                                                   "refund": 2, "late": 1}}))
    info = registry.commit(staging, {"snapshot": keys["snapshot_key"], "family": "encoder"})
    registry.add_paper(info.name, REVIEW, json.dumps({"rows": [{**GONE, "expected": "new_claim"}]}).encode())
    return info.name


def test_purge_rewrites_records_and_fetch_follows(tmp_path):
    registry = Registry.local(tmp_path / "reg")
    name = _version(registry, tmp_path)
    registry.fetch_all(name)  # this host's copies, made before the forget
    old_snapshot = registry.snapshot_key(name)

    result = purge_store(registry, {GONE["id"]}, {GONE["text"]}, ref="forget 7")
    assert result["versions"][name] == ["drift.json", "evidence.jsonl", "evidence.npy", REVIEW, "snapshot"]
    assert not registry.store.exists(old_snapshot) and registry.snapshot_key(name) == result["snapshots"][old_snapshot]
    [record] = registry.redactions(name)
    assert record["rows"] == 1 and record["ref"] == "forget 7" and record["snapshot"]["was"] == old_snapshot
    built = registry.get(name).manifest["artifacts"]
    assert record["files"]["evidence.jsonl"]["was"] == built["evidence.jsonl"]["sha256"]
    assert "grumblewort" not in json.dumps(record)

    # The manifest is as built; the files verify against the record, and old cached copies were dropped.
    fresh = Registry(registry.store, tmp_path / "other-host")
    info = fresh.fetch_all(name)
    evidence = (info.path / "evidence.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in evidence] == ["demo:1", "demo:2"]
    assert np.load(info.path / "evidence.npy").shape == (2, 4)
    drift = json.loads((info.path / "drift.json").read_text())
    assert "grumblewort" not in drift["vocabulary"] and drift["vocabulary"]["refund"] == 2
    assert drift["n_train"] == 2 and drift["training_labels"] == {"billing": 2}
    assert json.loads(registry.paper(name, REVIEW)) == {"rows": [], "forgotten": 1}
    assert {r["id"] for r in version_rows(registry, registry.get(name))} == {"demo:1", "demo:2"}
    registry.fetch_all(name)  # the first host's copies come back rewritten

    # A copy that differs from the record (another host's, made before the forget) is not used.
    (info.path / "evidence.jsonl").write_text(json.dumps(GONE) + "\n")
    fresh.fetch(name, ["evidence.jsonl"])
    assert "grumblewort" not in (info.path / "evidence.jsonl").read_text()

    # Nothing left to do: a second purge changes nothing and writes no record.
    assert purge_store(registry, {GONE["id"]}, {GONE["text"]}, ref="again") == {"snapshots": {}, "versions": {}}
    assert len(registry.redactions(name)) == 1

    # This host's snapshot file in the data folder holds the row: deleted; others are left.
    assert purge_host([tmp_path / "data" / "snapshots", tmp_path / "nowhere"], {GONE["id"]}, set()) \
        == [old_snapshot.rsplit("/", 1)[1]]
    assert purge_host([tmp_path / "data" / "snapshots"], {GONE["id"]}, set()) == []

    store_copy = tmp_path / "reg" / "store" / f"models/{name}/evidence.jsonl"
    store_copy.write_text(json.dumps(GONE) + "\n")  # and a store file changed behind the record fails its check
    (info.path / "evidence.jsonl").unlink()
    with pytest.raises(ArtifactError, match="does not match"):
        fresh.fetch(name, ["evidence.jsonl"])


def test_a_purge_cut_short_is_finished_by_the_next(tmp_path):
    registry = Registry.local(tmp_path / "reg")
    name = _version(registry, tmp_path)
    # The store failed right after the rewritten snapshot was put: the old one and every version file remain.
    from bot.trail.purge import _new_snapshots

    _new_snapshots(registry.store, {GONE["id"]}, {GONE["text"]})
    assert registry.redactions(name) == []
    result = purge_store(registry, {GONE["id"]}, set(), ref="forget 7")  # found again by id alone
    assert "evidence.jsonl" in result["versions"][name] and len(result["snapshots"]) == 1
    keys = [k for k in registry.store.list("snapshots") if k.endswith(".jsonl")]
    assert len(keys) == 1 and all(GONE["id"] not in registry.store.get_bytes(k).decode() for k in keys)


def test_tfidf_loses_the_terms_only_the_forgotten_rows_brought(tmp_path):
    from inference.stacking import TfidfBranch

    texts = ["where is my refund", "my refund is late", "the grumblewort pipe leaked", "refund for a pipe"]
    body = TfidfBranch.fit(texts, [0, 0, 1, 1], 2).save(tmp_path / "tfidf.npz").read_bytes()
    out = redact_tfidf(body, [texts[2]], [texts[0], texts[1], texts[3]])
    data = np.load(io.BytesIO(out))
    words = set(map(str, data["word_vocab"]))
    assert "grumblewort" not in words and "pipe" in words and "refund" in words
    assert not any("grumb" in t for t in map(str, data["char_vocab"]))
    assert data["coef"].shape[1] == len(data["word_vocab"]) + len(data["char_vocab"])
    assert hashlib.sha256(out).hexdigest() != hashlib.sha256(body).hexdigest()


def test_a_version_stored_after_a_forget_is_purged_before_it_is_gated(tmp_path):
    """Its train job read the snapshot before the forget rewrote it; the forget could not reach its files."""
    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.store.trail import Forgotten
    from bot.trail.purge import purge_new_version

    rt = Runtime(Settings())
    registry = rt.registry
    snapshot = write_snapshot(ROWS, tmp_path / "snaps", 0.0)
    old = upload_snapshot(registry.store, snapshot)["snapshot_key"]
    with rt.sessions() as session:  # the forget: a tombstone, then every stored copy rewritten
        session.add(Forgotten(source="feedback", external_id="ticket-7", forgotten_by="cli:dana"))
        session.commit()
    assert purge_store(registry, {GONE["id"]}, {GONE["text"]}, ref="forget 7")["versions"] == {}
    assert not registry.store.exists(old)

    staging = registry.stage()  # what the train job then stores, from the rows it had read
    (staging / "evidence.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    np.save(staging / "evidence.npy", np.zeros((len(ROWS), 4), dtype=np.float16))
    (staging / "drift.json").write_text(json.dumps({"n_train": 3, "training_labels": {"billing": 2, "new_claim": 1},
                                                    "vocabulary": {"grumblewort": 1, "refund": 2}}))
    name = registry.commit(staging, {"snapshot": old, "family": "encoder"}).name
    with pytest.raises(ArtifactError):
        version_rows(registry, registry.get(name))  # its snapshot is gone under its name

    record = purge_new_version(rt, name)
    assert record["ref"] == "forgotten before this version was stored" and record["rows"] == 1
    assert record["snapshot"]["was"] == old and registry.store.exists(record["snapshot"]["key"])
    assert {r["id"] for r in version_rows(registry, registry.get(name))} == {"demo:1", "demo:2"}
    info = Registry(registry.store, tmp_path / "other-host").fetch_all(name)
    assert "grumblewort" not in (info.path / "evidence.jsonl").read_text()
    assert json.loads((info.path / "drift.json").read_text())["vocabulary"] == {"refund": 2}
    assert purge_new_version(rt, name) is None  # nothing twice


def test_a_purge_cut_short_says_so_and_the_same_forget_finishes_it(tmp_path):
    from click.testing import CliRunner

    from bot.cli.main import main
    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.store import audit
    from bot.store.examples import Example
    from bot.trail.forget import forgotten_generation
    from inference.redaction import redact_snapshot, snapshot_key

    rt = Runtime(Settings())
    with rt.sessions() as session:
        session.add(Example(task=rt.task.name, source="demo", external_id="e1", text=GONE["text"], label="billing"))
        session.commit()
    rows = [{**GONE, "id": "demo:e1"}, *ROWS[1:]]
    upload_snapshot(rt.registry.store, write_snapshot(rows, tmp_path / "snaps", 0.0))
    # Where the rewritten snapshot goes is taken (the store fails there), as a bucket failing mid-way would.
    body = rt.registry.store.get_bytes(rt.registry.store.list("snapshots")[0])
    blocked = Path(rt.registry.store.root) / snapshot_key(redact_snapshot(body, {"demo:e1"}, set())[0])
    blocked.mkdir(parents=True)

    failed = CliRunner().invoke(main, ["forget", "demo:e1", "--by", "dana"], catch_exceptions=False)
    assert failed.exit_code == 1 and "run the same `tuesday forget` again" in failed.output
    assert "grumblewort" not in failed.output
    with rt.sessions() as session:  # the SQL part is done
        assert session.scalar(select(Example.text).where(Example.external_id == "e1")) == "[forgotten]"
    assert [e["action"] for e in audit.entries(rt.sessions, action="forget")] == ["forget"]
    # Serving workers are not told to reload until the files are rewritten (they would load the old ones).
    assert forgotten_generation(rt.sessions) is None

    blocked.rmdir()
    again = CliRunner().invoke(main, ["forget", "demo:e1", "--by", "dana", "--json"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert len(json.loads(again.stdout)["purged"]["snapshots"]) == 1  # found by its id: the text is gone from SQL
    assert all("grumblewort" not in rt.registry.store.get_bytes(k).decode() for k in rt.registry.store.list(""))
    assert [e["action"] for e in audit.entries(rt.sessions, action="forget")] == ["forget.purge", "forget", "forget"]
    told = forgotten_generation(rt.sessions)
    assert told is not None
    CliRunner().invoke(main, ["forget", "demo:e1", "--by", "dana"], catch_exceptions=False)
    assert forgotten_generation(rt.sessions) not in (None, told)  # each purge tells them again
