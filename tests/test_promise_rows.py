"""Rows that choose never promise (issue 21): the holdout's split, the promise it gives, the far rule."""

from __future__ import annotations

import numpy as np
import pytest

from bot.store.tickets import OUT_OF_SCOPE, SUGGESTED, UNSURE, route
from inference.calibration import FAR_SHARE, calibrate, far_threshold, handoff_allowance, promise_lines
from inference.promise_rows import FROM_SLACK_MIN, IMPORTED, SLACK, promises, split

ALPHA = 0.05


def rows(n: int, prefix: str = "csv", start: int = 0) -> list[dict]:
    return [{"id": f"{prefix}:{i}", "text": f"ticket number {i} about something", "label": "a"}
            for i in range(start, start + n)]


def test_a_text_keeps_its_side_whatever_its_id_and_spelling():
    assert promises("My card  is LOST") == promises("my card is lost")
    imported, clicked = split(rows(300)), split(rows(300, prefix="feedback"))
    assert imported.promise == clicked.promise  # the same texts under other ids
    sides = imported.promise
    assert 0.4 < sum(sides) / len(sides) < 0.6  # about half the holdout promises
    assert split(rows(300) + rows(50, start=300)).promise[:300] == sides  # more data moves no row


def test_the_promise_rests_on_slack_labels_once_there_are_enough():
    few = split(rows(400) + rows(FROM_SLACK_MIN, prefix="feedback", start=1000))
    assert few.source == IMPORTED and 0 < few.slack_rows < FROM_SLACK_MIN
    many = split(rows(400) + rows(3 * FROM_SLACK_MIN, prefix="feedback", start=1000))
    assert many.source == SLACK and many.slack_rows >= FROM_SLACK_MIN
    chosen = [r for r, p in zip(rows(400) + rows(3 * FROM_SLACK_MIN, prefix="feedback", start=1000), many.promise) if p]
    assert chosen and all(r["id"].startswith("feedback:") for r in chosen)
    # the imported rows on the promise side now choose instead
    assert many.choose_n == 400 + 3 * FROM_SLACK_MIN - many.promise_n


def _handoff_probs(u: np.ndarray) -> np.ndarray:
    """In-scope rows whose top probability (label 0) rises with u in [0, 1); label 2 is the hand-off label."""
    top = 1 / 3 + (2 / 3) * u * 0.999
    return np.stack([top, (1 - top) / 2, (1 - top) / 2], axis=1)


def _realised(cal: dict) -> float:
    """Share of new in-scope tickets (u uniform) the threshold escalates: the u whose top equals it."""
    t = cal["handoff_threshold"]
    return float(np.clip((t - 1 / 3) / (2 / 3 * 0.999), 0.0, 1.0))


@pytest.mark.parametrize("disjoint", [False, True])
def test_a_promise_from_rows_that_did_not_choose_holds_over_repeated_draws(disjoint):
    """Twenty candidate scorings, all equally good; the one whose low-confidence tail looks best on the
    choosing rows is kept, as a mix or temperature is kept for looking best. Reused rows then promise
    too much; disjoint rows keep the 90 % promise."""
    rng = np.random.default_rng(7)
    texts = [f"holdout ticket {i}" for i in range(400)]
    promise = np.array(split([{"id": f"csv:{i}", "text": t} for i, t in enumerate(texts)]).promise)
    gold = np.zeros(len(texts), dtype=int)
    broken, draws = 0, 200
    for _ in range(draws):
        candidates = rng.random((20, len(texts)))
        choosing = ~promise if disjoint else np.ones(len(texts), dtype=bool)
        best = int(np.argmax([np.quantile(c[choosing], ALPHA) for c in candidates]))
        cal = calibrate(_handoff_probs(candidates[best]), gold, max_wrong=ALPHA, in_scope=gold != 2, handoff_index=2,
                        fit=False, promise=promise if disjoint else None).to_dict()
        assert cal["handoff_guaranteed"]
        broken += _realised(cal) > ALPHA
    if disjoint:
        assert broken / draws <= 0.15  # promised: at most 10 % of draws (binomial slack over 200 draws)
    else:
        assert broken / draws >= 0.5  # the old reuse: the promise breaks in most draws


def test_the_far_rule_is_set_on_choosing_rows_and_counted_in_the_promise():
    rng = np.random.default_rng(3)
    n = 1200
    gold = np.where(rng.random(n) < 0.1, 2, rng.integers(0, 2, n))
    in_scope = gold != 2
    similarity = np.where(in_scope, rng.uniform(0.5, 0.95, n), rng.uniform(0.1, 0.55, n))
    top = rng.uniform(0.6, 0.99, n)
    probs = np.stack([top, 1 - top, np.zeros(n)], axis=1)  # confident in label 0 everywhere, out of scope too
    promise = rng.random(n) < 0.5
    cal = calibrate(probs, gold, max_wrong=ALPHA, in_scope=in_scope, handoff_index=2, fit=False, promise=promise,
                    similarity=similarity, source=IMPORTED).to_dict()
    # the cut is the in-scope choosing rows' 1 % quantile: these rows alone decide it
    assert cal["far_threshold"] == pytest.approx(far_threshold(similarity[~promise & in_scope], ALPHA))
    assert cal["far_threshold"] == pytest.approx(np.quantile(similarity[~promise & in_scope], ALPHA * FAR_SHARE))
    assert cal["far_hands_off"]  # ~540 in-scope promise rows allow far more escalations than the rule takes
    assert cal["choose_n"] == (~promise).sum() and cal["holdout_n"] == promise.sum()
    far = similarity < cal["far_threshold"]
    assert cal["far_share"] == pytest.approx(far[promise & in_scope].mean())
    # out-of-scope tickets, confident but far from every labelled one, are now caught
    assert far[~in_scope].mean() > 0.5
    # what the far rule escalates is inside the promise: the confidence cut leaves room for it
    escalated = far | (probs.max(1) < cal["handoff_threshold"])
    assert cal["handoff_guaranteed"] and escalated[promise & in_scope].mean() <= cal["handoff_bound"]
    without = calibrate(probs, gold, max_wrong=ALPHA, in_scope=in_scope, handoff_index=2, fit=False,
                        promise=promise).to_dict()
    assert without["far_threshold"] == 0.0 and cal["handoff_threshold"] <= without["handoff_threshold"]
    lines = promise_lines(cal)
    assert any("Unlike every labelled ticket" in line and "handed off" in line for line in lines)
    assert any("rests on imported examples" in line for line in lines)
    assert any(f"{(~promise).sum()} other holdout tickets chose" in line for line in lines)


def test_on_a_small_holdout_far_tickets_ask_for_a_label_and_the_handoff_promise_stays():
    """57 in-scope promise rows may escalate none (5 %, 90 %): the far rule must not spend that budget."""
    rng = np.random.default_rng(5)
    n = 124
    gold = np.where(np.arange(n) < 8, 2, 0)
    similarity = rng.uniform(0.3, 0.9, n)
    top = np.where(gold == 2, 0.4, rng.uniform(0.7, 0.99, n))
    probs = np.stack([top, np.zeros(n), 1 - top], axis=1)
    promise = np.arange(n) % 2 == 0
    cal = calibrate(probs, gold, max_wrong=ALPHA, in_scope=gold != 2, handoff_index=2, fit=False, promise=promise,
                    similarity=similarity).to_dict()
    assert handoff_allowance(cal["holdout_in_scope"], ALPHA) <= 1
    assert cal["far_threshold"] > 0 and not cal["far_hands_off"]
    assert cal["handoff_guaranteed"]  # the confidence cut keeps its promise: far tickets are not escalated
    assert any("asks for a label" in line and "Unlike every labelled ticket" in line for line in promise_lines(cal))
    args = dict(threshold=0.6, handoff_threshold=cal["handoff_threshold"], handoff_label="hand_off",
                far=cal["far_threshold"], far_hands_off=cal["far_hands_off"])
    assert route("claim_status", 0.97, similarity=cal["far_threshold"] - 0.01, **args) == (UNSURE, None)


def test_a_ticket_far_from_everything_is_handed_off_however_confident():
    args = dict(threshold=0.6, handoff_threshold=0.2, handoff_label="hand_off", far=0.45)
    assert route("new_claim", 0.97, similarity=0.62, **args) == (SUGGESTED, "new_claim")
    assert route("new_claim", 0.97, similarity=0.31, **args) == (OUT_OF_SCOPE, "hand_off")
    assert route("new_claim", 0.97, similarity=None, **args) == (SUGGESTED, "new_claim")  # no evidence: no rule
    # a task without a hand-off label marks it as unsure (asks for a label) instead
    assert route("routine", 0.97, threshold=0.6, similarity=0.31, far=0.45) == (UNSURE, None)
    assert route("routine", 0.97, threshold=0.6, similarity=0.31, far=0.0) == (SUGGESTED, "routine")


def test_older_calibrations_say_their_rows_were_reused():
    cal = calibrate(_handoff_probs(np.linspace(0, 1, 200)), np.zeros(200, dtype=int), max_wrong=ALPHA,
                    in_scope=np.ones(200, dtype=bool), handoff_index=2, fit=False).to_dict()
    assert cal["choose_n"] is None
    older = {k: v for k, v in cal.items() if k not in ("choose_n", "promise_source", "far_threshold", "far_share")}
    assert any("The same holdout rows chose" in line for line in promise_lines(older))
    slack = {**cal, "choose_n": 150, "promise_source": SLACK}
    assert any("tickets labelled in Slack" in line for line in promise_lines(slack))
    assert not any("imported" in line for line in promise_lines(slack))


def test_a_row_labelled_by_a_click_is_known_as_labelled_in_slack():
    """The trainer sees only row ids: a click's example must carry the prefix the split looks for."""
    from bot.store.examples import Example
    from bot.store.feedback import FEEDBACK_SOURCE
    from inference.promise_rows import labelled_in_slack

    clicked = Example(task="topic", source=FEEDBACK_SOURCE, external_id="42", text="t", label="a")
    imported = Example(task="topic", source="csv", external_id="42", text="t", label="a")
    assert labelled_in_slack(clicked.to_row()) and not labelled_in_slack(imported.to_row())


def test_the_far_rule_can_be_turned_off_where_a_team_serves(tmp_path, task):
    from bot.worker.predictors import version_thresholds
    from inference.registry import VersionInfo

    info = VersionInfo("v1", tmp_path, {"calibration": {"abstain_threshold": 0.6, "handoff_threshold": 0.2,
                                                        "far_threshold": 0.45, "far_hands_off": True}})
    on, off = version_thresholds(info, task), version_thresholds(info, task, far_rule=False)
    assert (on.far, on.far_hands_off, off.far) == (0.45, True, 0.0)
    assert route("new_claim", 0.97, threshold=on.abstain, handoff_threshold=off.handoff, handoff_label="hand_off",
                 similarity=0.3, far=off.far) == (SUGGESTED, "new_claim")
