"""Temperature scaling, calibration error and the thresholds that decide when not to answer."""

from __future__ import annotations

import numpy as np

from inference.calibration import (abstain_threshold, apply_temperature, calibrate, expected_calibration_error,
                                   fit_temperature, handoff_threshold)


def calibrated_sample(rng, n: int):
    """Confidences that mean what they say: a row with confidence c is right with probability c."""
    confidence = rng.uniform(0.2, 1.0, n)
    return confidence, rng.uniform(size=n) < confidence


def test_abstain_threshold_meets_its_target_on_a_calibrated_case():
    rng = np.random.default_rng(0)
    # a promise with 90 % confidence near 5 % needs many rows when the risk rises slowly with 1 - c
    confidence, correct = calibrated_sample(rng, 20000)
    t = abstain_threshold(confidence, correct, max_wrong=0.05)
    shown = confidence >= t
    assert (~correct[shown]).mean() <= 0.05
    assert 0.85 < t < 0.97  # the target needs roughly the top tenth of confidences
    # and it holds for the source, not only for the sample it was chosen on: above t the
    # expected wrong-rate of this source is mean(1 - c | c >= t) = (1 - t) / 2
    assert (1 - t) / 2 <= 0.05


def test_abstain_threshold_answers_nothing_when_no_cut_meets_the_target():
    confidence = np.array([0.9, 0.8, 0.7])
    assert abstain_threshold(confidence, np.array([False, True, True]), 0.05) > 1.0
    # three right answers are too few to promise 5 %; ninety are enough (83 at the least)
    assert abstain_threshold(confidence, np.array([True, True, True]), 0.05) > 1.0
    assert abstain_threshold(np.linspace(0.5, 1, 60), np.ones(60, dtype=bool), 0.05) > 1.0
    assert abstain_threshold(np.linspace(0.5, 1, 90), np.ones(90, dtype=bool), 0.05) == 0.5


def test_handoff_threshold_escalates_at_most_the_allowed_share_of_in_scope_tickets():
    rng = np.random.default_rng(1)
    in_scope_conf = rng.uniform(0.3, 1.0, 1000)
    out_conf = rng.uniform(0.0, 0.5, 200)
    confidence = np.concatenate([in_scope_conf, out_conf])
    in_scope = np.array([True] * 1000 + [False] * 200)
    t = handoff_threshold(confidence, in_scope, 0.05)
    assert (in_scope_conf < t).mean() <= 0.05
    assert (out_conf < t).mean() > 0.3  # most out-of-scope tickets fall below it


def test_temperature_scaling_repairs_overconfidence():
    rng = np.random.default_rng(2)
    n, labels = 3000, 5
    logits = rng.normal(size=(n, labels)) * 3.0
    true_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    gold = np.array([rng.choice(labels, p=p) for p in true_probs])  # labels drawn from the true odds
    overconfident = apply_temperature(true_probs, 0.3)  # what an over-trained model reports
    t = fit_temperature(overconfident, gold)
    assert 2.5 < t < 4.0  # undoes the 0.3
    cal = calibrate(overconfident, gold, max_wrong=0.05)
    assert cal.ece_after < cal.ece_before / 2
    assert cal.wrong_when_shown <= 0.05 and 0 < cal.coverage < 1


def test_ece_is_zero_for_perfect_calibration_and_large_for_overconfidence():
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([True, True])) == 0.0
    assert expected_calibration_error(np.array([0.99] * 10), np.array([True] * 5 + [False] * 5)) > 0.45
