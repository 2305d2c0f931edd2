"""Confidence an agent can take at its word, and the thresholds that decide when not to answer.

- temperature scaling: one number T fitted on the holdout; probabilities become p^(1/T),
  renormalised (for both families p is a softmax, so this is softmax(logits / T));
- expected calibration error (ECE): mean |accuracy - confidence| over confidence bins,
  weighted by how many rows fall in each bin;
- abstain threshold: the lowest confidence above which at most `max_wrong` of the
  suggestions shown are wrong (with 90 % confidence); below it the message asks for a label;
- hand-off threshold: the highest confidence below which at most `max_wrong` of the
  tickets a team could have handled would be escalated; below it the ticket goes to a human.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale distributions (rows) by a temperature; T > 1 softens, T < 1 sharpens."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, gold: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-300, None))))


def fit_temperature(probs: np.ndarray, gold: np.ndarray) -> float:
    """The temperature minimising negative log-likelihood of the gold labels (log-space search)."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    if len(gold) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    losses = [nll(apply_temperature(probs, t), gold) for t in grid]
    best = int(np.argmin(losses))
    # refine between the neighbours of the best grid point
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    fine = np.exp(np.linspace(np.log(lo), np.log(hi), 41))
    return float(fine[int(np.argmin([nll(apply_temperature(probs, t), gold) for t in fine]))])


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width confidence bins."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def wilson_upper(wrong: np.ndarray, n: np.ndarray, z: float = 1.2816) -> np.ndarray:
    """One-sided upper confidence bound (90 % at the default z) of a wrong-rate seen as wrong / n."""
    p = wrong / n
    return (p + z * z / (2 * n) + z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def abstain_threshold(confidence: np.ndarray, correct: np.ndarray, max_wrong: float) -> float:
    """Lowest threshold t such that, among rows with confidence >= t, the wrong-rate is at most
    `max_wrong` with 90 % confidence (its Wilson upper bound), so the target still holds on new
    tickets rather than only on the holdout it was chosen on.

    Returns a value above every confidence (answer nothing) when no threshold meets the target.
    """
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    order = np.argsort(-confidence)
    conf, ok = confidence[order], correct[order]
    n = np.arange(1, len(ok) + 1)
    bound = wilson_upper(np.cumsum(~ok), n)
    best = None
    for i in range(len(conf)):
        # a cut can only fall between distinct confidences
        if (i + 1 == len(conf) or conf[i + 1] < conf[i]) and bound[i] <= max_wrong:
            best = conf[i]
    return float(best) if best is not None else 1.0 + 1e-9


def handoff_threshold(confidence: np.ndarray, in_scope: np.ndarray, max_wrong: float) -> float:
    """Highest threshold t with at most `max_wrong` of in-scope rows having confidence < t (0 if none)."""
    conf = np.sort(np.asarray(confidence, dtype=np.float64)[np.asarray(in_scope, dtype=bool)])
    if len(conf) == 0:
        return 0.0
    allowed = int(np.floor(max_wrong * len(conf)))  # in-scope rows that may fall below t
    return float(conf[allowed]) if allowed < len(conf) else float(conf[-1])


@dataclass
class Calibration:
    """What a version stores and the server applies."""

    temperature: float
    ece_before: float
    ece_after: float
    max_wrong: float
    abstain_threshold: float
    coverage: float  # share of holdout rows that would get a suggestion
    wrong_when_shown: float  # share of those that were wrong
    handoff_threshold: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(probs: np.ndarray, gold: np.ndarray, *, max_wrong: float, in_scope: np.ndarray | None = None,
              fit: bool = True) -> Calibration:
    """Fit temperature and thresholds on holdout distributions (rows) and gold label indices."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    correct = probs.argmax(axis=1) == gold
    temperature = fit_temperature(probs, gold) if fit else 1.0
    calibrated = apply_temperature(probs, temperature)
    confidence = calibrated.max(axis=1)
    threshold = abstain_threshold(confidence, correct, max_wrong)
    shown = confidence >= threshold
    return Calibration(
        temperature=temperature,
        ece_before=expected_calibration_error(probs.max(axis=1), correct),
        ece_after=expected_calibration_error(confidence, correct),
        max_wrong=max_wrong,
        abstain_threshold=threshold,
        coverage=float(shown.mean()) if len(shown) else 0.0,
        wrong_when_shown=float((~correct[shown]).mean()) if shown.any() else 0.0,
        handoff_threshold=handoff_threshold(confidence, in_scope, max_wrong) if in_scope is not None else 0.0,
    )
