"""The alert rules: this week's measures against the settings and against the week before.

Each rule is a pure function of measure dicts (bot.monitor.measures shapes) and the settings, so
a test can hand it numbers; `evaluate` reads the store and applies them all. Every message names
what to do about it (the repair target).

    override_findings(per_label_rows, settings, version="v3", corrections={"billing_dispute": 31})
    # [Finding("override", "billing_dispute", "*billing_dispute* overridden 42 % this week ...")]
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from bot.monitor import measures
from bot.monitor.alerts import (
    DRIFT,
    FAILED_TICKETS,
    LABEL_FLOOD,
    LATENCY,
    OVERRIDE,
    PROMISE_BROKEN,
    REVIEW_TIME,
    Finding,
)
from bot.monitor.promise import broken, realised
from bot.store.base import as_utc
from bot.store.production import ProductionPointer
from bot.store.tickets import failed_count
from bot.trail.labellers import correction_floods

WEEK = timedelta(days=7)


def pct(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.0f} %"


def duration(seconds: float | None) -> str:
    """'48 s', '14 min', '3.5 h'."""
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def millis(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def override_findings(rows: list[dict], settings, *, version: str | None, corrections: dict[str, int]) -> list[Finding]:
    """A label overridden more often than TUESDAY_ALERT_OVERRIDE_RATE over at least TUESDAY_ALERT_MIN_REVIEWS reviews.

    rows: measures.per_label of the week; corrections: {label: corrections given to its suggestions
    since `version` went live} (the labelled examples a retrain would learn from).
    """
    found = []
    for row in rows:
        rate, reviewed = row.get("override_rate"), row.get("reviewed") or 0
        if rate is None or reviewed < settings.alert_min_reviews or rate <= settings.alert_override_rate:
            continue
        label = row["label"]
        top = ", ".join(f"{c['to']} ×{c['count']}" for c in (row.get("corrections") or [])[:2])
        since = corrections.get(label, 0)
        message = (f"*{label}* overridden {pct(rate)} this week ({row.get('changed', 0) + row.get('rejected', 0)} "
                   f"of {reviewed} reviews{'; most often ' + top if top else ''}): "
                   f"{since} correction{'s' if since != 1 else ''} since {version or 'the live version'} "
                   f"— `/tuesday retrain`")
        found.append(Finding(OVERRIDE, label, message, {
            "label": label, "override_rate": rate, "reviewed": reviewed, "changed": row.get("changed", 0),
            "rejected": row.get("rejected", 0), "corrections": (row.get("corrections") or [])[:5],
            "corrections_since_version": since, "version": version, "threshold": settings.alert_override_rate}))
    return found


def drift_finding(now: dict, before: dict, settings) -> Finding | None:
    """The drift share at least TUESDAY_ALERT_DRIFT_FACTOR times last week's and above TUESDAY_ALERT_DRIFT_FLOOR.

    now, before: measures.drift of this week and the week before ({version, n, share, new_terms, ...});
    this week needs TUESDAY_ALERT_MIN_REVIEWS suggestions with evidence to count.
    """
    if not drift_may_alert(now, settings):
        return None
    share, earlier = now["share"], before.get("share")
    if earlier is not None and share < settings.alert_drift_factor * earlier:
        return None
    terms = [{"term": t["term"], "count": t["count"], "tickets": t.get("tickets", [])[:5]}
             for t in (now.get("new_terms") or [])[:5]]
    words = ", ".join(f"“{t['term']}” ×{t['count']}" for t in terms)
    version = now.get("version") or "the live version"
    message = (f"Tickets drifting from what {version} learned: {pct(share)} of this week's are less similar to any "
               f"training example than 95 % of the holdout (last week {pct(earlier)})"
               f"{'; new terms: ' + words if words else ''} — label some of them and `/tuesday retrain`; "
               f"`/tuesday dashboard` shows examples")
    return Finding(DRIFT, "", message, {"share": share, "previous_share": earlier, "n": now.get("n"),
                                        "new_terms": terms, "version": now.get("version"),
                                        "factor": settings.alert_drift_factor, "floor": settings.alert_drift_floor})


def drift_may_alert(now: dict, settings) -> bool:
    """This week's drift is above the floor on enough tickets (last week's is then worth reading)."""
    share = now.get("share")
    return share is not None and share >= settings.alert_drift_floor and (now.get("n") or 0) >= settings.alert_min_reviews


def slowdown_findings(now: dict, before: dict, settings) -> list[Finding]:
    """Median review time or p95 latency up TUESDAY_ALERT_SLOWDOWN_FACTOR times against the week before.

    now, before: measures.overview of this week and the week before; each side needs
    TUESDAY_ALERT_MIN_REVIEWS reviews (suggestions, for latency) to count.
    """
    factor, least, found = settings.alert_slowdown_factor, settings.alert_min_reviews, []
    review, review_before = now.get("review_time_s") or {}, before.get("review_time_s") or {}
    if _slower(review.get("p50"), review_before.get("p50"), review.get("n"), review_before.get("n"), factor, least):
        ratio = review["p50"] / review_before["p50"]
        found.append(Finding(REVIEW_TIME, "", (
            f"Review time up: half the suggestions waited over {duration(review['p50'])} for a first click this "
            f"week, {ratio:.1f}× the week before ({duration(review_before['p50'])}; {review['n']} reviews) — "
            f"suggestions are waiting in this channel; `/tuesday health` has the numbers"),
            {"p50_s": review["p50"], "previous_p50_s": review_before["p50"], "n": review["n"], "factor": factor}))
    latency, latency_before = now.get("latency_ms") or {}, before.get("latency_ms") or {}
    if _slower(latency.get("p95"), latency_before.get("p95"), latency.get("n"), latency_before.get("n"), factor,
               least):
        ratio = latency["p95"] / latency_before["p95"]
        found.append(Finding(LATENCY, "", (
            f"Suggestions slower: p95 latency {millis(latency['p95'])} this week, {ratio:.1f}× the week before "
            f"({millis(latency_before['p95'])}; {latency['n']} suggestions) — check the suggest workers "
            f"(`/tuesday status`: queues and workers alive) and which family the live version serves"),
            {"p95_ms": latency["p95"], "previous_p95_ms": latency_before["p95"], "n": latency["n"],
             "factor": factor}))
    return found


def _slower(value, earlier, n, n_before, factor: float, least: int) -> bool:
    if value is None or not earlier or (n or 0) < least or (n_before or 0) < least:
        return False
    return value > factor * earlier


def promise_finding(rates: dict, settings, *, version: str | None) -> Finding | None:
    """A realised rate whose whole interval lies above the version's promise (lower bound > max_wrong), for wrong
    escalations or wrong among shown, over at least TUESDAY_ALERT_MIN_REVIEWS clicked tickets.

    rates: bot.monitor.promise.realised of the week for that version (only promises the version made count).
    """
    names = {"escalations": "wrong escalations", "shown": "wrong among shown suggestions"}
    over = [(key, rates[key]) for key in names if broken(rates.get(key), settings.alert_min_reviews)]
    if not over:
        return None
    def tenth(x: float) -> str:  # a bound just above the promise must not read as equal to it
        return f"{100 * x:.1f} %"

    level = pct(rates["level"])
    said = "; ".join(f"{names[key]} {tenth(r['rate'])} ({r['wrong']} of {r['n']}; {level} interval "
                     f"{tenth(r['low'])}–{tenth(r['high'])})" for key, r in over)
    return Finding(PROMISE_BROKEN, version or "", (
        f"Promise broken: {version or 'the live version'} promised at most {tenth(rates['max_wrong'])}, and this week's "
        f"clicks put it above that even at the low end of the interval: {said} — `/tuesday retrain` on the "
        f"corrections, or `/tuesday rollback` to the version before"),
        {"version": version, "promise": rates["max_wrong"], "level": rates["level"],
         **{key: {k: r[k] for k in ("wrong", "n", "rate", "low", "high")} for key, r in over}})


# -- reading the store ---------------------------------------------------------------------------------

def live_since(runtime) -> tuple[str | None, datetime | None]:
    """(production version, when it went live)."""
    with runtime.sessions() as session:
        pointer = session.scalar(select(ProductionPointer).where(ProductionPointer.slot == runtime.task.name))
    return (None, None) if pointer is None else (pointer.version, as_utc(pointer.switched_at))


def evaluate(runtime, now: datetime) -> list[Finding]:
    """Every rule over the last 7 days (and the 7 before) of the store; what holds.

    The routing task's rules as they always were; each other field's overridden labels too, keyed
    and worded by its task (review time, latency, hand-offs and drift are the ticket's, read once)."""
    found = _evaluate(runtime.for_task(runtime.tasks.routing_name), now)
    given_up = failed_count(runtime.sessions, since=now - timedelta(days=1))
    found += [failed_finding(given_up, failed_count(runtime.sessions), runtime.settings)] if given_up else []
    if runtime.settings.alert_flood_changes:
        floods = correction_floods(runtime.sessions, now, over=runtime.settings.alert_flood_changes)
        found += [flood_finding(person, runtime.settings) for person in floods]
    for scoped in runtime.each_task()[1:]:
        found += [for_field(f, scoped.task.name) for f in _overrides(scoped, *measures.window(7, now))]
    return found


def failed_finding(last_day: int, total: int, settings) -> Finding:
    """Tickets given up on in the last 24 hours (their suggest job failed TUESDAY_SUGGEST_MAX_ATTEMPTS times)."""
    return Finding(FAILED_TICKETS, "", (
        f"{last_day} ticket{'s' if last_day != 1 else ''} given up on in the last 24 h ({total} in all): "
        f"the suggest job failed {settings.suggest_max_attempts} times on each — `tuesday tickets --failed`, "
        "then `tuesday tickets --retry ID` once the cause is fixed"),
        {"last_day": last_day, "total": total, "max_attempts": settings.suggest_max_attempts})


def flood_finding(person: dict, settings) -> Finding:
    """One person changed or rejected more suggestions in the last hour than TUESDAY_ALERT_FLOOD_CHANGES."""
    user, n, held = person["user_id"], person["corrections"], person["held"]
    if held == n:
        then = (f"none of it trains the model (not a labeller): `/tuesday labellers reject <@{user}>` keeps it out "
                "for good, `approve` lets it in")
    else:
        then = ("their labels are training data: if this was not meant, `/tuesday pause` stops retraining while "
                "you look, and `/tuesday labellers` shows how often each person agrees with the others")
    return Finding(LABEL_FLOOD, user, (f"<@{user}> changed or rejected {n} suggestions in the last hour (the alert "
                                       f"is above {settings.alert_flood_changes}); {then}."),
                   {"user_id": user, "corrections": n, "held": held, "over": settings.alert_flood_changes})


def for_field(finding: Finding, task: str) -> Finding:
    """A finding of another field than the routing task: its key and message name the task."""
    message = finding.message.replace("`/tuesday retrain`", f"`/tuesday retrain {task}`")
    return Finding(finding.kind, f"{task}/{finding.key}", f"*{task}*: {message}", {**finding.measures, "task": task})


def _overrides(runtime, since: datetime, until: datetime) -> list[Finding]:
    """The override rule for the runtime's task and its production version."""
    version, went_live = live_since(runtime)
    if version is None:
        return []
    rows = measures.per_label(runtime, since, until, version=version)
    if not any(_over(row, runtime.settings) for row in rows):
        return []
    # Only when a label crosses: the count since the version went live reads more rows.
    lifetime = measures.per_label(runtime, went_live or since, until, version=version)
    corrections = {r["label"]: sum(c["count"] for c in r.get("corrections") or []) for r in lifetime}
    return override_findings(rows, runtime.settings, version=version, corrections=corrections)


def _evaluate(runtime, now: datetime) -> list[Finding]:
    settings = runtime.settings
    since, until = measures.window(7, now)
    earlier = since - WEEK
    version, _ = live_since(runtime)
    this_week, last_week = measures.overview(runtime, since, until), measures.overview(runtime, earlier, since)
    found = slowdown_findings(this_week, last_week, settings)
    if version is not None:
        found += _overrides(runtime, since, until)
        calibration = _calibration(runtime)
        if calibration is not None:
            finding = promise_finding(realised(runtime, version, since, until, calibration), settings, version=version)
            found += [finding] if finding else []
        drift = measures.drift(runtime, since, until)
        if drift_may_alert(drift, settings):
            finding = drift_finding(drift, measures.drift(runtime, earlier, since), settings)
            found += [finding] if finding else []
    return found


def _over(row: dict, settings) -> bool:
    rate = row.get("override_rate")
    return rate is not None and (row.get("reviewed") or 0) >= settings.alert_min_reviews \
        and rate > settings.alert_override_rate


def _calibration(runtime) -> dict | None:
    """The production version's calibration (its promise), or None."""
    from inference.errors import RegistryError

    try:
        info = runtime.production.info()
    except RegistryError:
        return None  # the version's files are not (yet) in the artifact store
    return (info.manifest if info else {}).get("calibration") or None
