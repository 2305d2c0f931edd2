"""`GET /metrics`: the measures as Prometheus metrics, read from SQL and Redis at scrape time.

Nothing is counted in the process: every web host answers the same numbers (the store is the
record), so Prometheus may scrape any of them, and a restart loses nothing. Counters are all-time
totals from the store; gauges over a window say which (7 days). Names, labels and types are listed
in docs/monitoring.md ("Prometheus").
"""

from __future__ import annotations

import hmac
import time
from datetime import datetime, timezone
from typing import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from redis.exceptions import RedisError
from sqlalchemy import and_, case, func, select

from bot.monitor.drift import reference
from bot.monitor.measures import measures_for_metrics, per_label, window
from bot.queues import count_workers
from bot.settings import posting
from bot.store.base import as_utc, utc_now
from bot.store.masking import awaiting_masking
from bot.store.tickets import Suggestion, failed_count, waiting_count

WINDOW_DAYS = 7  # the window of every ratio gauge (override ratio, drift share)


def authorized(token: str, header: str | None) -> bool:
    """True when no token is set, or the Authorization header is exactly 'Bearer <token>'."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def drift_share(runtime, since, until) -> tuple[str, float, int] | None:
    """(production version, share of its suggestions with evidence less similar than its holdout's
    5th percentile, how many were counted) over [since, until); None without a reference or data.

    The same share as bot.monitor.drift.drift, without that function's new-terms scan of ticket text.
    """
    version = runtime.production.name()
    p05 = ((reference(runtime, version) or {}).get("holdout_similarity") or {}).get("p05")
    if p05 is None:
        return None
    where = and_(Suggestion.model_version == version, Suggestion.created_at >= since, Suggestion.created_at < until,
                 Suggestion.nearest_similarity.is_not(None))
    with runtime.sessions() as session:
        n, below = session.execute(select(func.count(), func.sum(case((Suggestion.nearest_similarity < p05, 1),
                                                                     else_=0))).where(where)).one()
    return (version, int(below or 0) / n, int(n)) if n else None


class StoreCollector:
    """A prometheus-client collector that reads the store and the queues each time it is collected."""

    def __init__(self, runtime, queues, clock: Callable[[], float] = time.time):
        self.runtime, self.queues, self.clock = runtime, queues, clock

    def collect(self):
        runtime = self.runtime
        since, until = window(WINDOW_DAYS, datetime.fromtimestamp(self.clock(), timezone.utc))
        families = {
            "suggestions": CounterMetricFamily(
                "tuesday_suggestions", "Suggestions made, by task, model version, label shown ('' when unsure) "
                "and routing (suggested, unsure, out_of_scope).", labels=["task", "version", "label", "routing"]),
            "feedback": CounterMetricFamily(
                "tuesday_feedback", "Suggestions reviewed, by task, version, label shown and the first click's "
                "outcome (accepted, changed, rejected, handed_off; labelled: Tuesday was unsure and the agent chose).",
                labels=["task", "version", "label", "action"]),
            "latency": HistogramMetricFamily("tuesday_suggestion_latency_seconds",
                                             "Time to predict one suggestion (of one task).", labels=["task"]),
            "review": HistogramMetricFamily("tuesday_review_time_seconds",
                                            "From a suggestion being posted to its first click.", labels=["task"]),
            "cpu": CounterMetricFamily("tuesday_suggestion_cpu_seconds", "CPU-seconds spent predicting suggestions, "
                                       "by task and version (rows stored before this was measured count 0).",
                                       labels=["task", "version"]),
            "override": GaugeMetricFamily("tuesday_override_ratio", f"(changed + rejected) / reviewed of the last "
                                          f"{WINDOW_DAYS} days' suggestions, by task and label shown.",
                                          labels=["task", "label"]),
            "reviews": GaugeMetricFamily("tuesday_reviews_7d", f"Suggestions reviewed in the last {WINDOW_DAYS} "
                                         "days, by task and label shown (how much the override ratio rests on).",
                                         labels=["task", "label"]),
            "drift": GaugeMetricFamily("tuesday_drift_share", f"Share of the last {WINDOW_DAYS} days' suggestions "
                                       "by the task's production version whose nearest labelled example is less "
                                       "similar than its holdout's 5th percentile (absent without a reference).",
                                       labels=["task", "version"]),
            "production": GaugeMetricFamily("tuesday_production_info", "Each task's version in production (value 1).",
                                            labels=["task", "version"]),
        }
        for scoped in runtime.each_task():  # every series of a task's model carries the task's name
            self._task_series(scoped, families, since, until)
        yield from families.values()

        yield GaugeMetricFamily("tuesday_tickets_waiting", "Tickets without a (posted) suggestion yet.",
                                value=waiting_count(runtime.sessions, posts=posting(runtime.settings),
                                                    task=runtime.tasks.routing_name))
        yield GaugeMetricFamily("tuesday_tickets_failed", "Tickets whose suggest job failed "
                                "TUESDAY_SUGGEST_MAX_ATTEMPTS times: no longer queued until `tuesday tickets --retry`.",
                                value=failed_count(runtime.sessions))
        unmasked, oldest = awaiting_masking(runtime.sessions)
        yield GaugeMetricFamily("tuesday_tickets_awaiting_masking", "Tickets the door stored whose names and "
                                "addresses the worker has not masked yet.", value=unmasked)
        yield GaugeMetricFamily("tuesday_tickets_awaiting_masking_oldest_seconds", "Age of the oldest of them "
                                "(0 when none): how long an unmasked name has been kept.",
                                value=0.0 if oldest is None else max(0.0, (utc_now() - as_utc(oldest)).total_seconds()))

        # Redis down is a state to alert on, not a failed scrape: the store's numbers still come.
        depth = GaugeMetricFamily("tuesday_queue_depth", "Jobs waiting in each queue.", labels=["queue"])
        workers = GaugeMetricFamily("tuesday_workers", "Live (heartbeating) workers listening on each queue.",
                                    labels=["queue"])
        try:
            depths = {name: queue.count for name, queue in self.queues.queues.items()}
            alive = count_workers(self.queues)
            redis_up = 1
        except RedisError:
            depths, alive, redis_up = {}, {}, 0
        for name, count in depths.items():
            depth.add_metric([name], count)
        for name, count in alive.items():
            workers.add_metric([name], count)
        yield depth
        yield workers
        yield GaugeMetricFamily("tuesday_redis_up", "1 when the queues' Redis answered this scrape.", value=redis_up)

    @staticmethod
    def _task_series(runtime, f: dict, since, until) -> None:
        task, m = runtime.task.name, measures_for_metrics(runtime)
        for row in m["suggestions"]:
            f["suggestions"].add_metric([task, row["version"], row["label"], row["routing"]], row["count"])
        for row in m["decisions"]:
            f["feedback"].add_metric([task, row["version"], row["label"], row["action"]], row["count"])
        for key, data, scale in (("latency", m["latency_ms"], 0.001), ("review", m["review_time_s"], 1.0)):
            buckets = [(bound if bound == "+Inf" else floatToGoString(bound * scale), count)
                       for bound, count in data["buckets"]]
            f[key].add_metric([task], buckets, sum_value=data["sum"] * scale)
        for version, seconds in sorted(m["cpu_s"].items()):
            f["cpu"].add_metric([task, version], seconds)
        for row in per_label(runtime, since, until):
            f["reviews"].add_metric([task, row["label"]], row["reviewed"])
            if row["override_rate"] is not None:
                f["override"].add_metric([task, row["label"]], row["override_rate"])
        share = drift_share(runtime, since, until)
        if share is not None:
            f["drift"].add_metric([task, share[0]], share[1])
        if m["production"]:
            f["production"].add_metric([task, m["production"]], 1)


def metrics_registry(runtime, queues, clock: Callable[[], float] = time.time) -> CollectorRegistry:
    """A registry holding only Tuesday's collector (not the process's own default metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(runtime, queues, clock))
    return registry


def scrape(registry: CollectorRegistry) -> bytes:
    """The text exposition format (what Prometheus reads)."""
    return generate_latest(registry)
