"""The dataset snapshot: the file bot writes and the trainer reads (rows marked train or holdout)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from inference.splits import in_holdout


META = "meta"  # the split of a snapshot's first row when it carries facts about the data (see write_snapshot)


def write_snapshot(rows: list[dict], out_dir: Path, holdout_fraction: float, meta: dict | None = None) -> Path:
    """Write rows (id, text, label, reason) with their split; the file name is the content hash.

    meta (e.g. {"data_approval": 3}) becomes a first row with split "meta": readers that pick rows
    by split, this release's and older ones, pass over it.
    """
    marked = [{**row, "split": "holdout" if in_holdout(row["text"], holdout_fraction) else "train"} for row in rows]
    if meta:
        marked.insert(0, {**meta, "split": META})
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in marked)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"snapshot-{hashlib.sha256(body.encode()).hexdigest()[:16]}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, path)
    return path


def read_snapshot(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(train rows, holdout rows) of a snapshot file."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "holdout"]


def snapshot_meta(path: str | Path) -> dict:
    """The facts a snapshot carries about its data ({} when none), e.g. {"data_approval": 3}."""
    with Path(path).open(encoding="utf-8") as f:
        first = f.readline()
    row = json.loads(first) if first.strip() else {}
    return {k: v for k, v in row.items() if k != "split"} if row.get("split") == META else {}


SNAPSHOTS = "snapshots"
TASKS = "tasks"


def upload_snapshot(store, path: str | Path) -> dict:
    """Put a snapshot file in the artifact store; returns the key and sha256 a train job needs."""
    from inference.artifacts import sha256_file

    path = Path(path)
    key = f"{SNAPSHOTS}/{path.name}"
    if not store.exists(key):  # named by its content: the same snapshot is stored once
        store.put_file(key, path)
    return {"snapshot_key": key, "snapshot_sha256": sha256_file(path)}


def upload_task(store, task_yaml: str) -> dict:
    """Put the task's YAML in the artifact store under its content hash."""
    from inference.artifacts import ArtifactExists

    data = task_yaml.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    key = f"{TASKS}/{digest[:16]}.yaml"
    try:
        store.put_new(key, data)
    except ArtifactExists:
        pass  # the same text is there already
    return {"task_key": key, "task_sha256": digest}


def download(store, key: str, sha256: str, cache_dir: Path) -> Path:
    """A verified local copy of a snapshot or task artifact."""
    from inference.artifacts import fetch_verified

    return fetch_verified(store, key, Path(cache_dir) / key, sha256)
