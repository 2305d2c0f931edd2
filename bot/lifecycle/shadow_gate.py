"""The shadow gate (TUESDAY_SHADOW_MIN_TICKETS > 0): a candidate that passed the holdout proves itself on live tickets.

When production exists, a candidate that passes the holdout gate is not switched in at once: it is
put in shadow (audited "shadow" by "tuesday") and its run finishes "passed", with
metrics["shadow"] = {"status": "waiting", ...}. The CPU workers' upkeep (`settle`, once a minute)
then decides each waiting run:

- the candidate is no longer the one in shadow (an admin ended or replaced it, or a later
  retrain's candidate took its place): the run is closed as kept, saying who;
- production moved away from the version it was compared with (a rollback): closed as kept;
- retraining is paused, or fewer than N of its shadowed tickets that production (the version it
  was compared with) suggested were labelled by agents: it waits;
- then: agreement with agents at least production's promotes it (compare-and-set against that
  production), else the run is closed as kept with the numbers. With TUESDAY_PROMOTION_SIGNOFF
  as well, a good result is recorded on the run and its report posted again with the
  "Approve promotion" button: the manager signs after the shadow, not before.

The shadow is ended once its run is decided, and the run's report carries the comparison.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import select, update

from bot.lifecycle.gate import promoted_by
from bot.lifecycle.reports import post_report
from bot.lifecycle.shadow import (
    BY,
    DONE,
    WAITING,
    better_or_equal,
    compare,
    headline,
    last_change,
    shadow_of,
    shadow_state,
    stop_shadow,
)
from bot.store.base import utc_now
from bot.store.production import PointerMoved
from bot.store.runs import PASSED, RetrainRun, get_run, is_paused

log = logging.getLogger(__name__)


def pending_reason(runtime, run) -> str | None:
    """Why a passed run cannot be signed off yet (its shadow has no result), else None."""
    info = shadow_of(run)
    if (info or {}).get("status") != WAITING:
        return None
    c = compare(runtime, run.candidate_version, production=run.production_before)
    return (f"{run.candidate_version} is still in shadow: {c['labelled']} of the {info['min_tickets']} live tickets "
            "it needs are labelled by agents; sign off after its result is posted")


def _close(runtime, slack, run: RetrainRun, status: str, why: str, shadow: dict) -> dict | None:
    """Record the run's outcome once (compare-and-set on its row), post its report; None if another worker did."""
    metrics = {**json.loads(run.metrics or "{}"), "shadow": shadow}
    values = {"status": status, "why": why, "metrics": json.dumps(metrics)}
    with runtime.sessions() as session:
        done = session.execute(update(RetrainRun).where(RetrainRun.id == run.id, RetrainRun.status == PASSED,
                                                        RetrainRun.metrics == run.metrics).values(**values))
        session.commit()
    if done.rowcount != 1:
        return None
    closed = get_run(runtime.sessions, run.id)
    log.info("retrain run %s: %s %s after its shadow (%s)", run.id, closed.candidate_version, status, why)
    post_report(runtime, slack, closed)  # the decision stands in SQL; a Slack failure is written on the run
    return closed.to_dict()


def _decide(runtime, slack, run: RetrainRun, info: dict) -> dict | None:
    sessions, version, compared = runtime.sessions, run.candidate_version, run.production_before
    live = runtime.production.name()
    state = shadow_state(runtime)
    if live != version and (state is None or state["version"] != version):
        last = last_change(runtime) or {"by": "someone"}
        how = (f"{state['version']} took its place in shadow ({last['by']})" if state is not None
               else f"its shadow was ended by {last['by']}")
        return _close(runtime, slack, run, "kept", f"not promoted: {how} before {info['min_tickets']} of its "
                      "live tickets were labelled by agents", {**info, "status": "ended", "at": _now()})
    if live not in (compared, version):
        closed = _close(runtime, slack, run, "kept", f"not promoted: production is {live or 'none'} now, not "
                        f"{compared} that {version} was compared with; a new retrain compares again",
                        {**info, "status": "ended", "at": _now()})
        stop_shadow(runtime, by=BY, reason=f"production moved to {live}", only=version)
        return closed
    if live != version and is_paused(sessions):
        return None  # production does not change while paused; the candidate keeps running in shadow
    c = compare(runtime, version, production=compared)
    if live != version and c["labelled"] < info["min_tickets"]:
        return None
    result = {**info, "status": DONE, "at": _now(), "comparison": c}
    if live != version and not better_or_equal(c):
        closed = _close(runtime, slack, run, "kept", f"not promoted after its shadow: {headline(c)}", result)
        stop_shadow(runtime, by=BY, reason=f"run {run.id} kept", only=version)
        return closed
    if live != version and runtime.settings.promotion_signoff:
        closed = _close(runtime, slack, run, PASSED, f"{run.why}; in shadow: {headline(c)}", result)
        stop_shadow(runtime, by=BY, reason=f"run {run.id} awaits sign-off", only=version)
        return closed
    if live != version:
        try:
            runtime.production.switch(version, by=promoted_by(run), expect=compared,
                                      reason=f"in shadow on live tickets: {headline(c)} (holdout gate: {run.why})")
        except PointerMoved:
            if runtime.production.name() != version:
                return None  # moved in between: the next round closes the run as kept
    # Switched now, or by an earlier round that stopped before recording it.
    closed = _close(runtime, slack, run, "promoted", f"{run.why}; in shadow: {headline(c)}", result)
    stop_shadow(runtime, by=BY, reason=f"{version} promoted", only=version)
    return closed


def _now() -> str:
    return utc_now().isoformat(timespec="seconds")


def settle(runtime, slack=None) -> list[dict]:
    """The upkeep's chore: decide every run whose candidate waits in shadow; returns the runs decided."""
    with runtime.sessions() as session:
        runs = list(session.scalars(select(RetrainRun).where(RetrainRun.status == PASSED).order_by(RetrainRun.id)))
    decided = []
    for run in runs:
        info = shadow_of(run)
        if (info or {}).get("status") == WAITING:
            # each run's own task: its production, its shadow flag, its agents' labels
            scoped = runtime.for_task(run.task) if run.task in runtime.tasks.names else runtime
            outcome = _decide(scoped, slack, run, info)
            if outcome is not None:
                decided.append(outcome)
    return decided
