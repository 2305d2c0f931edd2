"""Is the promise holding? Realised rates with intervals, the exchangeability check, the hand-off threshold re-set
from clicked tickets, the alert, and the warning in status, on the dashboard and under posted suggestions.

Real SQLite and PostgreSQL (rows stored as the store stores them, clicks through the feedback table's trigger),
real Redis. Numbers are worked out by hand in the comments. The posted messages: tests/test_promise_footer.py."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.lifecycle.status import gather_status, status_text
from bot.links import Links
from bot.monitor import promise, rules
from bot.monitor.alerts import PROMISE_BROKEN
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.base import utc_now
from bot.store.feedback import Feedback
from bot.store.promise_checks import PromiseCheck
from bot.store.tickets import OUT_OF_SCOPE, SUGGESTED, UNSURE, Suggestion, Ticket
from bot.web.app import create_app
from inference.calibration import binomial_cdf, calibrate
from inference.drift import quantile
from inference.registry import DRIFT
from tests.demo_names import DEMO_TASK

REDIS_DB = 12  # this module's own database on the local Redis, flushed around every test
B, C, H = "billing_dispute", "claim_status", "hand_off"
LINK_SECRET, PUBLIC = "promise-link-secret", "https://tuesday.example.test"


def calibration(**changes) -> dict:
    """A real calibration: 150 holdout rows, 120 in scope, right with confidence 0.9: both promises made at 5 %."""
    gold = np.array([0] * 120 + [1] * 30)
    probs = np.where(np.eye(2)[gold] == 1, 0.9, 0.1)
    cal = calibrate(probs, gold, max_wrong=0.05, in_scope=gold == 0, handoff_index=1, fit=False).to_dict()
    assert cal["abstain_guaranteed"] and cal["handoff_guaranteed"]
    return {**cal, "far_hands_off": True, **changes}  # a far cut given in `changes` hands off


def promote(runtime, cal: dict | None, p05: float | None = 0.6) -> str:
    """A version holding only its papers (calibration, drift reference with holdout p05), made production."""
    staging = runtime.registry.stage()
    if p05 is not None:
        (staging / DRIFT).write_text(json.dumps({"holdout_similarity": {"n": 400, "p05": p05, "p50": 0.75, "min": 0.3},
                                                 "training_labels": {B: 20, C: 20}, "n_train": 40, "vocabulary": {}}))
    info = runtime.registry.commit(staging, {"family": "encoder", "metrics": {"n": 150, "macro_f1": 0.8},
                                            **({"calibration": cal} if cal else {})})
    runtime.production.switch(info.name, by="test", reason="constructed")
    return info.name


def store(runtime, version: str, rows: list[tuple], *, now: datetime, start: int = 0) -> None:
    """Suggestions made in the hour before `now`: (routing, label shown, confidence, similarity, clicked labels,
    model's top label or None for the label shown), each its own ticket; a click per clicked label, in order."""
    with runtime.sessions() as s:
        for i, (routing, shown, confidence, similarity, clicks, *top) in enumerate(rows):
            at = now - timedelta(minutes=60) + timedelta(seconds=i)
            ticket = Ticket(source="test", external_id=f"{version}-{start + i}", text="masked", created_at=at)
            s.add(ticket)
            s.flush()
            row = Suggestion(task=DEMO_TASK, ticket_id=ticket.id, label=shown, routing=routing, confidence=confidence,
                             model_version=version, latency_ms=10.0, created_at=at, posted_at=at,
                             nearest_similarity=similarity, predicted_label=(top[0] if top else None) or shown or C)
            s.add(row)
            s.flush()
            for n, label in enumerate(clicks):
                s.add(Feedback(task=DEMO_TASK, suggestion_id=row.id, ticket_id=ticket.id, user_id=f"U{n}",
                               action="accept" if label == shown else "change", label=label, model_version=version,
                               created_at=at + timedelta(seconds=30 + n)))
        s.commit()


@pytest.fixture
def runtime(store_url):
    return Runtime(Settings(database_url=store_url))


# -- realised rates ---------------------------------------------------------------------------------------------

def clicked_week() -> list[tuple]:
    """shown: 30 + 6 + 2 = 38 clicked, 6 + 2 = 8 ended with another label; in scope (final label not hand_off):
    30 + 6 + 4 + 5 = 45, of which the 4 handed off were wrong escalations."""
    return ([(SUGGESTED, B, 0.9, 0.8, [B])] * 30            # shown, kept
            + [(SUGGESTED, B, 0.8, 0.8, [B, C])] * 6        # kept first, changed later: the LAST click decides
            + [(OUT_OF_SCOPE, H, 0.2, 0.8, [C], C)] * 4     # handed off (by confidence), agents gave a label: wrong
            + [(OUT_OF_SCOPE, H, 0.2, 0.8, [H], C)] * 3     # handed off rightly: out of scope
            + [(UNSURE, None, 0.4, 0.8, [C])] * 5           # unsure, labelled: in scope, not escalated
            + [(SUGGESTED, C, 0.7, 0.8, [H])] * 2           # shown, then handed off: wrong, out of scope
            + [(SUGGESTED, B, 0.9, 0.8, [])] * 3)           # never clicked: counted nowhere


def test_realised_rates_count_last_clicks_with_clopper_pearson_intervals(runtime):
    now = utc_now()
    version = promote(runtime, calibration())
    store(runtime, version, clicked_week(), now=now)
    store(runtime, "v0", [(SUGGESTED, B, 0.9, 0.8, [C])] * 5, now=now, start=100)  # another version's
    got = promise.realised(runtime, version, now - timedelta(days=7), now, calibration())
    shown, escalations = got["shown"], got["escalations"]
    assert (shown["wrong"], shown["n"], escalations["wrong"], escalations["n"]) == (8, 38, 4, 45)
    assert shown["rate"] == pytest.approx(8 / 38) and got["level"] == 0.9 and got["max_wrong"] == 0.05
    # Each end is the exact binomial tail at (1 - 0.9) / 2 ...
    for rate in (shown, escalations):
        k, n = rate["wrong"], rate["n"]
        assert 1 - binomial_cdf(k - 1, n, rate["low"]) == pytest.approx(0.05, abs=1e-9)
        assert binomial_cdf(k, n, rate["high"]) == pytest.approx(0.05, abs=1e-9)
    # ... and equals the beta quantiles (scipy.stats.beta.ppf(0.05, 10, 91), .ppf(0.95, 11, 90) for 10 of 100)
    low, high = promise.interval(10, 100, 0.9)
    assert (low, high) == (pytest.approx(0.0552632377, abs=1e-9), pytest.approx(0.1637176233, abs=1e-9))
    assert promise.interval(0, 45, 0.9) == (0.0, pytest.approx(1 - 0.05 ** (1 / 45), abs=1e-9))
    assert promise.interval(0, 0, 0.9) == (None, None)


def test_a_shown_hand_off_label_is_an_escalation(runtime):
    now = utc_now()
    version = promote(runtime, calibration())
    store(runtime, version, [(SUGGESTED, H, 0.95, 0.8, [C])] * 2 + [(SUGGESTED, H, 0.95, 0.8, [H])]
          + [(SUGGESTED, B, 0.9, 0.8, [B])] * 3, now=now)
    got = promise.realised(runtime, version, now - timedelta(days=7), now, calibration())
    # shown: all 6, 2 wrong; in scope: the 2 handed off that agents labelled claim_status and the 3 kept
    assert (got["shown"]["wrong"], got["shown"]["n"]) == (2, 6)
    assert (got["escalations"]["wrong"], got["escalations"]["n"]) == (2, 5)


# -- the alert ---------------------------------------------------------------------------------------------------

def test_the_alert_fires_when_the_interval_lies_above_the_promise_not_when_it_straddles(runtime):
    s = Settings()  # at least 20 clicked tickets
    cal = calibration()

    def rates(k_shown: int, n_shown: int, k_esc: int = 0, n_esc: int = 100, guaranteed: bool = True) -> dict:
        return {"version": "v3", "level": 0.9, "max_wrong": 0.05,
                "shown": promise._rate(k_shown, n_shown, 0.9, 0.05, guaranteed),
                "escalations": promise._rate(k_esc, n_esc, 0.9, 0.05, guaranteed)}

    # 12 of 100 wrong: the interval 7.1-18.7 % lies above 5 %
    finding = rules.promise_finding(rates(12, 100), s, version="v3")
    assert finding.kind == PROMISE_BROKEN == "promise_broken" and finding.key == "v3"
    assert "wrong among shown suggestions 12.0 % (12 of 100; 90 % interval 7.1 %–18.7 %)" in finding.message
    assert "promised at most 5.0 %" in finding.message and "`/tuesday rollback`" in finding.message
    assert "escalations" not in finding.measures
    # 8 of 100: the point estimate (8 %) is above 5 %, the interval (4.0-14.0 %) straddles it: no alert
    assert rules.promise_finding(rates(8, 100), s, version="v3") is None
    # wrong escalations alone, 6 of 40 (15 %; interval 6.7-27.5 %)
    finding = rules.promise_finding(rates(0, 100, 6, 40), s, version="v3")
    assert "wrong escalations 15.0 % (6 of 40" in finding.message and "shown" not in finding.measures
    assert rules.promise_finding(rates(5, 19), s, version="v3") is None  # 26 %, but under 20 clicked tickets
    assert rules.promise_finding(rates(12, 100, guaranteed=False), s, version="v3") is None  # nothing was promised

    # Through the rules over the store: 8 of 38 shown wrong (interval 10.9-34.8 %) is above 5 %; 4 of 45 escalations
    # (interval 3.1-19.2 %) straddles it.
    now = utc_now()
    store(runtime, promote(runtime, cal), clicked_week(), now=now)
    [found] = [f for f in rules.evaluate(runtime, now) if f.kind == PROMISE_BROKEN]
    assert set(found.measures) >= {"shown"} and "escalations" not in found.measures
    assert found.measures["shown"]["low"] == pytest.approx(0.1093, abs=0.0001)


# -- the exchangeability check -------------------------------------------------------------------------------------

def test_the_stated_bound():
    assert promise.is_shifted(12, 100) and not promise.is_shifted(11, 100)  # P(X >= 11) = 0.011, not < 0.01
    assert not promise.is_shifted(49, 49)  # fewer than 50 tickets say nothing
    assert not promise.is_shifted(150, 2000)  # 7.5 %: very unlikely under 5 %, but under the 10 % floor
    assert promise.is_shifted(8, 50) and not promise.is_shifted(7, 50)


def draws(rng: random.Random, n: int, mean: float) -> list[float]:
    return [round(min(1.0, max(0.0, rng.gauss(mean, 0.08))), 4) for _ in range(n)]


def test_exchangeable_tickets_are_not_called_shifted_and_moved_ones_are():
    """400 holdout similarities and 500 live ones (one window), 200 seeded draws each: from the same distribution
    (N(0.72, 0.08)) and from one moved by 0.1."""
    same = moved = 0
    for seed in range(200):
        rng = random.Random(seed)
        p05 = quantile(draws(rng, 400, 0.72), 0.05)
        live = draws(rng, 500, 0.72)
        same += promise.is_shifted(sum(s < p05 for s in live), len(live))
        live = draws(rng, 500, 0.62)
        moved += promise.is_shifted(sum(s < p05 for s in live), len(live))
    assert same <= 2 and moved == 200, (same, moved)


def test_a_check_stores_shifted_for_live_tickets_mostly_below_p05_and_not_for_exchangeable_ones(runtime):
    now = utc_now()
    version = promote(runtime, calibration(), p05=0.6)
    rng = random.Random(3)
    store(runtime, version, [(SUGGESTED, B, 0.9, s, []) for s in draws(rng, 300, 0.75)], now=now - timedelta(hours=2))
    assert promise.check_promises(runtime, now) == {DEMO_TASK: False}
    with runtime.sessions() as session:
        [row] = session.scalars(select(PromiseCheck)).all()
    # 300 within the 7 days, all drawn around 0.75: a few below 0.6
    assert (row.n, row.shifted, row.rule, row.reset_handoff) == (300, False, None, None) and row.below < 20
    assert promise.check_promises(runtime, now + timedelta(minutes=4)) == {}  # checked every 5 minutes

    # 200 newer tickets, mostly below 0.6: the newest 500 hold them all
    store(runtime, version, [(SUGGESTED, B, 0.9, s, []) for s in draws(rng, 200, 0.5)], now=now, start=1000)
    assert promise.check_promises(runtime, now + timedelta(minutes=5)) == {DEMO_TASK: True}
    with runtime.sessions() as session:
        row = session.scalars(select(PromiseCheck).order_by(PromiseCheck.id.desc())).first()
    assert row.n == 500 and row.below > 100 and row.shifted and row.p_value < 1e-6
    # no ticket was clicked: the re-set has nothing to rest on
    assert (row.rule, row.reset_handoff, row.far_on, row.clicked_n) == (promise.LABEL_ONLY, 0.0, False, 0)


# -- the re-set rule -------------------------------------------------------------------------------------------------

def clicked(n_in_scope: int = 45) -> list[tuple]:
    """(confidence, model's top label, similarity, final label): in-scope tickets at 0.40, 0.41, ... with a
    similarity of 0.6, and 5 out-of-scope ones (final label hand_off) at 0.1 that no threshold counts.
    45 in-scope tickets is the fewest a 5 % promise at 90 % takes (0.95^45 = 0.099): the threshold is the
    lowest in-scope score."""
    return [(0.40 + i / 100, B, 0.6, B) for i in range(n_in_scope)] + [(0.1, C, 0.6, H)] * 5


def test_the_reset_keeps_the_far_rule_when_it_still_promises():
    got = promise.reset_handoff(clicked(), H, calibration(far_threshold=0.2))
    assert got["rule"] == promise.RESET and got["far_on"] is True
    assert got["reset_handoff"] == pytest.approx(0.40)  # the lowest in-scope score
    assert got["reset_bound"] == pytest.approx(1 - 0.1 ** (1 / 45), abs=1e-9)
    assert (got["clicked_n"], got["in_scope_n"]) == (50, 45)


def test_the_reset_turns_the_far_rule_off_when_only_that_promises():
    rows = clicked()
    rows[3] = (0.43, B, 0.1, B)  # far (0.1 < 0.2): scores 0 with the far rule, 0.43 without
    got = promise.reset_handoff(rows, H, calibration(far_threshold=0.2))
    assert (got["rule"], got["far_on"]) == (promise.RESET_FAR_OFF, False)
    assert got["reset_handoff"] == pytest.approx(0.40)


def test_the_reset_leaves_far_tickets_that_ask_for_a_label_marked_and_uncounted():
    rows = clicked()
    rows[3] = (0.43, B, 0.1, B)  # far, but this version's far tickets ask for a label: never escalated
    got = promise.reset_handoff(rows, H, calibration(far_threshold=0.2, far_hands_off=False))
    assert (got["rule"], got["far_on"]) == (promise.RESET, True)
    assert got["reset_handoff"] == pytest.approx(0.40)


def test_the_reset_hands_off_by_label_only_when_nothing_promises():
    rows = clicked()
    rows[3] = (0.43, H, 0.6, B)  # the model answered hand_off on an in-scope ticket: 0 whatever the far rule
    got = promise.reset_handoff(rows, H, calibration(far_threshold=0.2))
    assert (got["rule"], got["reset_handoff"], got["reset_bound"], got["far_on"]) == (promise.LABEL_ONLY, 0.0, None,
                                                                                       False)
    too_few = promise.reset_handoff(clicked(44), H, calibration())
    assert (too_few["rule"], too_few["reset_handoff"], too_few["in_scope_n"]) == (promise.LABEL_ONLY, 0.0, 44)


def test_a_shifted_check_resets_the_threshold_from_its_windows_clicked_tickets(runtime):
    now = utc_now()
    version = promote(runtime, calibration(far_threshold=0.2), p05=0.6)
    rows = [(SUGGESTED, B, conf, 0.5, [final]) for conf, _, _, final in clicked()]  # all below p05 0.6
    store(runtime, version, rows + [(SUGGESTED, B, 0.95, 0.7, [])] * 10, now=now)
    assert promise.check_promises(runtime, now) == {DEMO_TASK: True}
    with runtime.sessions() as session:
        [row] = session.scalars(select(PromiseCheck)).all()
    assert (row.n, row.below, row.rule, row.far_on, row.clicked_n, row.in_scope_n) == (60, 50, promise.RESET, True,
                                                                                       50, 45)
    assert row.reset_handoff == pytest.approx(0.40)


# -- status and the dashboard ------------------------------------------------------------------------------------------

@pytest.fixture
def web_env(monkeypatch, redis_url, store_url):
    for key, value in {"REDIS_URL": redis_url, "DATABASE_URL": store_url, "LINK_SECRET": LINK_SECRET,
                       "PUBLIC_URL": PUBLIC}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    runtime = Runtime(Settings())
    queues = Queues.from_settings(runtime.settings)
    yield runtime, queues
    queues.close()


def dashboard_text(runtime, queues, now: datetime) -> str:
    from tests.test_dashboard import text_of

    clock = now.timestamp
    web = TestClient(create_app(runtime, queues, clock=clock))
    url = Links.for_runtime(runtime, clock=clock).url("/dashboard")[len(PUBLIC):] + "&days=7"
    response = web.get(url)
    assert response.status_code == 200, response.text
    return " ".join(text_of(response.text).split())


def test_status_and_dashboard_warn_when_live_tickets_shift(web_env):
    runtime, queues = web_env
    now = utc_now()
    version = promote(runtime, calibration(), p05=0.6)
    store(runtime, version, clicked_week(), now=now)  # similarity 0.8: like the holdout
    promise.check_promises(runtime, now)
    text = status_text(gather_status(runtime, queues))
    assert "Promise not valid now" not in text
    assert ("clicked in the last 7 days (90 % intervals): wrong among shown 21.1 % (8 of 38; interval 10.9 %–34.8 %), "
            "promised ≤ 5 %; wrong escalations 8.89 % (4 of 45; interval 3.09 %–19.2 %), promised ≤ 5 %") in text
    words = dashboard_text(runtime, queues, now)
    assert "Is the promise holding?" in words and "Promise not valid now" not in words
    assert "wrong among shown suggestions ≤ 5.0% 8 of 38 21.1% 10.9% – 34.8%" in words
    assert "live tickets look like the promise's rows" in words

    # 60 new tickets far from everything labelled: 60 of the newest 113 below p05 (53 %)
    store(runtime, version, [(SUGGESTED, B, 0.9, 0.3, [])] * 60, now=now + timedelta(minutes=6), start=500)
    promise.check_promises(runtime, now + timedelta(minutes=6))
    text = status_text(gather_status(runtime, queues))
    assert ":warning: *Promise not valid now: 60 of the last 113 tickets (53.1 %) are less similar to any labelled " \
           "ticket than 95 % of the holdout (5 % expected" in text
    # its 45 in-scope clicked tickets (lowest score 0.2 on a wrong escalation: handed off by confidence, not label)
    assert "Hand-off threshold re-set to 20 % from 50 clicked tickets (45 in scope; ≤ 4.99 % wrong escalations" in text
    words = dashboard_text(runtime, queues, now + timedelta(minutes=6))
    assert "Promise not valid now: 60 of the last 113 tickets" in words and "live tickets differ from" in words
