"""The SQL under the measures: windows, outcome tallies, percentiles, day buckets and histograms.

Everything reads the suggestions table alone: each row carries its first click (first_action,
first_label, first_click_at) and its last click's label, which a trigger keeps on every insert into
feedback (revision 0005). A window is one range scan, grouped; no join to the clicks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select

from bot.store.base import as_utc, utc_now
from bot.store.tickets import SUGGESTED, Suggestion
from inference.drift import quantile

ACCEPTED, CHANGED, REJECTED, HANDED_OFF, LABELLED = "accepted", "changed", "rejected", "handed_off", "labelled"
OUTCOMES = (ACCEPTED, CHANGED, REJECTED, HANDED_OFF)
ACTION_OUTCOME = {"accept": ACCEPTED, "change": CHANGED, "reject": REJECTED, "handoff": HANDED_OFF}

# Linear interpolation between the closest ranks: what PostgreSQL's percentile_cont computes.
percentile = quantile


def bounds(since: datetime, until: datetime | None) -> tuple[datetime, datetime]:
    return as_utc(since), (as_utc(until) if until is not None else utc_now())


def rate(part: int, whole: int) -> float | None:
    return None if not whole else part / whole


def is_postgresql(session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def in_window(since: datetime, until: datetime, version: str | None, task: str | None = None):
    """SQL: the suggestions made in [since, until) (by one version; for one task)."""
    conditions = [Suggestion.created_at >= since, Suggestion.created_at < until]
    if task is not None:
        conditions.append(Suggestion.task == task)
    if version is not None:
        conditions.append(Suggestion.model_version == version)
    return and_(*conditions)


def seconds_between(session, later, earlier):
    """SQL: seconds from `earlier` to `later` (two timestamp columns)."""
    if is_postgresql(session):
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def review_seconds(session):
    """SQL: seconds from the suggestion being posted (created, for rows never posted) to its first click; NULL unclicked."""
    return seconds_between(session, Suggestion.first_click_at, func.coalesce(Suggestion.posted_at, Suggestion.created_at))


def bucket_of(session, column, bucket: str = "day"):
    """SQL: the UTC day (or the Monday of the week) of a timestamp column; day_key() makes it 'YYYY-MM-DD'."""
    if bucket not in ("day", "week"):
        raise ValueError(f"bucket must be day or week, not {bucket!r}")
    if is_postgresql(session):
        # grouped as a timestamp and formatted once per bucket: to_char on every row costs more
        return func.date_trunc(bucket, func.timezone("UTC", column))
    return func.date(column) if bucket == "day" else func.date(column, "weekday 0", "-6 days")


def day_key(value) -> str:
    """'YYYY-MM-DD' of a bucket_of value (a timestamp on PostgreSQL, a date string on SQLite)."""
    return value.date().isoformat() if isinstance(value, datetime) else str(value)[:10]


def outcome(shown: str | None, action: str | None, first_label: str | None) -> str | None:
    """A suggestion's outcome from its first click (None: no click yet)."""
    if action is None:
        return None
    if shown is None:
        return LABELLED
    if first_label == shown:
        return ACCEPTED
    return ACTION_OUTCOME.get(action, CHANGED)


def outcome_flags() -> dict:
    """SQL conditions that mirror outcome(): {reviewed, accepted, overridden (changed or rejected)}."""
    shown_and_clicked = and_(Suggestion.first_action.is_not(None), Suggestion.label.is_not(None))
    accepted = and_(shown_and_clicked, or_(Suggestion.first_label == Suggestion.label,
                                           Suggestion.first_action == "accept"))
    overridden = and_(shown_and_clicked, Suggestion.first_label != Suggestion.label,
                      Suggestion.first_action.not_in(("accept", "handoff")))
    return {"reviewed": shown_and_clicked, "accepted": accepted, "overridden": overridden}


def decided(session, where, *extra) -> list:
    """Rows (extra..., shown, routing, first action, first label, last label, count) of the suggestions `where` selects."""
    cols = (*extra, Suggestion.label, Suggestion.routing, Suggestion.first_action, Suggestion.first_label,
            Suggestion.last_label)
    query = select(*cols, func.count())
    if where is not None:
        query = query.where(where)
    return session.execute(query.group_by(*cols)).all()


def tally(rows, handoff_label: str | None) -> Counter:
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


def summary(session, where, *, latency_qs=(0.5, 0.95), review_qs=(0.5, 0.9), group=None, below=None,
            tickets: bool = True) -> dict:
    """{group value (None without group): {suggestions, tickets, cpu_ms, cpu_n, review_n, reviewed, accepted,
    overridden, drift_n, drift_below, latency_ms: [per q], review_s: [per q]}} of the suggestions `where`
    selects, in one pass.

    below: optional (qualifies, is_below) SQL conditions counting drift (see measures.timeline);
    tickets=False skips counting distinct tickets (a sort per group). PostgreSQL computes the
    percentiles (percentile_cont, which skips NULLs); elsewhere the values are read and computed here.
    """
    review = review_seconds(session)
    keys = [group] if group is not None else []
    flags = outcome_flags()
    counted = {"suggestions": func.count(),
               "tickets": func.count(func.distinct(Suggestion.ticket_id)) if tickets else func.count(),
               "cpu_ms": func.sum(Suggestion.cpu_ms), "cpu_n": func.count(Suggestion.cpu_ms),
               "review_n": func.count(Suggestion.first_click_at),
               **{name: func.sum(case((flag, 1), else_=0)) for name, flag in flags.items()}}
    if below is not None:
        counted.update(drift_n=func.sum(case((below[0], 1), else_=0)), drift_below=func.sum(case((below[1], 1), else_=0)))
    common = list(counted.values())

    def entry(*values) -> dict:
        numbers = {name: (float(v or 0.0) if name == "cpu_ms" else int(v or 0)) for name, v in zip(counted, values)}
        if not tickets:
            numbers["tickets"] = None
        return {"drift_n": 0, "drift_below": 0, **numbers}

    if is_postgresql(session):
        cols = [*(func.percentile_cont(q).within_group(Suggestion.latency_ms) for q in latency_qs),
                *(func.percentile_cont(q).within_group(review) for q in review_qs)]
        query = select(*keys, *common, *cols).where(where)
        if group is not None:
            query = query.group_by(group)
        found = {}
        for row in session.execute(query):
            key, row = (row[0], row[1:]) if group is not None else (None, row)
            numbers = [None if v is None else float(v) for v in row[len(common):]]
            found[key] = {**entry(*row[:len(common)]), "latency_ms": numbers[:len(latency_qs)],
                          "review_s": numbers[len(latency_qs):]}
        return found
    query = select(*keys, *common).where(where)
    if group is not None:
        query = query.group_by(group)
    found = {(row[0] if group is not None else None): entry(*(row[1:] if group is not None else row))
             for row in session.execute(query)}
    latency, reviews = defaultdict(list), defaultdict(list)
    for row in session.execute(select(*keys, Suggestion.latency_ms, review).where(where)):
        key = row[0] if group is not None else None
        latency[key].append(float(row[-2]))
        if row[-1] is not None:
            reviews[key].append(float(row[-1]))
    for key, numbers in found.items():
        numbers["latency_ms"] = [percentile(latency[key], q) for q in latency_qs]
        numbers["review_s"] = [percentile(reviews[key], q) for q in review_qs]
    return found


def histograms(session, specs: dict, where=None) -> dict:
    """{name: {buckets: [[upper bound, cumulative count], ..., ["+Inf", count]], sum, count}} of SQL values
    over suggestions, all in one query; specs: {name: (SQL value, upper bounds)}."""
    cols = []
    for value, edges in specs.values():
        cols += [*(func.sum(case((value <= b, 1), else_=0)) for b in edges), func.count(value), func.sum(value)]
    query = select(*cols).select_from(Suggestion)
    row = list(session.execute(query.where(where) if where is not None else query).one())
    found = {}
    for name, (_value, edges) in specs.items():
        part, row = row[:len(edges) + 2], row[len(edges) + 2:]
        count = int(part[-2] or 0)
        found[name] = {"buckets": [[b, int(n or 0)] for b, n in zip(edges, part)] + [["+Inf", count]],
                       "sum": float(part[-1] or 0.0), "count": count}
    return found
