"""Which labelled example belongs to the frozen holdout: decided by its id alone."""

from __future__ import annotations

import hashlib

DEFAULT_HOLDOUT_FRACTION = 0.2


def in_holdout(example_id: str, fraction: float = DEFAULT_HOLDOUT_FRACTION) -> bool:
    """Stable as data grows: an example never moves between train and holdout."""
    digest = hashlib.sha256(f"holdout:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
