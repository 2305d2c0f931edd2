"""Choose a version's label prior on the holdout's choosing rows (inference.priors.VersionPrior).

Training rows are drawn balanced; the tickets a team labels are skewed. The target is the label
frequencies of every row the run sees labelled (training + holdout), the training prior the frequencies
the head learned from; the power of the adjustment is picked on the choosing rows by log-loss after
temperature scaling (0 unless it pays). The prior is set on the predictor, so the evaluation and the
temperature that follow see the probabilities serving will show, and recorded in the family's part of
the manifest, where inference.serving.load_predictor reads it.
"""

from __future__ import annotations

import numpy as np

from inference.priors import POWERS, VersionPrior, choose_power
from inference.task import Task


def choose_prior(predictor, task: Task, choose_rows: list[dict], train_rows: list[dict], all_rows: list[dict],
                 part: dict, *, probs: np.ndarray | None = None, grid=POWERS) -> VersionPrior | None:
    """Set `predictor.prior` to the prior the choosing rows prefer and record it in `part["prior"]`;
    returns it, or None where the chosen power is 0 (the predictor then serves as it did).

    probs: the predictor's own probabilities on choose_rows (task order, no prior) where the caller already
    has them (the mix's pass); otherwise they are computed here, one pass over the rows."""
    labels = task.label_names
    predictor.prior = None
    if probs is None:
        probs = np.array([predictor.probabilities(row["text"]) for row in choose_rows]).reshape(-1, len(labels))
    position = {label: i for i, label in enumerate(labels)}
    gold = np.array([position[row["label"]] for row in choose_rows], dtype=np.int64)
    prior = VersionPrior.from_rows(labels, train_rows, all_rows,
                                   keep=(task.handoff_label,) if task.handoff_label else ())
    power, losses = choose_power(probs, gold, prior, labels, grid)
    chosen = VersionPrior(train=prior.train, target=prior.target, power=power)
    part["prior"] = {**chosen.to_dict(), "losses": {str(p): round(loss, 4) for p, loss in losses.items()},
                     "n_choose": len(choose_rows)}
    predictor.prior = chosen if power else None
    return predictor.prior
