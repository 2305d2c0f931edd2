"""Which labelled example belongs to the frozen holdout: decided by its normalised text alone.

By text, not by id: the same ticket comes back under other ids (a Slack click on a holdout
ticket becomes a feedback example with an id of its own), and it must land on the same side,
or the next candidate would be trained on rows it is then gated on.
"""

from __future__ import annotations

import hashlib
import unicodedata

DEFAULT_HOLDOUT_FRACTION = 0.2


def normalise(text: str) -> str:
    """Case, Unicode form and whitespace folded: 'Claim  #12\\n' and 'claim #12' are one text."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def in_holdout(text: str, fraction: float = DEFAULT_HOLDOUT_FRACTION) -> bool:
    """Stable as data grows: a text never moves between train and holdout."""
    digest = hashlib.sha256(f"holdout:{normalise(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
