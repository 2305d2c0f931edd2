"""Is the promise holding? A version's realised error rates from clicks, and whether live tickets are still
exchangeable with the rows its promise was measured on.

- Realised rates (per version, over a window, the LAST click's label being the truth as in bot.monitor.queries):
  *wrong escalations* = of clicked tickets whose final label is in scope (not the hand-off label), the share the
  version handed off (routed out of scope, or shown with the hand-off label); *wrong among shown* = of clicked suggestions that showed a label, the share whose
  final label is another. Each with a two-sided Clopper-Pearson interval at the version's promise confidence.
- Exchangeability: under it, a live ticket's nearest-neighbour similarity falls below the holdout's 5th
  percentile (drift.json) 5 % of the time, so k of n live tickets below it is Binomial(n, 0.05). Far more is a
  shift: the promise is not valid now, and the hand-off threshold is re-set from the clicked tickets
  (`reset_handoff`) until the tickets look like the promise's rows again.

The CPU workers' upkeep runs `check_promises` every CHECK_EVERY and stores each check (bot.store.promise_checks);
every suggest worker reads its version's newest check through `PromiseCache`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.error_ids import logged
from bot.monitor.drift import reference
from bot.store.base import as_utc, utc_now
from bot.store.promise_checks import PromiseCheck, add_check, newest_check
from bot.store.tickets import OUT_OF_SCOPE, SUGGESTED, Suggestion
from inference.calibration import binomial_cdf, binomial_upper, handoff_cut, promise_lines

log = logging.getLogger(__name__)

# The window a check reads: the production version's newest WINDOW_TICKETS suggestions made in the last WINDOW
# (newest first, so a shift shows within a few hundred tickets however busy the week was).
WINDOW = timedelta(days=7)
WINDOW_TICKETS = 500
# The stated bound. Below the holdout's p05 a ticket falls 5 % of the time under exchangeability; the live stream
# is "shifted" when, over at least MIN_TICKETS tickets with a similarity, k below is that unlikely under
# Binomial(n, 0.05) (P(X >= k) < SURPRISE) AND at least MIN_SHARE of them: the share floor keeps a large window
# from calling a small excess a shift (p05 is itself estimated from a holdout of finite size).
EXPECTED_BELOW = 0.05
MIN_TICKETS = 50
SURPRISE = 0.01
MIN_SHARE = 0.10
# How often the upkeep checks a version, how long a worker keeps the newest check, and when a check is too old to
# act on (the upkeep stopped): then no override, the version's own thresholds.
CHECK_EVERY = timedelta(minutes=5)
CACHE_S = 60.0
STALE_AFTER = 3 * CHECK_EVERY
READ_TIMEOUT_S = 2.0  # the worker's read of the newest check (PostgreSQL's statement_timeout for it)

# Which case of the re-set rule applied (PromiseCheck.rule).
RESET, RESET_FAR_OFF, LABEL_ONLY, NO_HANDOFF = "reset", "reset_far_off", "label_only", "no_handoff"


# -- realised rates ------------------------------------------------------------------------------------------

def interval(k: int, n: int, level: float) -> tuple[float | None, float | None]:
    """Two-sided Clopper-Pearson interval of a rate seen k times in n at `level` ((None, None) when n is 0).

    The lower end is the upper end of the other outcome's rate, mirrored: P(Binomial(n, p) >= k) = delta exactly
    when P(Binomial(n, 1 - p) <= n - k) = delta (and it is 0 when k is 0).

    >>> [round(x, 4) for x in interval(10, 100, 0.9)]  # scipy.stats.beta.ppf(0.05, 10, 91), .ppf(0.95, 11, 90)
    [0.0553, 0.1637]
    """
    if not n:
        return None, None
    delta = (1 - level) / 2
    return 1.0 - binomial_upper(n - k, n, delta), binomial_upper(k, n, delta)


def _rate(k: int, n: int, level: float, promised: float | None, guaranteed: bool) -> dict:
    low, high = interval(k, n, level)
    return {"wrong": k, "n": n, "rate": k / n if n else None, "low": low, "high": high, "promise": promised,
            "guaranteed": guaranteed}


def realised(runtime, version: str, since: datetime, until: datetime, calibration: dict | None) -> dict:
    """The version's realised rates over [since, until) from its clicked suggestions of the runtime's task.

    Returns {version, level, max_wrong, escalations, shown}; each rate {wrong, n, rate, low, high (the
    interval at `level`), promise (max_wrong), guaranteed (the version's calibration promised it)};
    escalations is None for a task without a hand-off label.
    """
    cal = calibration or {}
    level, max_wrong = float(cal.get("confidence") or 0.9), cal.get("max_wrong")
    handoff = runtime.task.handoff_label
    cols = (Suggestion.routing, Suggestion.label, Suggestion.last_label)
    with runtime.sessions() as session:
        rows = session.execute(select(*cols, func.count()).where(
            Suggestion.model_version == version, Suggestion.task == runtime.task.name,
            Suggestion.created_at >= since, Suggestion.created_at < until, Suggestion.last_label.is_not(None))
            .group_by(*cols)).all()
    t = Counter()
    for routing, shown, final, n in rows:
        if routing == SUGGESTED or (routing is None and shown is not None):
            t["shown"] += n
            t["shown_wrong"] += n if final != shown else 0
        if handoff and final != handoff:
            t["in_scope"] += n
            # handed off: below the hand-off threshold or far (out of scope), or the hand-off label shown
            t["escalated"] += n if routing == OUT_OF_SCOPE or shown == handoff else 0
    return {"version": version, "level": level, "max_wrong": max_wrong,
            "shown": _rate(t["shown_wrong"], t["shown"], level, max_wrong, bool(cal.get("abstain_guaranteed"))),
            "escalations": _rate(t["escalated"], t["in_scope"], level, max_wrong,
                                 bool(cal.get("handoff_guaranteed"))) if handoff else None}


def broken(rate: dict | None, least: int) -> bool:
    """The whole interval lies above a promise the version made, over at least `least` clicked tickets."""
    return bool(rate and rate["guaranteed"] and rate["promise"] is not None and rate["n"] >= least
                and rate["low"] is not None and rate["low"] > rate["promise"])


# -- exchangeability -------------------------------------------------------------------------------------------

def surprise(below: int, n: int) -> float:
    """P(Binomial(n, 0.05) >= below): how unlikely that many live tickets below the holdout's p05 are."""
    return max(0.0, 1.0 - binomial_cdf(below - 1, n, EXPECTED_BELOW)) if n else 1.0


def is_shifted(below: int, n: int) -> bool:
    """The stated bound: n >= MIN_TICKETS, P(Binomial(n, 0.05) >= below) < SURPRISE and below / n >= MIN_SHARE."""
    return n >= MIN_TICKETS and below / n >= MIN_SHARE and surprise(below, n) < SURPRISE


def reset_handoff(rows: list[tuple], handoff_label: str, calibration: dict) -> dict:
    """The hand-off threshold re-set from clicked tickets while the promise is not valid.

    rows: (confidence, model's top label, nearest similarity, final label) of the window's clicked tickets.
    In scope: the final label is not the hand-off label. Each scores 0 when the version hands it off by label
    or by the far rule (similarity below the calibration's far_threshold), else its confidence; the threshold
    is `handoff_cut` of those scores at the version's max_wrong and confidence. No promise: again with the far
    rule off (kept off while shifted); still none: hand off by label only (threshold 0, far rule off). A version
    whose far tickets ask for a label instead (`far_hands_off` false) keeps that marking: it escalates nothing.
    Returns {reset_handoff, reset_bound, far_on, clicked_n, in_scope_n, rule}.
    """
    max_wrong, level = float(calibration.get("max_wrong") or 0.05), float(calibration.get("confidence") or 0.9)
    if calibration.get("far_threshold") and not calibration.get("far_hands_off"):
        # far tickets ask for a label and are not escalated: they stay marked, outside the hand-off rule
        calibration = {**calibration, "far_threshold": 0.0}
        marked = True
    else:
        marked = False
    far_cut = float(calibration.get("far_threshold") or 0.0)
    confidence = np.array([r[0] for r in rows], dtype=np.float64)
    by_label = np.array([r[1] == handoff_label for r in rows], dtype=bool)
    far = np.array([far_cut > 0 and r[2] is not None and r[2] < far_cut for r in rows], dtype=bool)
    in_scope = np.array([r[3] != handoff_label for r in rows], dtype=bool)
    done = {"clicked_n": len(rows), "in_scope_n": int(in_scope.sum())}
    cut = handoff_cut(confidence, in_scope, max_wrong, handed_off=by_label | far, level=level)
    if cut.bound is not None:
        return {**done, "reset_handoff": cut.threshold, "reset_bound": cut.bound, "far_on": far_cut > 0 or marked,
                "rule": RESET}
    if far_cut > 0:
        cut = handoff_cut(confidence, in_scope, max_wrong, handed_off=by_label, level=level)
        if cut.bound is not None:
            return {**done, "reset_handoff": cut.threshold, "reset_bound": cut.bound, "far_on": False,
                    "rule": RESET_FAR_OFF}
    return {**done, "reset_handoff": 0.0, "reset_bound": None, "far_on": marked, "rule": LABEL_ONLY}


def check_version(runtime, version: str, calibration: dict | None, now: datetime | None = None) -> PromiseCheck | None:
    """Check the version's window against its holdout p05 and store the result; None without a reference."""
    now = now or utc_now()
    p05 = ((reference(runtime, version) or {}).get("holdout_similarity") or {}).get("p05")
    if p05 is None:
        return None  # built before drift.json: nothing to compare with
    with runtime.sessions() as session:
        rows = session.execute(
            select(Suggestion.confidence, Suggestion.predicted_label, Suggestion.label, Suggestion.nearest_similarity,
                   Suggestion.last_label)
            .where(Suggestion.model_version == version, Suggestion.task == runtime.task.name,
                   Suggestion.created_at >= now - WINDOW, Suggestion.created_at < now)
            .order_by(Suggestion.created_at.desc(), Suggestion.id.desc()).limit(WINDOW_TICKETS)).all()
    similar = [r.nearest_similarity for r in rows if r.nearest_similarity is not None]
    n, below = len(similar), sum(s < p05 for s in similar)
    shifted = is_shifted(below, n)
    values = {"version": version, "task": runtime.task.name, "checked_at": now, "n": n, "below": below,
              "p05": float(p05), "p_value": surprise(below, n), "shifted": shifted}
    handoff = runtime.task.handoff_label
    if shifted and not handoff:
        values["rule"] = NO_HANDOFF
    elif shifted:
        clicked = [(r.confidence, r.predicted_label or r.label, r.nearest_similarity, r.last_label)
                   for r in rows if r.last_label is not None]
        values.update(reset_handoff(clicked, handoff, calibration or {}))
    row = add_check(runtime.sessions, **values)
    if shifted:
        log.warning("promise of %s not valid now: %d of %d live tickets below the holdout p05 (%s)", version, below, n,
                    values["rule"])
    return row


def check_promises(runtime, now: datetime | None = None) -> dict:
    """The upkeep chore: each task's production version checked when its newest check is CHECK_EVERY old."""
    from inference.errors import RegistryError

    now = now or utc_now()
    done = {}
    for scoped in runtime.each_task():
        version = scoped.production.name()
        if version is None:
            continue
        with scoped.sessions() as session:
            last = newest_check(session, version)
        if last is not None and as_utc(last.checked_at) > now - CHECK_EVERY:
            continue
        try:
            calibration = scoped.registry.get(version).manifest.get("calibration")
        except RegistryError:
            continue  # not in this host's view of the artifact store yet: the next round
        row = check_version(scoped, version, calibration, now)
        done[scoped.task.name] = None if row is None else row.shifted
    return done


def fresh(row: PromiseCheck | None, now: datetime | None = None) -> bool:
    return row is not None and as_utc(row.checked_at) > (now or utc_now()) - STALE_AFTER


class PromiseCache:
    """A suggest worker's view of its version's newest check, read at most every ttl_s seconds with a short timeout.

    `override(version)` is the newest check when it is recent (STALE_AFTER) and shifted, else None: then the
    version's own thresholds apply. A read that fails keeps what was read before (still judged by its age)."""

    def __init__(self, sessions, ttl_s: float = CACHE_S, timeout_s: float = READ_TIMEOUT_S):
        self.sessions, self.ttl_s, self.timeout_s = sessions, ttl_s, timeout_s
        self._rows: dict[str, tuple[float, PromiseCheck | None]] = {}

    def newest(self, version: str) -> PromiseCheck | None:
        read_at, row = self._rows.get(version, (None, None))
        if read_at is None or time.monotonic() - read_at > self.ttl_s:
            try:
                with self.sessions() as session:
                    row = newest_check(session, version, timeout_s=self.timeout_s)
            except SQLAlchemyError as exc:
                # The suggestion goes on with what this worker knew; the next ticket after ttl_s reads again.
                logged(log, exc, "promise: reading the newest check", version=version)
            self._rows[version] = (time.monotonic(), row)
        return row

    def override(self, version: str) -> PromiseCheck | None:
        row = self.newest(version)
        return row if fresh(row) and row.shifted else None


# -- words -------------------------------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.3g} %"


def note_text(check: PromiseCheck) -> str:
    """The suggestion footer while a shifted check holds (short: a Slack context line)."""
    text = (f":warning: Promise not valid now: recent tickets differ from the ones it was measured on "
            f"({check.below} of {check.n} less similar to any labelled ticket than 95 % of the holdout)")
    if check.rule in (RESET, RESET_FAR_OFF):
        text += f"; hand-off threshold re-set to {_pct(check.reset_handoff)} from {check.clicked_n} clicked tickets"
    elif check.rule == LABEL_ONLY:
        text += f"; hands off by label only ({check.clicked_n} clicked tickets are too few to re-set the threshold)"
    return text


def banner_text(check: dict) -> str:
    """What status and the dashboard say while a shifted check holds (check: PromiseCheck.to_dict())."""
    text = (f"Promise not valid now: {check['below']} of the last {check['n']} tickets "
            f"({_pct(check['below'] / check['n'])}) are less similar to any labelled ticket than 95 % of the holdout "
            f"(5 % expected; P = {check['p_value']:.2g}), checked {check['checked_at'][:16].replace('T', ' ')} UTC.")
    rule, clicked, in_scope = check.get("rule"), check.get("clicked_n"), check.get("in_scope_n")
    if rule in (RESET, RESET_FAR_OFF):
        far = "; far rule off while shifted (with it they promise nothing)" if rule == RESET_FAR_OFF else ""
        text += (f" Hand-off threshold re-set to {_pct(check['reset_handoff'])} from {clicked} clicked tickets "
                 f"({in_scope} in scope; ≤ {_pct(check['reset_bound'])} wrong escalations promised from them){far}.")
    elif rule == LABEL_ONLY:
        text += (f" Hands off by label only (far rule off): {clicked} clicked tickets ({in_scope} in scope) promise "
                 "no threshold.")
    return text


def rate_line(name: str, rate: dict | None) -> str | None:
    """'wrong among shown 3.1 % (4 of 130; 90 % interval 1.1–7 %), promised ≤ 5 %'."""
    if rate is None:
        return None
    if not rate["n"]:
        return f"{name}: no clicked tickets yet"
    promised = f", promised ≤ {_pct(rate['promise'])}" if rate["guaranteed"] else ", no promise made"
    return (f"{name} {_pct(rate['rate'])} ({rate['wrong']} of {rate['n']}; interval {_pct(rate['low'])}–"
            f"{_pct(rate['high'])}){promised}")


def summary(runtime, version: str | None, calibration: dict | None, since: datetime, until: datetime) -> dict | None:
    """What status and the dashboard show: {version, lines (the promise in words), realised, check (newest, as a
    dict, or None), fresh (it is recent), banner (text while a recent check says shifted, else None)}."""
    if version is None:
        return None
    with runtime.sessions() as session:
        row = newest_check(session, version)
    check = row.to_dict() if row is not None else None
    recent = fresh(row, until)
    return {"version": version, "lines": promise_lines(calibration),
            "realised": realised(runtime, version, since, until, calibration),
            "check": check, "fresh": recent, "banner": banner_text(check) if recent and row.shifted else None}
