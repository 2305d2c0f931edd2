"""Label frequencies from the live stream: EM prior adjustment (Saerens, Latinne & Decaestecker, 2002).

A model's probabilities p(y|x) carry the label frequencies of the rows it learned from (few and
often balanced). When the live stream is skewed (one queue takes most tickets), Bayes' rule says
the probabilities under the live prior are p(y|x) * live(y) / train(y), renormalised. The live
prior is not known, but it can be estimated from unlabelled tickets by expectation-maximisation:
adjust every ticket's probabilities by the current estimate, average them, repeat.

Everything here is numpy over rows of probabilities in task label order; nothing reads labels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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


# -- a version's own label prior: logit adjustment chosen on the holdout ---------------------------------------
#
# Training rows are drawn balanced (k per label); the tickets a team labels are not. A version learns p(y|x)
# under its training rows' frequencies; moving it towards the frequencies of every row it saw labelled
# (training + holdout: the store's labelled tickets) is logit adjustment, p ∝ p_model · (target/train)^power.
# The power is chosen per version on the holdout's choosing rows (0 = off) and applied inside the predictor,
# so the holdout evaluation, the temperature fitted on it and serving all see the same probabilities.

# Above 1: a temperature fitted after the prior divides the prior's log-weights too, so scores that are
# over-confident before it (the encoder's mix multiplies its voices: T ≈ 2) need a larger power to move by
# the labelled frequencies (support_tickets, 10 per label: the choosing rows' loss still fell at 1.0).
POWERS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)


def shares(labels: list[str], rows: list[dict]) -> dict[str, float]:
    """Each label's share of the rows (0.0 for a label without rows), in `labels` order."""
    counts = {label: 0 for label in labels}
    for row in rows:
        if row["label"] in counts:
            counts[row["label"]] += 1
    total = sum(counts.values()) or 1
    return {label: n / total for label, n in counts.items()}


@dataclass(frozen=True)
class VersionPrior:
    """p ∝ p_model · (target/train)^power, each weight within [1/MAX_WEIGHT, MAX_WEIGHT]; a label the model
    learned from (almost) no rows (`unlearned`) keeps its share of the prior instead of being re-weighted."""

    train: dict  # label -> share of the training rows (what the model's probabilities carry)
    target: dict  # label -> share of every row the run saw labelled (training + holdout)
    power: float = 0.0

    def weights(self, labels: list[str]) -> np.ndarray:
        """Each label's multiplier, `labels` order (all 1 at power 0)."""
        if not self.power:
            return np.ones(len(labels))
        train = normalise([self.train.get(label, 0.0) for label in labels])
        target = normalise([self.target.get(label, 0.0) for label in labels])
        w = np.clip((target / train) ** self.power, 1 / MAX_WEIGHT, MAX_WEIGHT)
        fixed = unlearned(train)
        if fixed.all():
            return np.ones(len(labels))
        # an unlearned label's weight is the learned labels' mean one: its share of the prior stays as it was
        return np.where(fixed, (train * w)[~fixed].sum() / train[~fixed].sum(), w)

    def apply(self, probs: np.ndarray, labels: list[str]) -> np.ndarray:
        """Rows (or one row) of probabilities in `labels` order under the adjusted prior; unchanged at power 0."""
        if not self.power:
            return np.asarray(probs, dtype=np.float64)
        out = np.asarray(probs, dtype=np.float64) * self.weights(labels)
        return out / np.clip(out.sum(axis=-1, keepdims=True), 1e-300, None)

    def undo(self, probs: np.ndarray, labels: list[str]) -> np.ndarray:
        """The model's own probabilities back from adjusted ones (exact inverse of apply)."""
        if not self.power:
            return np.asarray(probs, dtype=np.float64)
        out = np.asarray(probs, dtype=np.float64) / self.weights(labels)
        return out / np.clip(out.sum(axis=-1, keepdims=True), 1e-300, None)

    def carried(self, training: dict[str, float]) -> dict[str, float]:
        """The prior the adjusted probabilities carry, given the one the model's own carry (label -> share):
        what the live EM must start from and re-weight from (bot.monitor.label_priors)."""
        labels = list(training)
        out = normalise([training[label] for label in labels]) * self.weights(labels)
        return dict(zip(labels, map(float, out / out.sum())))

    def to_dict(self) -> dict:
        return {"train": dict(self.train), "target": dict(self.target), "power": float(self.power)}

    @classmethod
    def from_dict(cls, data: dict | None) -> VersionPrior | None:
        """The prior a manifest part records (it also keeps the losses it was chosen by); None when it has none."""
        if not data:
            return None
        return cls(train=dict(data["train"]), target=dict(data["target"]), power=float(data.get("power", 0.0)))

    @classmethod
    def from_rows(cls, labels: list[str], train_rows: list[dict], all_rows: list[dict], power: float = 0.0,
                  keep: tuple[str, ...] = ()):
        """keep: labels whose target share stays their training share (weight 1), the others sharing the rest
        in proportion. The hand-off label is kept: how often tickets are out of scope is the hand-off
        threshold's business, calibrated with its promise; re-weighted, the label escalated in-scope tickets
        outside it (bench.compare, banking77_oos at 10 per label: 14 % wrong escalations, no promise)."""
        train, target = shares(labels, train_rows), shares(labels, all_rows)
        kept = [label for label in keep if label in train]
        rest = 1.0 - sum(target[label] for label in kept)
        if kept and rest > 0:
            left = 1.0 - sum(train[label] for label in kept)
            target = {label: train[label] if label in kept else target[label] * left / rest for label in labels}
        return cls(train=train, target=target, power=power)


def choose_power(probs: np.ndarray, gold: np.ndarray, prior: VersionPrior, labels: list[str],
                 grid=POWERS) -> tuple[float, dict[float, float]]:
    """The power with the lowest log-loss after temperature scaling on these rows, and each power's loss;
    0 unless a power lowers it (a tie keeps 0), so the adjustment stays silent where it does not pay."""
    from inference.calibration import apply_temperature, fit_temperature, nll

    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    losses: dict[float, float] = {}
    if len(gold) == 0:
        return 0.0, losses
    for power in sorted({0.0, *map(float, grid)}):
        adjusted = replace(prior, power=power).apply(probs, labels)
        losses[power] = nll(apply_temperature(adjusted, fit_temperature(adjusted, gold)), gold)
    best = min(losses, key=losses.get)  # an exact tie keeps the smaller power
    return (best if losses[best] < losses[0.0] - 1e-4 else 0.0), losses
