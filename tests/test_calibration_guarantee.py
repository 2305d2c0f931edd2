"""The thresholds' finite-sample promise: it holds over repeated holdouts, and too small a holdout promises nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bot.lifecycle.reports import report_text
from bot.lifecycle.status import status_text
from inference.calibration import (
    NOTHING_SHOWN,
    abstain_cut,
    abstain_threshold,
    binomial_cdf,
    binomial_upper,
    calibrate,
    handoff_cut,
    handoff_threshold,
    promise_lines,
)

ALPHA, LEVEL = 0.05, 0.9
DRAWS = 300
# a share of draws breaking the promise may exceed 1 - LEVEL by chance: three binomial standard errors
SLACK = 3 * math.sqrt(LEVEL * (1 - LEVEL) / DRAWS)
HANDED_OFF = 0.02  # share of in-scope tickets the model answers with the hand-off label


# -- synthetic sources whose true rates are known in closed form ----------------------------------

def handoff_holdout(rng, n: int):
    """(confidence, in_scope, handed_off) of n in-scope tickets (confidence uniform on [0.2, 1], 2 % answered
    with the hand-off label) and n // 5 out-of-scope ones (confidence uniform on [0, 0.5])."""
    out = n // 5
    confidence = np.concatenate([rng.uniform(0.2, 1.0, n), rng.uniform(0.0, 0.5, out)])
    in_scope = np.arange(n + out) < n
    handed_off = np.concatenate([rng.uniform(size=n) < HANDED_OFF, rng.uniform(size=out) < 0.5])
    return confidence, in_scope, handed_off


def true_wrong_escalations(t: float) -> float:
    """Share of new in-scope tickets escalated at hand-off threshold t: by label, or by confidence below t."""
    return HANDED_OFF + (1 - HANDED_OFF) * min(max((t - 0.2) / 0.8, 0.0), 1.0)


def abstain_holdout(rng, n: int):
    """(confidence, correct): confidence 1 - 0.8 u^3 (u uniform: most tickets are easy), right with that probability."""
    confidence = 1 - 0.8 * rng.uniform(size=n) ** 3
    return confidence, rng.uniform(size=n) < confidence


def true_wrong_when_shown(t: float) -> float:
    """E[1 - c | c >= t] for that source: E[0.8 u^3 | u <= v] with 0.8 v^3 = 1 - t, i.e. (1 - t) / 4."""
    if t > 1:
        return 0.0  # nothing shown, nothing wrong
    return (1 - max(t, 0.2)) / 4


def floor_quantile(confidence, in_scope, max_wrong):
    """The hand-off rule before the promise: the floor(max_wrong * n)-th in-scope confidence, no bound."""
    conf = np.sort(np.asarray(confidence)[in_scope])
    return float(conf[int(np.floor(max_wrong * len(conf)))])


def broken_share(rule, holdout, true_rate, n: int, seed: int) -> float:
    """Share of DRAWS holdouts of size n on which the threshold `rule` chose breaks the target."""
    rng = np.random.default_rng(seed)
    return float(np.mean([true_rate(rule(*holdout(rng, n))) > ALPHA for _ in range(DRAWS)]))


# -- the promise holds ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [60, 100, 300, 1000])
def test_the_handoff_promise_holds_over_repeated_holdouts(n):
    def rule(confidence, in_scope, handed_off):
        return handoff_threshold(confidence, in_scope, ALPHA, handed_off=handed_off, level=LEVEL)

    assert broken_share(rule, handoff_holdout, true_wrong_escalations, n, seed=n) <= 1 - LEVEL + SLACK


@pytest.mark.parametrize("n", [100, 300])
def test_the_floor_quantile_rule_breaks_the_handoff_promise_on_small_holdouts(n):
    def rule(confidence, in_scope, handed_off):
        return floor_quantile(confidence, in_scope, ALPHA)

    assert broken_share(rule, handoff_holdout, true_wrong_escalations, n, seed=n) > 0.4


@pytest.mark.parametrize("n", [60, 100, 300, 1000])
def test_the_abstain_promise_holds_over_repeated_holdouts(n):
    def rule(confidence, correct):
        return abstain_threshold(confidence, correct, ALPHA, level=LEVEL)

    assert broken_share(rule, abstain_holdout, true_wrong_when_shown, n, seed=n) <= 1 - LEVEL + SLACK


def test_the_promises_are_not_vacuous_on_large_enough_holdouts():
    rng = np.random.default_rng(7)
    # (smaller holdouts often have as many rows handed off by label as the target allows: no hand-off by confidence)
    cuts = [handoff_cut(c, i, ALPHA, handed_off=h) for c, i, h in (handoff_holdout(rng, 1000) for _ in range(50))]
    assert all(0.2 < c.threshold < 0.3 and c.bound <= ALPHA for c in cuts)
    cuts = [abstain_cut(*abstain_holdout(rng, 1000), ALPHA) for _ in range(50)]
    assert all(0.7 < c.threshold < 1 and c.bound <= ALPHA for c in cuts)


# -- the exact binomial pieces ---------------------------------------------------------------------

def test_the_binomial_tail_and_its_upper_bound_match_closed_forms():
    for k, n, p in [(0, 10, 0.3), (3, 10, 0.3), (41, 1000, 0.05), (9, 10, 0.99)]:
        exact = sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k + 1))
        assert binomial_cdf(k, n, p) == pytest.approx(exact, rel=1e-9)
    assert binomial_upper(0, 45, 0.1) == pytest.approx(1 - 0.1 ** (1 / 45), abs=1e-12)  # (1 - p)^n = delta
    assert binomial_upper(44, 45, 0.1) == pytest.approx(0.9 ** (1 / 45), abs=1e-12)  # 1 - p^n = delta
    assert binomial_upper(45, 45, 0.1) == 1.0
    assert binomial_cdf(3, 45, binomial_upper(3, 45, 0.1)) == pytest.approx(0.1, abs=1e-9)


# -- too small a holdout promises nothing, and says so ---------------------------------------------

def probs_for(top_label: np.ndarray, confidence: np.ndarray, labels: int = 3) -> np.ndarray:
    """Distributions whose argmax is top_label with that probability, the rest spread evenly."""
    probs = np.tile(((1 - confidence) / (labels - 1))[:, None], (1, labels))
    probs[np.arange(len(top_label)), top_label] = confidence
    return probs


def test_a_holdout_too_small_for_a_handoff_promise_hands_off_by_label_only():
    rng = np.random.default_rng(3)
    small = handoff_cut(rng.uniform(0.2, 1, 44), np.ones(44, bool), ALPHA)
    assert (small.threshold, small.bound, small.needs) == (0.0, None, 45)
    enough = handoff_cut(np.linspace(0.3, 1, 45), np.ones(45, bool), ALPHA)
    assert enough.threshold == 0.3 and enough.bound <= ALPHA  # k = 1: the lowest score

    gold = np.array([0] * 30 + [2] * 10)  # label 2 is the hand-off label: 30 in-scope rows
    cal = calibrate(probs_for(gold, np.full(40, 0.9)), gold, max_wrong=ALPHA, in_scope=gold != 2, handoff_index=2,
                    fit=False)
    assert (cal.handoff_threshold, cal.handoff_guaranteed, cal.holdout_in_scope, cal.handoff_needs) == (0.0, False, 30, 45)
    assert (cal.abstain_threshold, cal.abstain_guaranteed, cal.holdout_n, cal.abstain_needs) == (NOTHING_SHOWN, False, 40, 83)
    assert promise_lines(cal.to_dict()) == [
        "Holdout too small to promise ≤ 5 % of shown suggestions wrong (40 tickets; needs 83): every ticket asks "
        "for a label",
        "Holdout too small to promise ≤ 5 % wrong escalations (30 in-scope tickets; needs 45): no hand-off by "
        "confidence, unsure tickets ask for a label"]


def test_a_model_that_hands_off_too_many_in_scope_tickets_by_label_gets_no_promise():
    rng = np.random.default_rng(4)
    handed_off = rng.uniform(size=200) < 0.2  # a fifth of in-scope tickets answered with the hand-off label
    cut = handoff_cut(rng.uniform(0.2, 1, 200), np.ones(200, bool), ALPHA, handed_off=handed_off)
    assert (cut.threshold, cut.bound) == (0.0, None)
    cal = {"max_wrong": ALPHA, "confidence": LEVEL, "holdout_n": 200, "abstain_threshold": 0.9, "abstain_bound": 0.04,
           "abstain_guaranteed": True, "abstain_needs": 83, "handoff_threshold": 0.0, "holdout_in_scope": 200,
           "handoff_bound": None, "handoff_guaranteed": False, "handoff_needs": 45}
    assert promise_lines(cal)[1] == ("The model answers the hand-off label on too many of 200 in-scope holdout "
                                     "tickets to promise ≤ 5 % wrong escalations: no hand-off by confidence")


# -- where people read it ---------------------------------------------------------------------------

def guaranteed_calibration() -> dict:
    """A calibration with both promises, from a holdout of 600 tickets (480 in scope)."""
    rng = np.random.default_rng(5)
    gold = np.array([0] * 240 + [1] * 240 + [2] * 120)  # label 2 hands off
    right = rng.uniform(size=600) < 0.95
    predicted = np.where(gold == 2, 2, np.where(right, gold, 1 - np.minimum(gold, 1)))
    # wrong answers come with low confidence, hand-offs with lower still
    confidence = np.where(gold == 2, rng.uniform(0.3, 0.6, 600),
                          np.where(right, rng.uniform(0.55, 1.0, 600), rng.uniform(0.5, 0.7, 600)))
    cal = calibrate(probs_for(predicted, confidence), gold, max_wrong=ALPHA, in_scope=gold != 2, handoff_index=2,
                    fit=False).to_dict()
    assert cal["abstain_guaranteed"] and cal["handoff_guaranteed"]
    assert cal["abstain_bound"] <= ALPHA and cal["handoff_bound"] <= ALPHA
    return cal


def test_status_and_the_retrain_report_state_the_promise():
    cal = guaranteed_calibration()
    suggests = (f"Suggests above {100 * cal['abstain_threshold']:.3g} %: ≤ 5 % of shown suggestions wrong with 90 % "
                "confidence, from 600 holdout tickets")
    hands_off = (f"Hands off below {100 * cal['handoff_threshold']:.3g} %: ≤ 5 % wrong escalations with 90 % "
                 "confidence, from 480 in-scope holdout tickets")
    data = {"production": {"version": "v3", "metrics": {"n": 600, "macro_f1": 0.9}, "calibration": cal,
                           "licenses": []},
            "labels_since_training": 0, "retrain_after_labels": 0, "retrain_schedule_hours": 0, "paused": False,
            "paused_by": None, "paused_at": None, "last_run": None, "active_run": None, "queues": None,
            "workers": None, "queue_error": "ConnectionError: refused"}
    text = status_text(data)
    assert f"   {suggests}\n   {hands_off}\n" in text
    run = {"id": 5, "trigger": "command", "requested_by": "U0MANAGER", "status": "promoted", "candidate_version": "v3",
           "production_before": "v2", "why": "macro-F1 0.900 beats production's 0.800",
           "metrics": {"candidate": {"n": 600, "macro_f1": 0.9}, "production": {"n": 600, "macro_f1": 0.8},
                       "calibration": cal}}
    assert f"{suggests}.\n{hands_off}.\n" in report_text(run)


def test_versions_calibrated_before_the_promise_say_no_guarantee_recorded():
    old = {"temperature": 1.2, "ece_before": 0.1, "ece_after": 0.05, "max_wrong": 0.05, "abstain_threshold": 0.7,
           "coverage": 0.6, "wrong_when_shown": 0.03, "handoff_threshold": 0.25}
    said = "Suggests above 70 %, hands off below 25 %: no guarantee recorded (calibrated before Tuesday stored one)"
    assert promise_lines(old) == [said]
    run = {"id": 5, "trigger": "command", "requested_by": "U0MANAGER", "status": "kept", "candidate_version": "v3",
           "production_before": "v2", "why": "no better", "metrics": {"candidate": {"n": 40}, "calibration": old}}
    assert f"{said}." in report_text(run)
    data = {"production": {"version": "v2", "metrics": None, "calibration": None}, "labels_since_training": 0,
            "retrain_after_labels": 0, "paused": False, "last_run": None, "active_run": None,
            "queue_error": "down"}
    assert "   No guarantee recorded (the version has no calibration)" in status_text(data)
