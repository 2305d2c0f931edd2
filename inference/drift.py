"""The reference a version's drift is measured against (drift.json, written by the trainer).

    {"holdout_similarity": {"n", "p05", "p50", "min"},  # each holdout row's top cosine similarity
                                                         # to the training rows (the evidence index)
     "training_labels": {label: rows}, "n_train": rows,
     "vocabulary": {word: occurrences in the training texts}}  # inference.vocabulary.terms

Live, a ticket whose nearest labelled example is less similar than the holdout's 5th percentile
looks unlike what the version learned from (bot.monitor.drift).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from inference.evidence import EvidenceIndex, _normalise
from inference.vocabulary import vocabulary


def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (PostgreSQL's percentile_cont)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def top_similarities(index: EvidenceIndex, vectors: np.ndarray) -> list[float]:
    """Each vector's cosine similarity to its nearest row of the index, as serving computes it
    (the index as stored, float16, and rounded to 4 places like a suggestion's evidence)."""
    if not index.rows or len(vectors) == 0:
        return []
    stored = index.vectors.astype(np.float16).astype(np.float32)
    sims = _normalise(vectors) @ stored.T
    return [round(float(s), 4) for s in sims.max(axis=1)]


def build_reference(train_rows: list[dict], holdout_similarities: list[float]) -> dict:
    """drift.json's content from the training rows and the holdout rows' top similarities."""
    return {
        "holdout_similarity": {"n": len(holdout_similarities), "p05": quantile(holdout_similarities, 0.05),
                               "p50": quantile(holdout_similarities, 0.5),
                               "min": min(holdout_similarities) if holdout_similarities else None},
        "training_labels": dict(sorted(Counter(r["label"] for r in train_rows).items())),
        "n_train": len(train_rows),
        "vocabulary": dict(sorted(vocabulary(r["text"] for r in train_rows).items())),
    }
