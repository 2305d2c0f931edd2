"""The rows a version was trained and evaluated on, read back from the artifact store by its snapshot key."""

from __future__ import annotations

import hashlib
import json

from inference.errors import TuesdayError
from inference.snapshot import META


def version_rows(registry, info) -> list[dict] | None:
    """Every row of the version's snapshot (split "train" or "holdout"); None for a version without one.

    A snapshot is named by the first 16 hex digits of its content's sha256, which is checked here. A
    forget rewrites it under a new name; the version's redaction record points to it (inference.redaction).
    """
    key = registry.snapshot_key(info.name) if info.manifest.get("snapshot") else None
    if not key:
        return None
    body = registry.store.get_bytes(key)
    expected = key.rsplit("snapshot-", 1)[-1].removesuffix(".jsonl")
    if hashlib.sha256(body).hexdigest()[:16] != expected:
        raise TuesdayError(f"snapshot {key} of {info.name} does not match its name's checksum")
    rows = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
    return [row for row in rows if row.get("split") != META]
