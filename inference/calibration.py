"""Confidence an agent can take at its word, and the thresholds that decide when not to answer.

- temperature scaling: one number T fitted on the holdout; probabilities become p^(1/T),
  renormalised (for both families p is a softmax, so this is softmax(logits / T));
- expected calibration error (ECE): mean |accuracy - confidence| over confidence bins,
  weighted by how many rows fall in each bin;
- abstain threshold: above it at most `max_wrong` of the suggestions shown are wrong, with
  `level` (90 %) confidence over the draw of the holdout ("Selection with Guaranteed Risk",
  Geifman & El-Yaniv 2017: a binary search over cuts, each tested with an exact binomial
  bound, the 1 - level allowed for error split over the tests); below it the message asks for a label;
- hand-off threshold: below it (or when the model answers the hand-off label) a ticket goes to
  a human; chosen as an order statistic of the in-scope holdout so that at most `max_wrong` of
  the tickets a team could handle are escalated, with the same confidence.

Both promises hold for new tickets exchangeable with the holdout (same source, same model).
A holdout too small for the target gets no promise: every ticket asks for a label (abstain)
and only the hand-off label hands off (hand-off), and the calibration says how many rows a
promise needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from inference.promise_text import promise_lines  # noqa: F401  (in words; callers import it from here)


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


def _log_factorials(n: int) -> np.ndarray:
    """log(j!) for j = 0..n (a running sum of logs: log-gamma at the integers, vectorised)."""
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])


def _binomial_pmf(n: int, p: float) -> np.ndarray:
    """P(Binomial(n, p) = j) for j = 0..n, computed in log space so tiny tails stay exact."""
    j = np.arange(n + 1)
    if p <= 0.0 or p >= 1.0:
        return (j == (0 if p <= 0.0 else n)).astype(np.float64)
    lf = _log_factorials(n)
    return np.exp(lf[n] - lf[j] - lf[n - j] + j * math.log(p) + (n - j) * math.log1p(-p))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(min(1.0, _binomial_pmf(n, p)[: k + 1].sum()))


def binomial_upper(wrong: int, n: int, delta: float) -> float:
    """Clopper-Pearson upper bound: the wrong-rate p with P(Binomial(n, p) <= wrong) = delta, so a
    rate above it would show `wrong` or fewer in n rows at most delta of the time.

    >>> round(binomial_upper(0, 45, 0.1), 4)  # 1 - 0.1 ** (1 / 45)
    0.0499
    """
    if wrong >= n:
        return 1.0
    lo, hi = wrong / n, 1.0
    for _ in range(50):  # the CDF falls as p rises; bisect to ~1e-15
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if binomial_cdf(wrong, n, mid) > delta else (lo, mid)
    return hi


@dataclass(frozen=True)
class Cut:
    """A threshold and its promise: the rate it bounds is <= `bound` with the chosen confidence
    (None: no promise), from `n` holdout rows; a promise needs at least `needs` rows."""

    threshold: float
    bound: float | None
    n: int
    needs: int


NOTHING_SHOWN = 1.0 + 1e-9  # an abstain threshold above every confidence: every ticket asks for a label


def _tests(n: int) -> int:
    """How many cuts the abstain search tests on n rows (the error allowance is split over them)."""
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def abstain_needs(max_wrong: float, level: float = 0.9) -> int:
    """Fewest holdout rows on which even a model that is never wrong gets an abstain promise."""
    n = 1
    while (1 - max_wrong) ** n > (1 - level) / _tests(n):
        n += 1
    return n


def abstain_cut(confidence: np.ndarray, correct: np.ndarray, max_wrong: float, *, level: float = 0.9) -> Cut:
    """The abstain threshold showing the most rows whose wrong-rate among shown rows is <= `max_wrong`
    with `level` confidence (Selection with Guaranteed Risk); `NOTHING_SHOWN` when no cut is."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    n = len(confidence)
    order = np.argsort(-confidence, kind="stable")
    conf, wrong = confidence[order], np.cumsum(~correct[order])
    tests = _tests(n)
    delta = (1 - level) / tests
    # Fewer shown rows than `fewest` fail even with none wrong: searching only above them keeps the
    # test count (the search range does not depend on the data) and stops a perfect model on a small
    # holdout from failing at half coverage and searching ever lower.
    fewest = math.ceil(math.log(delta) / math.log1p(-max_wrong))
    best = None
    lo, hi = fewest - 1, n + 1  # the largest cut that passed and the smallest that failed (at first: outside)
    for _ in range(tests if n else 0):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        shown = int(np.searchsorted(-conf, -conf[mid - 1], side="right"))  # ties with the cut are shown too
        # the bound is <= max_wrong exactly when max_wrong is rejected as too small a rate at level delta
        if binomial_cdf(int(wrong[shown - 1]), shown, max_wrong) <= delta:
            lo, best = mid, shown
        else:
            hi = mid
    if best is None:
        return Cut(NOTHING_SHOWN, None, n, abstain_needs(max_wrong, level))
    return Cut(float(conf[best - 1]), binomial_upper(int(wrong[best - 1]), best, delta), n,
               abstain_needs(max_wrong, level))


def abstain_threshold(confidence: np.ndarray, correct: np.ndarray, max_wrong: float, *, level: float = 0.9) -> float:
    """The threshold of `abstain_cut`: above it at most `max_wrong` of shown suggestions are wrong with
    `level` confidence on new tickets, not only on the holdout it was chosen on."""
    return abstain_cut(confidence, correct, max_wrong, level=level).threshold


def handoff_needs(max_wrong: float, level: float = 0.9) -> int:
    """Fewest in-scope holdout rows a hand-off promise needs: (1 - max_wrong)^n <= 1 - level."""
    n = max(1, math.ceil(math.log(1 - level) / math.log1p(-max_wrong)))
    while (1 - max_wrong) ** n > 1 - level:  # guard the rounding of the logarithms
        n += 1
    return n


def handoff_cut(confidence: np.ndarray, in_scope: np.ndarray, max_wrong: float, *,
                handed_off: np.ndarray | None = None, level: float = 0.9) -> Cut:
    """The hand-off threshold t: an in-scope ticket is escalated when the model answers the hand-off
    label (`handed_off`) or its confidence is below t, for at most `max_wrong` of in-scope tickets
    with `level` confidence. 0 (hand off by label only) when the holdout is too small.

    Each in-scope row scores 0 if handed off, else its confidence; t is the k-th smallest score
    with the largest k such that P(Binomial(n, max_wrong) <= k - 1) <= 1 - level: the share of new
    scores below the k-th smallest of n exchangeable ones exceeds max_wrong with that probability.
    """
    in_scope = np.asarray(in_scope, dtype=bool)
    score = np.asarray(confidence, dtype=np.float64)
    if handed_off is not None:
        score = np.where(np.asarray(handed_off, dtype=bool), 0.0, score)
    score = np.sort(score[in_scope])
    n, needs = len(score), handoff_needs(max_wrong, level)
    allowed = np.flatnonzero(np.cumsum(_binomial_pmf(n, max_wrong)) <= 1 - level)  # the k - 1 that pass
    if n < needs or not len(allowed):
        return Cut(0.0, None, n, needs)
    k = int(allowed[-1]) + 1
    threshold = float(score[k - 1])
    if threshold <= 0.0:
        # k or more in-scope rows are handed off by label alone: that share has no promise
        return Cut(0.0, None, n, needs)
    return Cut(threshold, binomial_upper(k - 1, n, 1 - level), n, needs)


def handoff_threshold(confidence: np.ndarray, in_scope: np.ndarray, max_wrong: float, *,
                      handed_off: np.ndarray | None = None, level: float = 0.9) -> float:
    """The threshold of `handoff_cut` (0: no hand-off by confidence)."""
    return handoff_cut(confidence, in_scope, max_wrong, handed_off=handed_off, level=level).threshold


FAR_SHARE = 0.2  # of the hand-off budget (max_wrong), the share of in-scope tickets the far rule aims to take


def far_threshold(similarity: np.ndarray, max_wrong: float, share: float = FAR_SHARE) -> float:
    """The far rule's cut: the nearest-neighbour similarity below which `share` x `max_wrong` of these
    (in-scope, choosing) rows fall, or, with fewer rows than that quantile needs, below their least
    similar one (the rule then takes about 1 / (rows + 1) of tickets); 0.0 (off) without rows.

    A ticket less similar to every labelled one than this is unlike anything the team labelled: it is
    handed off, or asks for a label as a new kind of ticket, whatever the model's confidence. The cut is
    fixed on rows that do not promise, so the promise rows count what it takes (`far_hands_off`).

    >>> round(far_threshold(np.linspace(0.2, 0.9, 1000), 0.05), 4)
    0.207
    >>> far_threshold(np.array([0.5, 0.4, 0.7]), 0.05)
    0.4
    """
    similarity = np.sort(np.asarray(similarity, dtype=np.float64))
    if len(similarity) == 0:
        return 0.0
    q = share * max_wrong
    return float(np.quantile(similarity, q)) if len(similarity) * q >= 1 else float(similarity[0])


def far_rate(n: int, max_wrong: float, share: float = FAR_SHARE) -> float:
    """The share of in-scope tickets the far cut from n choosing rows is set to take: `share` x `max_wrong`, or
    1 / (n + 1) where it is their least similar row (too few rows for that quantile)."""
    q = share * max_wrong
    return q if n * q >= 1 else 1.0 / (n + 1)


def handoff_allowance(n: int, max_wrong: float, level: float = 0.9) -> int:
    """How many of n in-scope promise rows a hand-off promise may escalate (-1: none may be, no promise).

    >>> handoff_allowance(57, 0.05), handoff_allowance(1000, 0.05)
    (0, 40)
    """
    allowed = np.flatnonzero(np.cumsum(_binomial_pmf(n, max_wrong)) <= 1 - level)
    return int(allowed[-1]) if n and len(allowed) else -1


def far_hands_off(far_rate: float, in_scope_promise: int, max_wrong: float, level: float = 0.9) -> bool:
    """Whether far tickets are handed off inside the hand-off promise: only where what the far rule is set to
    take (`far_rate`) is at most half of what the promise rows allow; else they ask for a label (a
    new kind of ticket) and leave the hand-off budget to the confidence cut. Decided from counts alone, never
    from how the promise rows score."""
    allowance = handoff_allowance(in_scope_promise, max_wrong, level)
    return allowance >= 1 and far_rate * in_scope_promise <= allowance / 2


@dataclass
class Calibration:
    """What a version stores and the server applies, and what its thresholds promise.

    Versions calibrated before the promise was stored lack the fields from `confidence` on; versions
    calibrated before choosing and promising rows were split lack the fields from `choose_n` on."""

    temperature: float
    ece_before: float
    ece_after: float
    max_wrong: float
    abstain_threshold: float
    coverage: float  # share of promise rows that would get a suggestion
    wrong_when_shown: float  # share of those that were wrong
    handoff_threshold: float = 0.0
    confidence: float = 0.9  # probability over the holdout's draw that each promise holds
    holdout_n: int = 0  # rows the promises rest on
    abstain_bound: float | None = None  # upper bound on wrong among shown (None: no promise)
    abstain_guaranteed: bool = False
    abstain_needs: int = 0  # holdout rows any abstain promise needs
    holdout_in_scope: int | None = None  # None: the task has no hand-off label
    handoff_bound: float | None = None  # upper bound on wrong escalations of in-scope tickets
    handoff_guaranteed: bool = False
    handoff_needs: int | None = None  # in-scope holdout rows a hand-off promise needs
    choose_n: int | None = None  # rows that chose the temperature (and the mix, prior, family, far cut); None: reused
    promise_source: str | None = None  # inference.promise_rows: "slack" or "imported"
    promise_slack: int = 0  # promise rows labelled in Slack
    far_threshold: float = 0.0  # nearest-neighbour similarity below which a ticket is far from everything (0: off)
    far_share: float | None = None  # share of in-scope promise rows the far rule takes
    far_hands_off: bool = False  # far tickets handed off (in the hand-off promise); else they ask for a label

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(probs: np.ndarray, gold: np.ndarray, *, max_wrong: float, in_scope: np.ndarray | None = None,
              fit: bool = True, handoff_index: int | None = None, confidence: float = 0.9,
              promise: np.ndarray | None = None, similarity: np.ndarray | None = None,
              source: str | None = None, slack_rows: int = 0) -> Calibration:
    """Fit temperature and thresholds on holdout distributions (rows) and gold label indices;
    `handoff_index`: the hand-off label's column; `confidence`: how sure each promise is.

    promise: which rows set the thresholds (inference.promise_rows); the others choose the temperature
    and the far rule. None: every row does both, as before the split (the promise is then optimistic
    by what was chosen on the same rows). similarity: each row's nearest-neighbour similarity to the
    training rows (as serving computes it); with it, the far rule (`far_threshold`), fixed on the
    choosing rows and counted in both promises on the promise rows."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    promise = np.ones(len(gold), dtype=bool) if promise is None else np.asarray(promise, dtype=bool)
    split = not promise.all()
    choose = ~promise if split else promise
    correct = probs.argmax(axis=1) == gold
    temperature = fit_temperature(probs[choose], gold[choose]) if fit else 1.0
    calibrated = apply_temperature(probs, temperature)
    top = calibrated.max(axis=1)
    scope = np.ones(len(gold), dtype=bool) if in_scope is None else np.asarray(in_scope, dtype=bool)
    far_cut, far = 0.0, np.zeros(len(gold), dtype=bool)
    if similarity is not None:
        similarity = np.asarray(similarity, dtype=np.float64)
        far_cut = far_threshold(similarity[choose & scope], max_wrong)
        far = similarity < far_cut
    # A far ticket is never shown: it scores 0 for the abstain cut (handed off, or asks for a label).
    abstain = abstain_cut(np.where(far, 0.0, top)[promise], correct[promise], max_wrong, level=confidence)
    shown = (top >= abstain.threshold) & ~far & promise
    handoff, hands_off = None, False
    if in_scope is not None:
        took = far_rate(int((choose & scope).sum()), max_wrong)  # what the cut is set to take, not what it took
        hands_off = bool(far_cut) and far_hands_off(took, int((scope & promise).sum()), max_wrong, confidence)
        handed_off = (far if hands_off else False) | (probs.argmax(axis=1) == handoff_index
                                                      if handoff_index is not None else False)
        handoff = handoff_cut(top[promise], scope[promise], max_wrong, handed_off=np.broadcast_to(
            handed_off, gold.shape)[promise], level=confidence)
    in_scope_promise = scope & promise
    return Calibration(
        temperature=temperature,
        ece_before=expected_calibration_error(probs.max(axis=1)[promise], correct[promise]),
        ece_after=expected_calibration_error(top[promise], correct[promise]),
        max_wrong=max_wrong,
        abstain_threshold=abstain.threshold,
        coverage=float(shown.sum() / promise.sum()) if promise.any() else 0.0,
        wrong_when_shown=float((~correct[shown]).mean()) if shown.any() else 0.0,
        handoff_threshold=handoff.threshold if handoff else 0.0,
        confidence=confidence,
        holdout_n=int(promise.sum()),
        abstain_bound=abstain.bound,
        abstain_guaranteed=abstain.bound is not None,
        abstain_needs=abstain.needs,
        holdout_in_scope=handoff.n if handoff else None,
        handoff_bound=handoff.bound if handoff else None,
        handoff_guaranteed=bool(handoff and handoff.bound is not None),
        handoff_needs=handoff.needs if handoff else None,
        choose_n=int(choose.sum()) if split else None,
        promise_source=source,
        promise_slack=slack_rows,
        far_threshold=far_cut,
        far_share=float(far[in_scope_promise].mean()) if similarity is not None and in_scope_promise.any() else None,
        far_hands_off=hands_off,
    )
