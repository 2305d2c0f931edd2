"""Forgotten rows purged from every file that held them: the artifact store's snapshots and versions,
this host's folders.

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
MOVED = f"{SNAPSHOTS}/moved"  # snapshots/moved/<old name>.json: where a rewritten snapshot went (no text)
LATE_REF = "forgotten before this version was stored"


def _new_snapshots(store, keys: set[str], texts: set[str], only: str | None = None) -> dict[str, dict]:
    """{old key: {key, sha256, gone, kept}} for each stored snapshot (or `only` that one) that held a forgotten
    row; the new one is put, and a pointer from the old name to it."""
    moved = {}
    for key in store.list(SNAPSHOTS) if only is None else [only]:
        if not key.endswith(".jsonl") or key.startswith(f"{MOVED}/"):
            continue
        body = store.get_bytes(key)
        new, gone = redaction.redact_snapshot(body, keys, texts)
        if new is None:
            continue
        new_key = redaction.snapshot_key(new)
        store.replace(new_key, new)
        moved[key] = {"key": new_key, "sha256": hashlib.sha256(new).hexdigest(), "gone": gone,
                      "kept": redaction.jsonl_rows(new)}
        # A version whose train job read the old one before this forget is stored later: it follows this.
        store.replace(f"{MOVED}/{key.rsplit('/', 1)[1]}.json",
                      json.dumps({"key": new_key, "sha256": moved[key]["sha256"]}).encode())
    return moved


def _followed(store, key: str) -> dict:
    """{key: {key, sha256, gone, kept}} for a snapshot a forget rewrote and deleted, from its pointer ({} if none)."""
    pointer = f"{MOVED}/{key.rsplit('/', 1)[1]}.json"
    if not store.exists(pointer):
        return {}
    new = json.loads(store.get_bytes(pointer))
    while store.exists(f"{MOVED}/{new['key'].rsplit('/', 1)[1]}.json"):  # rewritten again by a later forget
        new = json.loads(store.get_bytes(f"{MOVED}/{new['key'].rsplit('/', 1)[1]}.json"))
    return {key: {**new, "gone": [], "kept": redaction.jsonl_rows(store.get_bytes(new["key"]))}}


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
    evidence_gone, evidence_kept = [], None
    if ROWS_FILE in artifacts and VECTORS_FILE in artifacts:
        rows_body = store.get_bytes(f"{prefix}/{ROWS_FILE}")
        held = any(redaction.matches(r, keys, texts) for r in redaction.jsonl_rows(rows_body))
        # The vectors only when a row goes: they are the largest file read here.
        out = redaction.redact_evidence(rows_body, store.get_bytes(f"{prefix}/{VECTORS_FILE}"), keys, texts) \
            if held else None
        if out is not None:
            record["files"][ROWS_FILE] = registry.rewrite(name, ROWS_FILE, out[0])
            record["files"][VECTORS_FILE] = registry.rewrite(name, VECTORS_FILE, out[1])
            evidence_gone = [r for r in redaction.jsonl_rows(rows_body) if redaction.matches(r, keys, texts)]
            evidence_kept = redaction.jsonl_rows(out[0])
    # The evidence rows are the training rows: they tell what went when the snapshot no longer can.
    removed_train = [r for r in gone if r.get("split") == "train"] or evidence_gone
    if kept is None and evidence_kept is not None:
        kept = [{**r, "split": "train"} for r in evidence_kept]
    if DRIFT_FILE in artifacts and removed_train:
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
    record["rows"] = len(gone) or len(evidence_gone) + sum(p["rows"] for p in record["papers"].values())
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


def purge_new_version(runtime, name: str) -> dict | None:
    """Forgotten rows taken out of a version stored after they were forgotten: its train job read the snapshot
    before the forget (and kept no copy), so that forget could not reach the files it was writing. Rows are
    found by id (every tombstone); returns the redaction record written, or None. Called before gating."""
    from sqlalchemy import select

    from bot.store.trail import Forgotten

    with runtime.sessions() as session:
        keys = {f"{src}:{ext}" for src, ext in session.execute(select(Forgotten.source, Forgotten.external_id))}
    if not keys:
        return None
    registry = runtime.registry
    snap = registry.snapshot_key(name)
    moved = {}
    if snap and registry.store.exists(snap):
        moved = _new_snapshots(registry.store, keys, set(), only=snap)
    elif snap:
        moved = _followed(registry.store, snap)
    record = _version(registry, name, keys, set(), moved, LATE_REF)
    for old in moved:
        registry.store.delete(old)
    return record
