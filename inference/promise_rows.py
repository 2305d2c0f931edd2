"""Which holdout rows choose a version's settings and which rows its promises rest on.

A version's holdout does two jobs. Some rows *choose*: the mix of the encoder's voices, the label
prior, the temperature, the family, the far rule's similarity cut. Other rows *promise*: they set
the abstain and hand-off thresholds, whose guarantees (inference.calibration) hold only for rows
that played no part in choosing the score they cut. Rows that choose never also promise: a score
picked because it looked good on some rows looks too good there (issue 21: the hand-off promise
broke in 4 of 6 chat-bot runs when the same rows did both).

- The split is by normalised text, like the holdout itself (inference.splits): a ticket stays on
  its side as the data grows, and the same ticket under another id lands on the same side.
- A small holdout gives the promise side more than half its rows (`needs`: what a promise needs, up
  to MAX_PROMISE_SHARE), so halving it does not cost the promise; the choosing side keeps the rest.
- Tickets labelled in Slack are what live tickets look like; imported examples may not be. Once
  the promise side holds at least FROM_SLACK_MIN rows labelled in Slack, the promise rests on them
  alone and the imported rows on that side choose instead. Until then it rests on every row of its
  side, and says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from inference.splits import normalise

PROMISE_SHARE = 0.5  # of the holdout's texts, the share that sets thresholds
MAX_PROMISE_SHARE = 0.8  # a small holdout gives its promise more rows, up to this share (the rest still choose)
MARGIN = 1.2  # rows asked for beyond what a promise needs (the split by text only comes near the share)
FROM_SLACK_MIN = 100  # promise-side rows labelled in Slack from which the promise rests on them alone
SLACK_PREFIX = "feedback:"  # the id of a row labelled by a click (bot.store.feedback.FEEDBACK_SOURCE)

SLACK, IMPORTED = "slack", "imported"


def promises(text: str, share: float = PROMISE_SHARE) -> bool:
    """On the promise side (stable: a text never changes sides)."""
    digest = hashlib.sha256(f"promise:{normalise(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def labelled_in_slack(row: dict) -> bool:
    return str(row.get("id") or "").startswith(SLACK_PREFIX)


@dataclass(frozen=True)
class Split:
    """A holdout's rows by job: `promise[i]` is True when row i sets thresholds."""

    promise: list[bool]
    source: str  # SLACK: the promise rests on tickets labelled in Slack only; IMPORTED: not (only) on them
    slack_rows: int  # promise-side rows labelled in Slack

    @property
    def promise_n(self) -> int:
        return sum(self.promise)

    @property
    def choose_n(self) -> int:
        return len(self.promise) - self.promise_n

    def choose(self, rows: list) -> list:
        return [r for r, p in zip(rows, self.promise) if not p]


def promise_share(n: int, needs: int = 0) -> float:
    """The promise side's share of n holdout rows: half, or enough for `needs` rows (up to MAX_PROMISE_SHARE).

    >>> promise_share(1000, 83), round(promise_share(150, 83), 3), promise_share(40, 83)
    (0.5, 0.664, 0.8)
    """
    return min(MAX_PROMISE_SHARE, max(PROMISE_SHARE, MARGIN * needs / n)) if n else PROMISE_SHARE


def split(rows: list[dict], *, needs: int = 0, from_slack: int = FROM_SLACK_MIN) -> Split:
    """Each holdout row's job; `needs`: the rows a promise needs (inference.calibration.abstain_needs).

    >>> s = split([{"id": "feedback:1", "text": "a"}, {"id": "csv:2", "text": "b"}], from_slack=2)
    >>> s.source, s.promise_n + s.choose_n
    ('imported', 2)
    """
    share = promise_share(len(rows), needs)
    side = [promises(r["text"], share) for r in rows]
    slack = [p and labelled_in_slack(r) for p, r in zip(side, rows)]
    if sum(slack) >= from_slack:
        return Split(slack, SLACK, sum(slack))
    return Split(side, IMPORTED, sum(slack))
