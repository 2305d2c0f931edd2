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
import math
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import aliased

from bot.control import RetrainRun
from bot.production import ModelEvent
from bot.store import SUGGESTED, Feedback, Suggestion, as_utc, utc_now

ACCEPTED, CHANGED, REJECTED, HANDED_OFF, LABELLED = "accepted", "changed", "rejected", "handed_off", "labelled"
OUTCOMES = (ACCEPTED, CHANGED, REJECTED, HANDED_OFF)
ACTION_OUTCOME = {"accept": ACCEPTED, "change": CHANGED, "reject": REJECTED, "handoff": HANDED_OFF}
HOLDOUT_METRICS = ("accuracy", "macro_f1", "handoff_recall")
# Histogram buckets of /metrics (upper bounds; +Inf is implied).
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000)
REVIEW_BUCKETS_S = (30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600)


# -- windows and small helpers ---------------------------------------------------------------------

def window(days: int = 7, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(since, until), aware UTC: the `days` before `now` (default: now)."""
    until = as_utc(now) if now is not None else utc_now()
    return until - timedelta(days=days), until


def _bounds(since: datetime, until: datetime | None) -> tuple[datetime, datetime]:
    return as_utc(since), (as_utc(until) if until is not None else utc_now())


def _rate(part: int, whole: int) -> float | None:
    return None if not whole else part / whole


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (what PostgreSQL's percentile_cont computes)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def _pg(session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _seconds_between(session, later, earlier):
    """SQL: seconds from `earlier` to `later` (two timestamp columns)."""
    if _pg(session):
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def bucket_of(session, column, bucket: str = "day"):
    """SQL: the UTC day (or the Monday of the week) of a timestamp column, as 'YYYY-MM-DD'."""
    if bucket not in ("day", "week"):
        raise ValueError(f"bucket must be day or week, not {bucket!r}")
    if _pg(session):
        return func.to_char(func.date_trunc(bucket, func.timezone("UTC", column)), "YYYY-MM-DD")
    return func.date(column) if bucket == "day" else func.date(column, "weekday 0", "-6 days")


def grouped_percentiles(session, value, where, qs: tuple[float, ...], group=None) -> dict:
    """{group value (None without group): [percentile per q]} of a SQL value over the rows `where` selects.

    PostgreSQL computes them (percentile_cont); elsewhere the values are read and computed here.
    """
    keys = [group] if group is not None else []
    if _pg(session):
        cols = [func.percentile_cont(q).within_group(value) for q in qs]
        query = select(*keys, *cols).where(where)
        if group is not None:
            query = query.group_by(group)
        return {(row[0] if group is not None else None): [None if v is None else float(v) for v in row[len(keys):]]
                for row in session.execute(query)}
    values: dict = defaultdict(list)
    for row in session.execute(select(*keys, value).where(where, value.is_not(None))):
        values[row[0] if group is not None else None].append(float(row[-1]))
    return {key: [percentile(vs, q) for q in qs] for key, vs in values.items()}


def _clicks():
    """Subquery: each clicked suggestion's first and last click ids."""
    return (select(Feedback.suggestion_id.label("sid"), func.min(Feedback.id).label("first_id"),
                   func.max(Feedback.id).label("last_id"))
            .group_by(Feedback.suggestion_id).subquery("clicks"))


def _joined(query, clicks, first, last):
    return (query.select_from(Suggestion).outerjoin(clicks, clicks.c.sid == Suggestion.id)
            .outerjoin(first, first.id == clicks.c.first_id).outerjoin(last, last.id == clicks.c.last_id))


def _where(since: datetime, until: datetime, version: str | None):
    conditions = [Suggestion.created_at >= since, Suggestion.created_at < until]
    if version is not None:
        conditions.append(Suggestion.model_version == version)
    return and_(*conditions)


def outcome(shown: str | None, action: str | None, first_label: str | None) -> str | None:
    """A suggestion's outcome from its first click (None: no click yet)."""
    if action is None:
        return None
    if shown is None:
        return LABELLED
    if first_label == shown:
        return ACCEPTED
    return ACTION_OUTCOME.get(action, CHANGED)


def _decided(session, where, *extra) -> list:
    """Rows (extra..., shown, routing, first action, first label, last label, count) of the suggestions `where` selects."""
    clicks, first, last = _clicks(), aliased(Feedback), aliased(Feedback)
    cols = (*extra, Suggestion.label, Suggestion.routing, first.action, first.label, last.label)
    query = _joined(select(*cols, func.count()), clicks, first, last)
    if where is not None:
        query = query.where(where)
    return session.execute(query.group_by(*cols)).all()


def _tally(rows, handoff_label: str | None) -> dict:
    """Counts of outcome rows (shown, routing, action, first label, last label, n)."""
    t = Counter()
    for shown, routing, action, first_label, last_label, n in rows:
        t["suggestions"] += n
        t["abstained"] += n if shown is None else 0
        result = outcome(shown, action, first_label)
        if result is None:
            continue
        t[result] += n
        if result != LABELLED:
            t["reviewed"] += n
            t["correct"] += n if last_label == shown else 0
        if result in (CHANGED, REJECTED) and (routing == SUGGESTED or (routing is None and shown is not None)):
            t["unsafe_confident"] += n
        if handoff_label:
            if shown == handoff_label and last_label != handoff_label:
                t["wrong_escalations"] += n
            if shown != handoff_label and last_label == handoff_label:
                t["missed_handoffs"] += n
    return t


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
    since, until = _bounds(since, until)
    where = _where(since, until, version)
    with runtime.sessions() as session:
        t = _tally(_decided(session, where), runtime.task.handoff_label)
        tickets, cpu_ms, cpu_n = session.execute(
            select(func.count(func.distinct(Suggestion.ticket_id)), func.sum(Suggestion.cpu_ms),
                   func.count(Suggestion.cpu_ms)).where(where)).one()
        latency = grouped_percentiles(session, Suggestion.latency_ms, where, (0.5, 0.95)).get(None, [None, None])
        review = _review_percentiles(session, where, (0.5, 0.9))
        runs = _runs(session, since, until, version)
    cpu_s = None if not cpu_n else float(cpu_ms) / cpu_n / 1000.0
    reviewed = t["reviewed"]
    return {
        "since": since.isoformat(), "until": until.isoformat(), "version": version,
        "tickets": int(tickets), "suggestions": t["suggestions"], "abstained": t["abstained"],
        "reviewed": reviewed, "labelled": t[LABELLED],
        **{name: t[name] for name in OUTCOMES},
        "acceptance_rate": _rate(t[ACCEPTED], reviewed),
        "override_rate": _rate(t[CHANGED] + t[REJECTED], reviewed),
        "live_precision": _rate(t["correct"], reviewed),
        "wrong_escalations": t["wrong_escalations"], "missed_handoffs": t["missed_handoffs"],
        "unsafe_confident": t["unsafe_confident"],
        "review_time_s": {"p50": review[0], "p90": review[1], "n": review[2]},
        "latency_ms": {"p50": latency[0], "p95": latency[1], "n": t["suggestions"]},
        "cpu_s_per_suggestion": cpu_s,
        "cost": cost(runtime.settings, tickets=int(tickets), suggestions=t["suggestions"], cpu_s_per_suggestion=cpu_s,
                     runs=runs),
    }


def _first_clicks():
    """(selectable of suggestions joined to their first click, that click's Feedback alias)."""
    clicks, first = _clicks(), aliased(Feedback)
    joined = (Suggestion.__table__.join(clicks, clicks.c.sid == Suggestion.id)
              .join(first, first.id == clicks.c.first_id))
    return joined, first


def _review_seconds(session, first):
    """SQL: seconds from the suggestion being posted (created, for rows that never were) to its first click."""
    return _seconds_between(session, first.created_at, func.coalesce(Suggestion.posted_at, Suggestion.created_at))


def _review_percentiles(session, where, qs) -> list:
    """[percentile per q..., n] of review seconds over the window's clicked suggestions."""
    joined, first = _first_clicks()
    seconds = _review_seconds(session, first)
    if _pg(session):
        cols = [func.percentile_cont(q).within_group(seconds) for q in qs]
        row = session.execute(select(*cols, func.count()).select_from(joined).where(where)).one()
        return [None if v is None else float(v) for v in row[:-1]] + [int(row[-1])]
    values = [float(v) for v in session.scalars(select(seconds).select_from(joined).where(where)) if v is not None]
    return [percentile(values, q) for q in qs] + [len(values)]


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
    since, until = _bounds(since, until)
    handoff = runtime.task.handoff_label
    with runtime.sessions() as session:
        rows = _decided(session, _where(since, until, version))
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
        t = _tally(by_label.get(label, []), handoff)
        reviewed = t["reviewed"]
        table.append({
            "label": label, "suggested": t["suggestions"], "reviewed": reviewed,
            **{name: t[name] for name in OUTCOMES},
            "override_rate": _rate(t[CHANGED] + t[REJECTED], reviewed),
            "acceptance_rate": _rate(t[ACCEPTED], reviewed),
            "live_precision": _rate(t["correct"], reviewed),
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

    since, until = _bounds(since, until)
    where = _where(since, until, None)
    with runtime.sessions() as session:
        day = bucket_of(session, Suggestion.created_at, bucket)
        versions = [v for (v,) in session.execute(select(Suggestion.model_version).where(where).distinct())]
        p05 = {v: ref["holdout_similarity"]["p05"] for v, ref in references(runtime, versions).items() if ref}
        latency = grouped_percentiles(session, Suggestion.latency_ms, where, (0.95,), group=day)
        joined, first = _first_clicks()
        review = _grouped_over(session, joined, _review_seconds(session, first), where, day)
        drift_rows = {}
        if p05:
            threshold = case(*[(Suggestion.model_version == v, p) for v, p in p05.items()], else_=None)
            qualifies = and_(Suggestion.nearest_similarity.is_not(None), threshold.is_not(None))
            below = func.sum(case((and_(qualifies, Suggestion.nearest_similarity < threshold), 1), else_=0))
            counted = func.sum(case((qualifies, 1), else_=0))
            drift_rows = {d: (int(b or 0), int(c or 0)) for d, b, c in
                          session.execute(select(day, below, counted).where(where).group_by(day))}
        decided = _decided(session, where, day)
    per_bucket: dict[str, list] = defaultdict(list)
    for row in decided:
        per_bucket[row[0]].append(row[1:])
    handoff = runtime.task.handoff_label
    result = []
    for start in sorted(per_bucket):
        t = _tally(per_bucket[start], handoff)
        below, counted = drift_rows.get(start, (0, 0))
        result.append({
            "start": str(start), "suggestions": t["suggestions"], "reviewed": t["reviewed"],
            "acceptance_rate": _rate(t[ACCEPTED], t["reviewed"]),
            "override_rate": _rate(t[CHANGED] + t[REJECTED], t["reviewed"]),
            "review_time_p50_s": review.get(start, [None])[0],
            "latency_p95_ms": latency.get(start, [None])[0],
            "drift_share": _rate(below, counted),
        })
    return result


def _grouped_over(session, joined, value, where, group) -> dict:
    """{group: [p50]} of a value over a joined selectable."""
    if _pg(session):
        query = (select(group, func.percentile_cont(0.5).within_group(value)).select_from(joined)
                 .where(where).group_by(group))
        return {g: [None if v is None else float(v)] for g, v in session.execute(query)}
    values: dict = defaultdict(list)
    for g, v in session.execute(select(group, value).select_from(joined).where(where)):
        if v is not None:
            values[g].append(float(v))
    return {g: [percentile(vs, 0.5)] for g, vs in values.items()}


# -- versions -----------------------------------------------------------------------------------------

def versions(runtime) -> list[dict]:
    """Every version in the registry (and any only the store names), oldest first:

    [{version, created_at (ISO), family, accuracy, macro_f1, handoff_recall (holdout, from its manifest),
      promoted_at (ISO, first promotion), promoted_by, signed_off_by, live (in production now),
      suggestions, reviewed, live_acceptance (accepted / reviewed of its suggestions, all time)}].
    """
    with runtime.sessions() as session:
        rows = _decided(session, None, Suggestion.model_version)
    stats: dict[str, Counter] = defaultdict(Counter)
    per_version: dict[str, list] = defaultdict(list)
    for row in rows:
        per_version[row[0]].append(row[1:])
    for name, grouped in per_version.items():
        stats[name] = _tally(grouped, runtime.task.handoff_label)
    with runtime.sessions() as session:
        events = session.execute(select(ModelEvent.version, ModelEvent.at, ModelEvent.by)
                                 .where(ModelEvent.action == "promote").order_by(ModelEvent.id)).all()
        signoffs = dict(session.execute(select(RetrainRun.candidate_version, RetrainRun.signed_off_by)
                                        .where(RetrainRun.signed_off_by.is_not(None))).all())
    promoted: dict[str, tuple] = {}
    for name, at, by in events:
        promoted.setdefault(name, (as_utc(at), by))
    live = runtime.production.name()
    names = list(runtime.registry.names())
    names += sorted((set(stats) | set(promoted)) - set(names) - {""}, key=_version_key)
    result = []
    for name in names:
        try:
            manifest = runtime.registry.get(name).manifest
        except Exception:  # noqa: BLE001 -- a version only the store remembers (its files deleted)
            manifest = {}
        metrics = manifest.get("metrics", {})
        at, by = promoted.get(name, (None, None))
        t = stats.get(name, Counter())
        result.append({
            "version": name, "created_at": manifest.get("created_at"), "family": manifest.get("family"),
            **{key: metrics.get(key) for key in HOLDOUT_METRICS},
            "promoted_at": at.isoformat() if at else None, "promoted_by": by,
            "signed_off_by": signoffs.get(name), "live": name == live,
            "suggestions": t["suggestions"], "reviewed": t["reviewed"],
            "live_acceptance": _rate(t[ACCEPTED], t["reviewed"]),
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
    """Everything /metrics exports, all time, from a few grouped queries:

    {"suggestions": [{version, label (shown; "" when unsure), routing, count}],
     "decisions": [{version, label (shown; ""), action (first click's outcome: accepted|changed|rejected|
                    handed_off|labelled), count}],
     "latency_ms": {"buckets": [[upper bound ms, cumulative count], ..., ["+Inf", count]], "sum": ms, "count": n},
     "review_time_s": {"buckets": [[upper bound s, cumulative count], ..., ["+Inf", count]], "sum": s, "count": n},
     "cpu_s": {version: total CPU-seconds of its suggestions},
     "production": version name or None}
    Bucket bounds: LATENCY_BUCKETS_MS and REVIEW_BUCKETS_S (cumulative, as Prometheus histograms are).
    """
    with runtime.sessions() as session:
        suggestions = [{"version": v or "", "label": l or "", "routing": r or SUGGESTED, "count": int(n)}
                       for v, l, r, n in session.execute(
                           select(Suggestion.model_version, Suggestion.label, Suggestion.routing, func.count())
                           .group_by(Suggestion.model_version, Suggestion.label, Suggestion.routing))]
        cpu = {v or "": float(s or 0.0) for v, s in session.execute(
            select(Suggestion.model_version, func.sum(Suggestion.cpu_ms) / 1000.0).group_by(Suggestion.model_version))}
        latency = _histogram(session, Suggestion.__table__, Suggestion.latency_ms, LATENCY_BUCKETS_MS)
        joined, first = _first_clicks()
        review = _histogram(session, joined, _review_seconds(session, first), REVIEW_BUCKETS_S)
        decided = session.execute(
            select(Suggestion.model_version, Suggestion.label, first.action, first.label, func.count())
            .select_from(joined).group_by(Suggestion.model_version, Suggestion.label, first.action, first.label)).all()
    counts: Counter = Counter()
    for version, shown, action, first_label, n in decided:
        counts[(version or "", shown or "", outcome(shown, action, first_label))] += n
    return {"suggestions": suggestions,
            "decisions": [{"version": v, "label": l, "action": a, "count": n} for (v, l, a), n in sorted(counts.items())],
            "latency_ms": latency, "review_time_s": review, "cpu_s": cpu,
            "production": runtime.production.name()}


def _histogram(session, selectable, value, bounds) -> dict:
    """Cumulative bucket counts, sum and count of a SQL value, in one query."""
    cols = [func.sum(case((value <= b, 1), else_=0)) for b in bounds]
    row = session.execute(select(*cols, func.count(value), func.sum(value)).select_from(selectable)).one()
    count = int(row[-2] or 0)
    buckets = [[b, int(n or 0)] for b, n in zip(bounds, row[:-2])] + [["+Inf", count]]
    return {"buckets": buckets, "sum": float(row[-1] or 0.0), "count": count}

