"""Forget means gone: a probe forgets two tickets with distinctive words (one trained on, one held out),
then searches every table and text column of the SQL store, every object of the artifact store (a
versioned S3 bucket on moto, or the local folder), and every file under the data and cache folders:
nothing is found, the versions still serve, and `tuesday audit --verify` still holds."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, select, text

from bot.cli.main import main
from bot.helpdesk.outbox import ensure_write_back
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store import audit
from bot.store.examples import Example
from bot.store.feedback import record_feedback
from bot.store.tickets import add_suggestion
from bot.trail import curation
from bot.trail.snapshots import version_rows
from bot.worker.predictors import serving_cache
from inference.predictor import Suggestion as Prediction
from inference.splits import in_holdout
from tests.conftest import TINY_CONFIG, approve_tiny_bases
from tests.demo_names import DEMO_TASK
from tests.tickets import stored_ticket

pytestmark = pytest.mark.slow

HELD, TRAINED = "zorblaxquokka", "flumptiwidget"  # words no demo row and no model vocabulary holds


def _text(word: str, holdout: bool, fraction: float) -> str:
    """A ticket text with `word` that the split puts on the side asked for."""
    for n in range(500):
        candidate = f"The {word} in my cellar burst and flooded the basement, case number {n}, please help"
        if in_holdout(f"{word} leak\n\n{candidate}", fraction) == holdout:  # as Ticket.model_text joins them
            return candidate
    raise AssertionError("no text on that side")


def _strings_of(name: str, data: bytes) -> str:
    """What a file says, searchable: npz/npy arrays of strings read out (they are compressed or binary)."""
    parts = [data.decode("utf-8", "ignore")]
    if name.endswith(".npz") or data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    parts.append(_strings_of(member, archive.read(member)))
        except zipfile.BadZipFile:
            pass
    if name.endswith(".npy"):
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if array.dtype.kind in "US":
            parts.append(" ".join(map(str, array.ravel())))
    return "\n".join(parts).lower()


def _found_in_sql(url: str, words: tuple[str, ...]) -> list[str]:
    engine = create_engine(url)
    hits = []
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')).mappings():
                    for column, value in row.items():
                        if value is not None and any(w in str(value).lower() for w in words):
                            hits.append(f"{table}.{column}")
    finally:
        engine.dispose()
    return sorted(set(hits))


def _found_in_store(rt: Runtime, words: tuple[str, ...]) -> list[str]:
    store = rt.registry.store
    hits = [key for key in store.list("") if any(w in _strings_of(key, store.get_bytes(key)) for w in words)]
    if hasattr(store, "client"):  # older copies in a versioned bucket count too
        pages = store.client.get_paginator("list_object_versions").paginate(Bucket=store.bucket)
        for page in pages:
            for item in page.get("Versions", []):
                body = store.client.get_object(Bucket=store.bucket, Key=item["Key"],
                                               VersionId=item["VersionId"])["Body"].read()
                if any(w in _strings_of(item["Key"], body) for w in words):
                    hits.append(f"{item['Key']}@{item['VersionId']}")
    return sorted(set(hits))


def _found_in_folders(folders: list[Path], words: tuple[str, ...]) -> list[str]:
    return sorted({str(p) for folder in folders if folder.exists() for p in folder.rglob("*")
                   if p.is_file() and any(w in _strings_of(p.name, p.read_bytes()) for w in words)})


@pytest.fixture(params=["local", "s3"])
def probe_env(request, monkeypatch, tmp_path, tiny_base, tiny_bert):
    """Tiny encoder bases; the local variant on SQLite with a folder store, the S3 variant on PostgreSQL
    (when there is one) with a versioned moto bucket."""
    monkeypatch.setenv("TUESDAY_BASE_MODEL", str(tiny_base[1]))
    monkeypatch.setenv("TUESDAY_ENCODER_MODEL", str(tiny_bert))
    (tmp_path / "enc.yaml").write_text(json.dumps({**TINY_CONFIG, "families": ["encoder"]}))
    if request.param == "s3":
        url = request.getfixturevalue("s3_env")
        import boto3

        from tests.conftest import postgres_url

        client = boto3.client("s3", endpoint_url=Settings().s3_endpoint_url, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.put_bucket_versioning(Bucket=url[5:].split("/")[0], VersioningConfiguration={"Status": "Enabled"})
        if postgres_url():
            _empty_postgres(postgres_url())
            monkeypatch.setenv("TUESDAY_DATABASE_URL", postgres_url())
    return tmp_path / "enc.yaml"


def _empty_postgres(url: str) -> None:
    """The test database with no table of ours (as conftest's store_url leaves it)."""
    import bot.helpdesk.outbox  # noqa: F401  (their tables join Base.metadata, so drop_all drops them too)
    import bot.lifecycle.runs  # noqa: F401
    import bot.lifecycle.shadow  # noqa: F401
    import bot.monitor.alerts  # noqa: F401
    import bot.store.link_epochs  # noqa: F401
    import bot.store.production  # noqa: F401
    from bot.store.base import Base

    engine = create_engine(url)
    try:
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def test_a_forgotten_ticket_is_found_nowhere(probe_env, demo_rows, tmp_path):
    def cli(*args, code=0):
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    rt = Runtime(Settings())
    approve_tiny_bases(rt.sessions)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in demo_rows[:120]))
    cli("import", rows, "--source", "demo")
    fraction = rt.settings.holdout_fraction
    tickets = {}
    for word, external_id, holdout in ((HELD, "9001", True), (TRAINED, "9002", False)):
        ticket, _ = stored_ticket(rt.sessions, source="zendesk", external_id=external_id, subject=f"{word} leak",
                                  text=_text(word, holdout, fraction), requester="Kim")
        assert in_holdout(ticket.model_text, fraction) == holdout
        with rt.sessions() as session:
            suggestion = add_suggestion(session, ticket.id, Prediction(
                label="new_claim", confidence=0.9, probabilities={"new_claim": 0.9},
                reason=f"The customer reports a burst {word}."), threshold=0.5, task=DEMO_TASK)
        # Two reviewers disagree (the first one's decision, with its reason, is to be written back to the
        # helpdesk); a manager settles it with a reason that quotes the ticket.
        first, _ = record_feedback(rt.sessions, suggestion_id=suggestion.id, action="accept", label=None,
                                   user_id="U1", why=f"{word} is a\nnew claim", labels=rt.task.labels)
        ensure_write_back(rt.sessions, first.id)
        record_feedback(rt.sessions, suggestion_id=suggestion.id, action="change", label="hand_off", user_id="U2",
                        why=f"{word} needs a person", labels=rt.task.labels)
        with rt.sessions() as session:
            example_id = session.scalar(select(Example.id).where(Example.external_id == f"ticket-{ticket.id}"))
        curation.settle(rt.sessions, example_id, label="new_claim", reason=f"the {word} flooding is a claim",
                        by="slack:UM", labels=rt.task.labels)
        tickets[word] = ticket
    cli("train", "--config", probe_env)
    words = (HELD, TRAINED)
    data_dir = rt.settings.data_dir
    folders = [data_dir, rt.settings.model_cache_dir, rt.registry.cache_dir]

    # The train job kept no snapshot in its download cache (the GPU node's), whatever it does next.
    assert not list((rt.settings.model_cache_dir / "snapshots").glob("*.jsonl"))
    # The probe can see: before forget, every place holds the words.
    v1 = rt.registry.get("v1")
    splits = {row["id"]: row["split"] for row in version_rows(rt.registry, v1)}
    assert splits[f"feedback:ticket-{tickets[HELD].id}"] == "holdout"
    assert splits[f"feedback:ticket-{tickets[TRAINED].id}"] == "train"
    assert {"audit_texts.text", "suggestions.reason", "writeback_outbox.note"} <= set(_found_in_sql(rt.settings.store_url,
                                                                                                  words))
    in_store = _found_in_store(rt, words)
    assert any(k.endswith("review.json") for k in in_store) and any(k.endswith("evidence.jsonl") for k in in_store)
    assert any(k.endswith("drift.json") for k in in_store) and any(k.startswith("snapshots/") for k in in_store)
    assert any("/snapshots/" in p for p in _found_in_folders([data_dir / "snapshots"], words))
    rt.registry.fetch("v1")  # this host's cached copy of the served files
    assert _found_in_folders([rt.registry.cache_dir], words)

    # A serving worker holds the trained row in its evidence index, in memory.
    serving = serving_cache(rt)
    trained_key = f"feedback:ticket-{tickets[TRAINED].id}"
    assert trained_key in {row["id"] for row in serving.get().index.rows}

    answers = [cli("forget", external_id, "--by", "dana", "--json").stdout for external_id in ("9001", "9002")]
    for answer in answers:
        assert not any(w in answer.lower() for w in words)  # counts and keys, never the text
    held, trained = (json.loads(a) for a in answers)
    assert held["purged"]["versions"]["v1"] == ["review.json", "snapshot"] and held["audit_texts_removed"] == 1
    assert held["model_reasons_removed"] == 1 and held["write_back_notes_scrubbed"] == 1
    assert set(trained["purged"]["versions"]["v1"]) >= {"evidence.jsonl", "evidence.npy", "drift.json", "snapshot"}
    assert len(held["purged"]["host_files"]) == 1

    assert _found_in_sql(rt.settings.store_url, words) == []
    assert _found_in_store(rt, words) == []
    assert _found_in_folders(folders, words) == []

    # The worker loads the version again (its rewritten evidence) at its next ticket.
    predictor = serving.get()
    assert serving.loads == 2 and trained_key not in {row["id"] for row in predictor.index.rows}
    assert len(predictor.index.rows) == len(predictor.index.vectors)
    serving.close()

    # The versions' records still hold: the manifest as built, redaction records for what changed since,
    # the rewritten files verify, the snapshot follows its new name, and the audit chain is intact.
    records = rt.registry.redactions("v1")
    assert [r["rows"] for r in records] == [1, 1] and records[1]["snapshot"]["was"] == records[0]["snapshot"]["key"]
    assert rt.registry.get("v1").manifest["snapshot"] == records[0]["snapshot"]["was"]
    fresh = Runtime(Settings())
    fresh.registry.fetch_all("v1")
    remaining = {row["id"] for row in version_rows(fresh.registry, fresh.registry.get("v1"))}
    assert len(remaining) == len(splits) - 2
    sheet = cli("review", "v1").output.lower()
    assert "claim" in sheet and not any(w in sheet for w in words)
    assert audit.verify(rt.sessions)["ok"]
    assert [e["action"] for e in audit.entries(rt.sessions, action="forget")][:2] == ["forget.purge", "forget"]
    settled = audit.entries(rt.sessions, action="conflict.settle")
    assert {e["detail"]["reason"] for e in settled} == {"[forgotten]"}
