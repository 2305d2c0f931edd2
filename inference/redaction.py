"""Forgotten rows taken out of stored files: snapshots, a version's evidence, vocabulary, TF-IDF and review sheet.

A version's manifest never changes: it records what was built, each file with its sha256 as built.
When rows are forgotten (bot.trail.forget) the files that held their text are rewritten in place
and a redaction record is added next to the version, create-only, one per forget:

    models/v3/redactions/0001.json
    {"at": ..., "ref": "audit 42", "rows": 2,
     "files": {"evidence.jsonl": {"was": <sha256 as built>, "sha256": <now>, "bytes": ...}, ...},
     "papers": {"review.json": {"rows": 1}},
     "snapshot": {"was": "snapshots/snapshot-1f2e….jsonl", "key": "snapshots/snapshot-9a0b….jsonl", "sha256": ...}}

Readers take a file's sha256 (and the version's snapshot key) from the newest record that names it,
else from the manifest (`current_artifacts`, `current_snapshot`), so every host's next fetch replaces
an old copy. An auditor sees the manifest as built, and for each forget which files changed, from
which sha256 to which, and how many rows went; never which text. The model's weights were trained
on the rows and cannot be rewritten: the forget answer names those versions, to retire.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from inference.artifacts import ArtifactExists
from inference.errors import TuesdayError

REDACTIONS = "redactions"


class RedactionError(TuesdayError):
    """A stored file cannot be rewritten without the forgotten rows."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def matches(row: dict, keys: set[str], texts: set[str]) -> bool:
    """Whether a stored row is one of the forgotten ones (by its id, or by its text)."""
    return row.get("id") in keys or (row.get("text") in texts if row.get("text") else False)


# -- records ---------------------------------------------------------------------------------------------

def records(store, prefix: str) -> list[dict]:
    """A version's redaction records, oldest first (prefix: "models/v3")."""
    keys = sorted(k for k in store.list(f"{prefix}/{REDACTIONS}") if k.endswith(".json"))
    return [json.loads(store.get_bytes(k)) for k in keys]


def current_artifacts(manifest: dict, recs: list[dict]) -> dict:
    """The manifest's {file: {sha256, bytes}} with every redaction applied in order."""
    artifacts = {rel: dict(meta) for rel, meta in manifest.get("artifacts", {}).items()}
    for rec in recs:
        for rel, meta in rec.get("files", {}).items():
            artifacts[rel] = {"sha256": meta["sha256"], "bytes": meta["bytes"]}
    return artifacts


def current_snapshot(manifest: dict, recs: list[dict]) -> str | None:
    key = manifest.get("snapshot")
    for rec in recs:
        if rec.get("snapshot"):
            key = rec["snapshot"]["key"]
    return key


def add_record(store, prefix: str, record: dict) -> str:
    """Write the next numbered record (create-only: two forgets at once take two numbers); returns its key."""
    record = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **record}
    for number in range(len(records(store, prefix)) + 1, 10_000):
        key = f"{prefix}/{REDACTIONS}/{number:04d}.json"
        try:
            store.put_new(key, json.dumps(record, indent=2, sort_keys=True).encode())
            return key
        except ArtifactExists:
            continue
    raise RedactionError(f"no free redaction record under {prefix}")


# -- file rewriters: each returns the new bytes, or None when nothing in it was forgotten ---------------

def jsonl_rows(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]


def redact_snapshot(body: bytes, keys: set[str], texts: set[str]) -> tuple[bytes | None, list[dict]]:
    """(the snapshot without the rows, the rows removed); its meta row stays first."""
    rows = jsonl_rows(body)
    gone = [r for r in rows if r.get("split") != "meta" and matches(r, keys, texts)]
    if not gone:
        return None, []
    kept = [r for r in rows if r not in gone]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept).encode("utf-8"), gone


def snapshot_key(body: bytes) -> str:
    """A snapshot's key is named by its content, as inference.snapshot.write_snapshot names its file."""
    return f"snapshots/snapshot-{_sha(body)[:16]}.jsonl"


def redact_evidence(rows_body: bytes, vectors_body: bytes, keys: set[str],
                    texts: set[str]) -> tuple[bytes, bytes] | None:
    """evidence.jsonl and evidence.npy without the forgotten rows (and their vectors)."""
    import numpy as np

    rows = jsonl_rows(rows_body)
    keep = [i for i, row in enumerate(rows) if not matches(row, keys, texts)]
    if len(keep) == len(rows):
        return None
    vectors = np.load(io.BytesIO(vectors_body), allow_pickle=False)
    out = io.BytesIO()
    np.save(out, vectors[keep] if len(keep) else vectors[:0])
    return ("".join(json.dumps(rows[i], ensure_ascii=False) + "\n" for i in keep).encode("utf-8"), out.getvalue())


def redact_drift(body: bytes, removed_train: list[dict]) -> bytes | None:
    """drift.json as if the removed training rows had never been there: their words and labels subtracted."""
    from inference.vocabulary import vocabulary

    if not removed_train:
        return None
    data = json.loads(body)
    words = Counter(data.get("vocabulary", {}))
    words.subtract(vocabulary(r["text"] for r in removed_train))
    labels = Counter(data.get("training_labels", {}))
    labels.subtract(Counter(r["label"] for r in removed_train))
    data["vocabulary"] = dict(sorted((w, n) for w, n in words.items() if n > 0))
    data["training_labels"] = dict(sorted((k, n) for k, n in labels.items() if n > 0))
    data["n_train"] = max(0, int(data.get("n_train", 0)) - len(removed_train))
    return (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")


def redact_tfidf(body: bytes, removed: list[str], kept: list[str]) -> bytes | None:
    """tfidf.npz without the terms only the removed texts brought in (fewer documents than the vectorizer's
    min_df among the texts kept), with their idf and weight columns."""
    import numpy as np

    from inference.stacking import _vectorizers, clip_text

    data = dict(np.load(io.BytesIO(body), allow_pickle=False))
    fresh_word, fresh_char = _vectorizers()
    drop = {}
    for name, vectorizer in (("word", fresh_word), ("char", fresh_char)):
        analyze = vectorizer.build_analyzer()
        vocab = [str(t) for t in data[f"{name}_vocab"]]
        index = {t: i for i, t in enumerate(vocab)}
        candidates = {t for text in removed for t in analyze(clip_text(text)) if t in index}
        df = Counter(t for text in kept for t in set(analyze(clip_text(text))) if t in candidates)
        drop[name] = sorted(index[t] for t in candidates if df[t] < vectorizer.min_df)
    if not drop["word"] and not drop["char"]:
        return None
    n_word = len(data["word_vocab"])
    columns = np.ones(data["coef"].shape[1], dtype=bool)
    columns[drop["word"]] = False
    columns[[n_word + i for i in drop["char"]]] = False
    for name in ("word", "char"):
        keep = np.ones(len(data[f"{name}_vocab"]), dtype=bool)
        keep[drop[name]] = False
        data[f"{name}_vocab"], data[f"{name}_idf"] = data[f"{name}_vocab"][keep], data[f"{name}_idf"][keep]
    data["coef"] = data["coef"][:, columns]
    with tempfile.TemporaryDirectory() as tmp:  # savez_compressed as the trainer wrote it
        path = Path(tmp) / "tfidf.npz"
        np.savez_compressed(path, **data)
        return path.read_bytes()


def redact_review(body: bytes, keys: set[str], texts: set[str]) -> tuple[bytes | None, int]:
    """The review sheet without the forgotten holdout rows; it counts them under "forgotten"."""
    sheet = json.loads(body)
    rows = sheet.get("rows", [])
    kept = [r for r in rows if not matches(r, keys, texts)]
    if len(kept) == len(rows):
        return None, 0
    sheet["rows"], sheet["forgotten"] = kept, int(sheet.get("forgotten", 0)) + len(rows) - len(kept)
    return json.dumps(sheet, ensure_ascii=False).encode("utf-8"), len(rows) - len(kept)
