"""The dataset snapshot: the file bot writes and the trainer reads (rows marked train or holdout)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from inference.splits import in_holdout


def write_snapshot(rows: list[dict], out_dir: Path, holdout_fraction: float) -> Path:
    """Write rows (id, text, label, reason) with their split; the file name is the content hash."""
    marked = [{**row, "split": "holdout" if in_holdout(row["id"], holdout_fraction) else "train"} for row in rows]
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
