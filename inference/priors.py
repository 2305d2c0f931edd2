"""Label frequencies from the live stream: EM prior adjustment (Saerens, Latinne & Decaestecker, 2002).

A model's probabilities p(y|x) carry the label frequencies of the rows it learned from (few and
often balanced). When the live stream is skewed (one queue takes most tickets), Bayes' rule says
the probabilities under the live prior are p(y|x) * live(y) / train(y), renormalised. The live
prior is not known, but it can be estimated from unlabelled tickets by expectation-maximisation:
adjust every ticket's probabilities by the current estimate, average them, repeat.

Everything here is numpy over rows of probabilities in task label order; nothing reads labels.
"""

from __future__ import annotations

import numpy as np

FLOOR = 1e-6  # no label's prior reaches zero: a label unseen lately can still be suggested


def normalise(prior) -> np.ndarray:
    prior = np.clip(np.asarray(prior, dtype=np.float64), FLOOR, None)
    return prior / prior.sum()


def adjust(probs: np.ndarray, train_prior, live_prior) -> np.ndarray:
    """Rows of probabilities re-weighted from the training prior to the live one (Bayes' rule)."""
    probs = np.asarray(probs, dtype=np.float64)
    weights = normalise(live_prior) / normalise(train_prior)
    out = probs * weights
    return out / np.clip(out.sum(axis=-1, keepdims=True), 1e-300, None)


def estimate_prior(probs: np.ndarray, train_prior, *, iterations: int = 200, tol: float = 1e-7) -> np.ndarray:
    """The label prior of the tickets behind `probs` (rows of p(y|x) under `train_prior`), by EM."""
    probs = np.asarray(probs, dtype=np.float64)
    train = normalise(train_prior)
    if len(probs) == 0:
        return train
    prior = train.copy()
    for _ in range(iterations):
        new = normalise(adjust(probs, train, prior).mean(axis=0))
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior


def total_variation(a, b) -> float:
    """Half the L1 distance between two distributions (0 = same, 1 = disjoint)."""
    return float(0.5 * np.abs(normalise(a) - normalise(b)).sum())
