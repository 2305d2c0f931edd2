"""The measures: suggestions, reviews, overrides, review time, latency, cost, drift, per window.

Every function reads the store with a few SQL aggregates over [since, until) (by the suggestion's
created_at) and returns plain JSON-safe dicts. Definitions, exactly as computed, are in
docs/monitoring.md ("Measures"); the ones that need a word here:

- a suggestion's *outcome* is decided by its FIRST click (the agent's answer to what was shown):
  accepted (the click's label is the one shown, whatever the button), handed_off (the Hand off
  button), changed, rejected; a suggestion that showed no label (unsure) and got a click is
  `labelled`, not reviewed: there was nothing to override;
- *correctness* is decided by its LAST click (the label the ticket ended with): live precision,
  wrong escalations, missed hand-offs.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select

from bot.monitor.queries import (
    ACCEPTED,
    CHANGED,
    HANDED_OFF,
    LABELLED,
    OUTCOMES,
    REJECTED,
    bounds,
    bucket_of,
    day_key,
    decided,
    histograms,
    in_window,
    outcome,
    percentile,
    rate,
    review_seconds,
    summary,
    tally,
)
from bot.store.base import as_utc, utc_now
from bot.store.production import ModelEvent
from bot.store.runs import RetrainRun
from bot.store.tickets import SUGGESTED, Suggestion

__all__ = ["window", "overview", "per_label", "timeline", "versions", "drift", "measures_for_metrics", "cost",
           "percentile", "outcome", "ACCEPTED", "CHANGED", "REJECTED", "HANDED_OFF", "LABELLED", "OUTCOMES"]

HOLDOUT_METRICS = ("accuracy", "macro_f1", "handoff_recall")
# Histogram buckets of /metrics (upper bounds; +Inf is implied).
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000)
REVIEW_BUCKETS_S = (30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600)


def window(days: int = 7, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(since, until), aware UTC: the `days` before `now` (default: now)."""
    until = as_utc(now) if now is not None else utc_now()
    return until - timedelta(days=days), until


# -- overview ----------------------------------------------------------------------------------------

def overview(runtime, since: datetime, until: datetime | None = None, version: str | None = None) -> dict:
    """The window's headline numbers (all suggestions, or one version's).

    Returns {since, until (ISO), version, tickets (distinct tickets suggested for), suggestions, abstained,
    reviewed (shown a label and clicked), labelled (unsure and clicked), accepted, changed, rejected,
    handed_off, acceptance_rate, override_rate ((changed + rejected) / reviewed), live_precision,
    wrong_escalations, missed_handoffs, unsafe_confident, review_time_s {p50, p90, n},
    latency_ms {p50, p95, n}, cpu_s_per_suggestion, cost {serving_per_1000, training_per_1000,
    total_per_1000, cpu_hour_price, gpu_hour_price, retrains, training_s}}; rates and percentiles
    are None when nothing was counted.
    """
    since, until = bounds(since, until)
    where = in_window(since, until, version, runtime.task.name)
    with runtime.sessions() as session:
        t = tally(decided(session, where), runtime.task.handoff_label)
        numbers = summary(session, where).get(None) or {"tickets": 0, "cpu_ms": 0.0, "cpu_n": 0, "review_n": 0,
                                                        "latency_ms": [None, None], "review_s": [None, None]}
        runs = _runs(session, since, until, version)
    tickets, latency, review = numbers["tickets"], numbers["latency_ms"], numbers["review_s"]
    cpu_s = None if not numbers["cpu_n"] else numbers["cpu_ms"] / numbers["cpu_n"] / 1000.0
    reviewed = t["reviewed"]
    return {
        "since": since.isoformat(), "until": until.isoformat(), "version": version,
        "tickets": int(tickets), "suggestions": t["suggestions"], "abstained": t["abstained"],
        "reviewed": reviewed, "labelled": t[LABELLED],
        **{name: t[name] for name in OUTCOMES},
        "acceptance_rate": rate(t[ACCEPTED], reviewed),
        "override_rate": rate(t[CHANGED] + t[REJECTED], reviewed),
        "live_precision": rate(t["correct"], reviewed),
        "wrong_escalations": t["wrong_escalations"], "missed_handoffs": t["missed_handoffs"],
        "unsafe_confident": t["unsafe_confident"],
        "review_time_s": {"p50": review[0], "p90": review[1], "n": numbers["review_n"]},
        "latency_ms": {"p50": latency[0], "p95": latency[1], "n": t["suggestions"]},
        "cpu_s_per_suggestion": cpu_s,
        "cost": cost(runtime.settings, tickets=int(tickets), suggestions=t["suggestions"], cpu_s_per_suggestion=cpu_s,
                     runs=runs),
    }


def _runs(session, since, until, version) -> list[dict]:
    """Cost records ({device, train_s, total_s, cpu_s}) of the retrain runs that finished in the window."""
    query = select(RetrainRun.metrics, RetrainRun.candidate_version).where(
        RetrainRun.finished_at >= since, RetrainRun.finished_at < until)
    found = []
    for metrics, candidate in session.execute(query):
        if version is not None and candidate != version:
            continue
        record = (json.loads(metrics or "{}") or {}).get("cost")
        if record:
            found.append(record)
    return found


def run_seconds(record: dict) -> tuple[str, float]:
    """(device, priced seconds) of one retrain: a GPU is held for the whole job (wall seconds);
    on CPU the job's process CPU seconds (every core it kept busy), else its wall seconds."""
    device = "gpu" if str(record.get("device", "cpu")).startswith("cuda") else "cpu"
    if device == "gpu":
        seconds = record.get("total_s") or record.get("train_s") or 0.0
    else:
        seconds = record.get("cpu_s") or record.get("total_s") or record.get("train_s") or 0.0
    return device, float(seconds)


def cost(settings, *, tickets: int, suggestions: int, cpu_s_per_suggestion: float | None, runs: list[dict]) -> dict:
    """Serving and training cost per 1,000 tickets, priced by TUESDAY_CPU_HOUR_PRICE / TUESDAY_GPU_HOUR_PRICE.

    serving_per_1000 = CPU-seconds per suggestion x suggestions per ticket x 1000 / 3600 x CPU price;
    training_per_1000 = sum over the window's retrains of priced seconds / 3600 x their device's price,
    spread over the window's tickets (x 1000 / tickets).
    """
    cpu_price, gpu_price = settings.cpu_hour_price, settings.gpu_hour_price
    serving = None
    if cpu_s_per_suggestion is not None and tickets:
        serving = cpu_s_per_suggestion * (suggestions / tickets) * 1000.0 / 3600.0 * cpu_price
    training_cost, training_s = 0.0, 0.0
    for record in runs:
        device, seconds = run_seconds(record)
        training_s += seconds
        training_cost += seconds / 3600.0 * (gpu_price if device == "gpu" else cpu_price)
    training = None if not tickets else training_cost * 1000.0 / tickets
    total = None if serving is None and training is None else (serving or 0.0) + (training or 0.0)
    return {"serving_per_1000": serving, "training_per_1000": training, "total_per_1000": total,
            "cpu_hour_price": cpu_price, "gpu_hour_price": gpu_price, "retrains": len(runs),
            "training_s": training_s}


# -- per label ----------------------------------------------------------------------------------------

def per_label(runtime, since: datetime, until: datetime | None = None, version: str | None = None) -> list[dict]:
    """One row per label shown (the task's labels first, in its order, then any other label stored):

    [{label, suggested, reviewed, accepted, changed, rejected, handed_off, override_rate, acceptance_rate,
      live_precision, unsafe_confident, corrections: [{to, count}] most common first}].
    corrections are the first clicks that gave another label (changed, rejected or handed off).
    """
    since, until = bounds(since, until)
    handoff = runtime.task.handoff_label
    with runtime.sessions() as session:
        rows = decided(session, in_window(since, until, version, runtime.task.name))
    by_label: dict[str, list] = defaultdict(list)
    corrections: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        shown, _routing, action, first_label, _last, n = row
        if shown is None:
            continue
        by_label[shown].append(row)
        if outcome(shown, action, first_label) in (CHANGED, REJECTED, HANDED_OFF):
            corrections[shown][first_label] += n
    labels = [*runtime.task.labels, *sorted(set(by_label) - set(runtime.task.labels))]
    table = []
    for label in labels:
        t = tally(by_label.get(label, []), handoff)
        reviewed = t["reviewed"]
        table.append({
            "label": label, "suggested": t["suggestions"], "reviewed": reviewed,
            **{name: t[name] for name in OUTCOMES},
            "override_rate": rate(t[CHANGED] + t[REJECTED], reviewed),
            "acceptance_rate": rate(t[ACCEPTED], reviewed),
            "live_precision": rate(t["correct"], reviewed),
            "unsafe_confident": t["unsafe_confident"],
            "corrections": [{"to": to, "count": n} for to, n in
                            sorted(corrections[label].items(), key=lambda kv: (-kv[1], kv[0]))],
        })
    return table


# -- over time ----------------------------------------------------------------------------------------

def timeline(runtime, since: datetime, until: datetime | None = None, bucket: str = "day") -> list[dict]:
    """One row per UTC day (or week, from Monday) with suggestions, oldest first:

    [{start ('YYYY-MM-DD'), suggestions, reviewed, acceptance_rate, override_rate, review_time_p50_s,
      latency_p95_ms, drift_share}]; drift_share is the share of that bucket's suggestions (with evidence,
    of versions with a drift reference) whose nearest example is less similar than their version's
    holdout 5th percentile; None when none qualify.
    """
    from bot.monitor.drift import references

    since, until = bounds(since, until)
    where = in_window(since, until, None, runtime.task.name)
    with runtime.sessions() as session:
        day = bucket_of(session, Suggestion.created_at, bucket)
        # Suggestions come from production versions only (a shadow's are kept apart): the versions
        # ever promoted are the ones the window can hold, read from a small table, not the window.
        served = session.scalars(select(ModelEvent.version).distinct()).all()
        p05 = {v: ref["holdout_similarity"]["p05"] for v, ref in references(runtime, served).items()
               if ref and ref["holdout_similarity"].get("p05") is not None}
        below = None
        if p05:
            threshold = case(*[(Suggestion.model_version == v, p) for v, p in p05.items()], else_=None)
            qualifies = and_(Suggestion.nearest_similarity.is_not(None), threshold.is_not(None))
            below = (qualifies, and_(qualifies, Suggestion.nearest_similarity < threshold))
        numbers = summary(session, where, latency_qs=(0.95,), review_qs=(0.5,), group=day, below=below, tickets=False)
    result = []
    for start, n in sorted((day_key(key), n) for key, n in numbers.items()):
        result.append({
            "start": start, "suggestions": n["suggestions"], "reviewed": n["reviewed"],
            "acceptance_rate": rate(n["accepted"], n["reviewed"]),
            "override_rate": rate(n["overridden"], n["reviewed"]),
            "review_time_p50_s": n["review_s"][0],
            "latency_p95_ms": n["latency_ms"][0],
            "drift_share": rate(n["drift_below"], n["drift_n"]),
        })
    return result


# -- versions -----------------------------------------------------------------------------------------

def versions(runtime) -> list[dict]:
    """Every version in the registry (and any only the store names), oldest first:

    [{version, created_at (ISO), family, accuracy, macro_f1, handoff_recall (holdout, from its manifest),
      promoted_at (ISO, first promotion), promoted_by, signed_off_by, live (in production now),
      suggestions, reviewed, live_acceptance (accepted / reviewed of its suggestions, all time)}].
    """
    with runtime.sessions() as session:
        rows = decided(session, Suggestion.task == runtime.task.name, Suggestion.model_version)
    stats: dict[str, Counter] = defaultdict(Counter)
    per_version: dict[str, list] = defaultdict(list)
    for row in rows:
        per_version[row[0]].append(row[1:])
    for name, grouped in per_version.items():
        stats[name] = tally(grouped, runtime.task.handoff_label)
    with runtime.sessions() as session:
        events = session.execute(select(ModelEvent.version, ModelEvent.at, ModelEvent.by)
                                 .where(ModelEvent.action == "promote").order_by(ModelEvent.id)).all()
        signoffs = dict(session.execute(select(RetrainRun.candidate_version, RetrainRun.signed_off_by)
                                        .where(RetrainRun.signed_off_by.is_not(None))).all())
    promoted: dict[str, tuple] = {}
    for name, at, by in events:
        promoted.setdefault(name, (as_utc(at), by))
    live = runtime.production.name()
    stored = runtime.production.names()
    # ... and versions only the store remembers (suggestions or promotions of files since deleted)
    names = stored + sorted((set(stats) | set(promoted)) - set(stored) - {""}, key=_version_key)
    result = []
    for name in names:
        manifest = runtime.registry.get(name).manifest if name in stored else {}
        metrics = manifest.get("metrics", {})
        at, by = promoted.get(name, (None, None))
        t = stats.get(name, Counter())
        result.append({
            "version": name, "created_at": manifest.get("created_at"), "family": manifest.get("family"),
            **{key: metrics.get(key) for key in HOLDOUT_METRICS},
            "promoted_at": at.isoformat() if at else None, "promoted_by": by,
            "signed_off_by": signoffs.get(name), "live": name == live,
            "suggestions": t["suggestions"], "reviewed": t["reviewed"],
            "live_acceptance": rate(t[ACCEPTED], t["reviewed"]),
        })
    return result


def _version_key(name: str):
    return (0, int(name[1:])) if name[1:].isdigit() else (1, name)


# -- drift (bot.monitor.drift) and /metrics -----------------------------------------------------------

def drift(runtime, since: datetime, until: datetime | None = None) -> dict:
    """The production version's drift over the window: see bot.monitor.drift.drift for the shape."""
    from bot.monitor.drift import drift as compute

    return compute(runtime, since, until)


def measures_for_metrics(runtime) -> dict:
    """Everything /metrics exports for the runtime's task, all time, from a few grouped queries:

    {"suggestions": [{version, label (shown; "" when unsure), routing, count}],
     "decisions": [{version, label (shown; ""), action (first click's outcome: accepted|changed|rejected|
                    handed_off|labelled), count}],
     "latency_ms": {"buckets": [[upper bound ms, cumulative count], ..., ["+Inf", count]], "sum": ms, "count": n},
     "review_time_s": {"buckets": [[upper bound s, cumulative count], ..., ["+Inf", count]], "sum": s, "count": n},
     "cpu_s": {version: total CPU-seconds of its suggestions},
     "production": version name or None}
    Bucket bounds: LATENCY_BUCKETS_MS and REVIEW_BUCKETS_S (cumulative, as Prometheus histograms are).
    """
    cols = (Suggestion.model_version, Suggestion.label, Suggestion.routing, Suggestion.first_action,
            Suggestion.first_label)
    with runtime.sessions() as session:
        grouped = session.execute(select(*cols, func.count(), func.sum(Suggestion.cpu_ms))
                                  .where(Suggestion.task == runtime.task.name).group_by(*cols)).all()
        found = histograms(session, {"latency_ms": (Suggestion.latency_ms, LATENCY_BUCKETS_MS),
                                     "review_time_s": (review_seconds(session), REVIEW_BUCKETS_S)},
                           Suggestion.task == runtime.task.name)
    made, counts, cpu = Counter(), Counter(), defaultdict(float)
    for version, shown, routing, action, first_label, n, cpu_ms in grouped:
        made[(version or "", shown or "", routing or SUGGESTED)] += n
        cpu[version or ""] += float(cpu_ms or 0.0) / 1000.0
        if action is not None:
            counts[(version or "", shown or "", outcome(shown, action, first_label))] += n
    suggestions = [{"version": v, "label": l, "routing": r, "count": n} for (v, l, r), n in sorted(made.items())]
    return {"suggestions": suggestions,
            "decisions": [{"version": v, "label": l, "action": a, "count": n} for (v, l, a), n in sorted(counts.items())],
            **found, "cpu_s": dict(cpu),
            "production": runtime.production.name()}

