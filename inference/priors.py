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
# The most a label's probability is multiplied (or divided) by. Unbounded, a label the model learned from no
# rows (training share ~0) took the whole stream: each EM step raised its weight live/train further, until
# every ticket got it (accuracy 0.1-36 % in bench.compare's EM columns, issue 21). Bounded, such a label can
# gain at most this factor; a real skew (one queue at 70 % against a balanced 10 %: 7x) still fits.
MAX_WEIGHT = 10.0
UNLEARNED_SHARE = 0.1  # below a tenth of an even share of the training rows, a label was not learned from rows


def normalise(prior) -> np.ndarray:
    prior = np.clip(np.asarray(prior, dtype=np.float64), FLOOR, None)
    return prior / prior.sum()


def adjust(probs: np.ndarray, train_prior, live_prior) -> np.ndarray:
    """Rows of probabilities re-weighted from the training prior to the live one (Bayes' rule), each label's weight
    within [1/MAX_WEIGHT, MAX_WEIGHT] (symmetric, so adjusting back from live to training undoes it exactly)."""
    probs = np.asarray(probs, dtype=np.float64)
    weights = np.clip(normalise(live_prior) / normalise(train_prior), 1 / MAX_WEIGHT, MAX_WEIGHT)
    out = probs * weights
    return out / np.clip(out.sum(axis=-1, keepdims=True), 1e-300, None)


def unlearned(train_prior) -> np.ndarray:
    """Labels the model learned from (almost) no rows: a training share under UNLEARNED_SHARE of an even one."""
    train = normalise(train_prior)
    return train < UNLEARNED_SHARE / len(train)


def estimate_prior(probs: np.ndarray, train_prior, *, iterations: int = 200, tol: float = 1e-7) -> np.ndarray:
    """The label prior of the tickets behind `probs` (rows of p(y|x) under `train_prior`), by EM.

    A label the model learned from no rows keeps its training share: its p(y|x) says nothing about how
    often it occurs, so re-weighting it would only feed its own growth (issue 21: it absorbed the stream)."""
    probs = np.asarray(probs, dtype=np.float64)
    train = normalise(train_prior)
    if len(probs) == 0:
        return train
    fixed = unlearned(train)
    prior = train.copy()
    for _ in range(iterations):
        new = adjust(probs, train, prior).mean(axis=0)
        if fixed.any():  # the learned labels share what the unlearned ones' training shares leave
            new = np.where(fixed, train, new / new[~fixed].sum() * (1.0 - train[fixed].sum()))
        new = normalise(new)
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior


def total_variation(a, b) -> float:
    """Half the L1 distance between two distributions (0 = same, 1 = disjoint)."""
    return float(0.5 * np.abs(normalise(a) - normalise(b)).sum())
