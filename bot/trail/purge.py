"""Forgotten rows purged from every file that held them: the artifact store's snapshots and versions, this host's folders.

bot.trail.forget calls this after the SQL store forgot the rows (so no new snapshot takes them).
In the artifact store: every snapshot holding a row is rewritten without it under its new content
name and the old one deleted (a versioned bucket's older copies too); each version's evidence rows
and vectors, vocabulary (drift.json), TF-IDF terms and review sheet are rewritten without it, and a
redaction record says what changed (inference.redaction: what an auditor then sees). On this host:
snapshot files in the data folder and the cache, and cached copies of rewritten files, are deleted
(the bucket holds the rewritten ones; a later fetch verifies them). Other hosts' cached version
files fail their check against the redaction record and are fetched again; the GPU node keeps no
snapshot after a run (trainer.jobs). The model weights cannot be purged: forget names the versions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from inference import redaction
from inference.evidence import ROWS_FILE, VECTORS_FILE
from inference.registry import DRIFT as DRIFT_FILE
from inference.registry import REVIEW
from inference.snapshot import SNAPSHOTS

TFIDF_SUFFIX = "tfidf.npz"


def _new_snapshots(store, keys: set[str], texts: set[str]) -> dict[str, dict]:
    """{old key: {key, sha256, gone, kept}} for each stored snapshot that held a forgotten row; the new one is put."""
    moved = {}
    for key in store.list(SNAPSHOTS):
        if not key.endswith(".jsonl"):
            continue
        body = store.get_bytes(key)
        new, gone = redaction.redact_snapshot(body, keys, texts)
        if new is None:
            continue
        new_key = redaction.snapshot_key(new)
        store.replace(new_key, new)
        moved[key] = {"key": new_key, "sha256": hashlib.sha256(new).hexdigest(), "gone": gone,
                      "kept": redaction.jsonl_rows(new)}
    return moved


def _version(registry, name: str, keys: set[str], texts: set[str], moved: dict, ref: str) -> dict | None:
    """Rewrite one version's files; returns the redaction record written, or None when nothing held the rows."""
    store, prefix = registry.store, f"models/{name}"
    snap = registry.snapshot_key(name)
    record: dict = {"ref": ref, "files": {}, "papers": {}}
    gone, kept = [], None
    if snap in moved:
        record["snapshot"] = {"was": snap, "key": moved[snap]["key"], "sha256": moved[snap]["sha256"]}
        gone, kept = moved[snap]["gone"], moved[snap]["kept"]
    artifacts = registry.current_artifacts(name)
    if ROWS_FILE in artifacts and VECTORS_FILE in artifacts:
        out = redaction.redact_evidence(store.get_bytes(f"{prefix}/{ROWS_FILE}"),
                                        store.get_bytes(f"{prefix}/{VECTORS_FILE}"), keys, texts)
        if out is not None:
            record["files"][ROWS_FILE] = registry.rewrite(name, ROWS_FILE, out[0])
            record["files"][VECTORS_FILE] = registry.rewrite(name, VECTORS_FILE, out[1])
    removed_train = [r for r in gone if r.get("split") == "train"]
    if DRIFT_FILE in artifacts:
        out = redaction.redact_drift(store.get_bytes(f"{prefix}/{DRIFT_FILE}"), removed_train)
        if out is not None:
            record["files"][DRIFT_FILE] = registry.rewrite(name, DRIFT_FILE, out)
    if removed_train and kept is not None:
        kept_texts = [r["text"] for r in kept if r.get("split") == "train"]
        for rel in [r for r in artifacts if r.endswith(TFIDF_SUFFIX)]:
            out = redaction.redact_tfidf(store.get_bytes(f"{prefix}/{rel}"), [r["text"] for r in removed_train],
                                         kept_texts)
            if out is not None:
                record["files"][rel] = registry.rewrite(name, rel, out)
    sheet = registry.paper(name, REVIEW)
    if sheet is not None:
        out, n = redaction.redact_review(sheet, keys, texts)
        if out is not None:
            registry.rewrite_paper(name, REVIEW, out)
            record["papers"][REVIEW] = {"rows": n}
    if not (record["files"] or record["papers"] or "snapshot" in record):
        return None
    record["rows"] = len(gone)
    record["key"] = registry.add_redaction(name, record)
    return record


def purge_store(registry, keys: set[str], texts: set[str], *, ref: str) -> dict:
    """Rewrite every stored copy of the rows; returns {snapshots: {old: new}, versions: {name: [files]}}."""
    moved = _new_snapshots(registry.store, keys, texts)
    versions = {}
    for name in registry.names():
        record = _version(registry, name, keys, texts, moved, ref)
        if record is not None:
            versions[name] = sorted(record["files"]) + sorted(record["papers"]) \
                + (["snapshot"] if "snapshot" in record else [])
    for old in moved:  # last: a purge cut short is finished by running forget again
        registry.store.delete(old)
    return {"snapshots": {old: m["key"] for old, m in moved.items()}, "versions": versions}


def _holds(path: Path, keys: set[str], texts: set[str]) -> bool:
    try:
        rows = redaction.jsonl_rows(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return any(redaction.matches(r, keys, texts) for r in rows if isinstance(r, dict))


def purge_host(folders: list[Path], keys: set[str], texts: set[str]) -> list[str]:
    """Delete this host's snapshot files that hold a forgotten row (copies: the bucket keeps the rewritten
    ones); returns their names."""
    removed = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.jsonl")):
            if _holds(path, keys, texts):
                path.unlink(missing_ok=True)
                removed.append(path.name)
    return removed
