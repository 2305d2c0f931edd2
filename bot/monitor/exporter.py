"""`GET /metrics`: the measures as Prometheus metrics, read from SQL and Redis at scrape time.

Nothing is counted in the process: every web host answers the same numbers (the store is the
record), so Prometheus may scrape any of them, and a restart loses nothing. Counters are all-time
totals from the store; gauges over a window say which (7 days). Names, labels and types are listed
in docs/monitoring.md ("Prometheus").

The store's aggregates read whole tables (seconds at a million rows), so `tuesday serve` answers
them from `CachedCollector`: recomputed at most every TUESDAY_METRICS_CACHE_S seconds by one
background thread per process, never inside a scrape; a scrape waits only for a process's first
values, and at most TUESDAY_METRICS_WAIT_S. The queue series stay live (Redis answers at once).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
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

log = logging.getLogger(__name__)

WINDOW_DAYS = 7  # the window of every ratio gauge (override ratio, drift share)


def authorized(token: str, header: str | None, *, open_: bool = False) -> bool:
    """True when the Authorization header is 'Bearer <token>' (compared in constant time), or when
    /metrics is explicitly open (TUESDAY_METRICS_OPEN). No token and not open: nobody is."""
    if not token:
        return open_
    scheme, _, given = (header or "").partition(" ")
    # Both sides hashed first: compare_digest's time then depends on neither the token's length nor the guess's.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest())


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
        yield from self.store_families()
        yield from self.live_families()

    def store_families(self):
        """The store's aggregates: every series read from SQL (the slow part at a million rows)."""
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

    def live_families(self):
        """The queues' series, read from Redis at each scrape (a few cheap commands)."""
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


@dataclass(frozen=True)
class Snapshot:
    families: list
    at: float  # monotonic time the aggregates were read
    took_s: float


class CachedCollector:
    """StoreCollector's store aggregates kept for max_age_s, refreshed by one background thread.

    No lock is shared by scrapes: the snapshot is one attribute replaced whole, and the refresh
    token is taken with a non-blocking acquire, so a scrape during a refresh answers the last
    snapshot at once. Only a process's first scrape waits for values, at most wait_s.
    """

    def __init__(self, store: StoreCollector, max_age_s: float, wait_s: float,
                 monotonic: Callable[[], float] = time.monotonic):
        self.store, self.max_age_s, self.wait_s, self.monotonic = store, max_age_s, wait_s, monotonic
        self.snapshot: Snapshot | None = None
        self.failures = 0
        self._tried_at: float | None = None  # when the last refresh started: a failing one is retried as seldom
        self._refreshing = threading.Lock()  # held by the refresh thread; never waited on
        self._first = threading.Event()

    def refresh_started(self) -> bool:
        """Start a background refresh unless one runs; True when this call started it."""
        if not self._refreshing.acquire(blocking=False):
            return False
        thread = threading.Thread(target=self._refresh, name="metrics-refresh", daemon=True)
        try:
            thread.start()
        except BaseException:
            self._refreshing.release()
            raise
        return True

    def _refresh(self) -> None:
        started = self._tried_at = self.monotonic()
        try:
            families = list(self.store.store_families())
            self.snapshot = Snapshot(families, self.monotonic(), self.monotonic() - started)
        except Exception as exc:  # noqa: BLE001  (a thread's edge: the last values stay, the failure is counted)
            self.failures += 1
            # The type only: a database error's text can quote bound parameters.
            log.error("metrics: computing the store's aggregates failed (%s); serving the last values",
                      type(exc).__name__)
        finally:
            self._refreshing.release()
            self._first.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait for a running refresh to end (tests, benchmarks); True when none runs."""
        if self._refreshing.acquire(timeout=timeout_s):
            self._refreshing.release()
            return True
        return False

    def collect(self):
        snapshot, now = self.snapshot, self.monotonic()
        if ((snapshot is None or now - snapshot.at >= self.max_age_s)
                and (self._tried_at is None or now - self._tried_at >= self.max_age_s)):
            self.refresh_started()
        if snapshot is None:
            self._first.wait(self.wait_s)
            snapshot = self.snapshot
        if snapshot is not None:
            yield from snapshot.families
        age = GaugeMetricFamily("tuesday_metrics_age_seconds", "How old the store's aggregates in this scrape are "
                                "(-1: none computed yet); they are recomputed every TUESDAY_METRICS_CACHE_S seconds.",
                                value=-1.0 if snapshot is None else self.monotonic() - snapshot.at)
        yield age
        yield GaugeMetricFamily("tuesday_metrics_compute_seconds", "How long computing those aggregates took.",
                                value=0.0 if snapshot is None else snapshot.took_s)
        yield CounterMetricFamily("tuesday_metrics_refresh_failures", "Times computing the store's aggregates "
                                  "failed in this process (the last values were served).", value=self.failures)
        yield from self.store.live_families()


def metrics_collector(runtime, queues, clock: Callable[[], float] = time.time, *, cache_s: float = 0.0,
                      wait_s: float = 2.0, monotonic: Callable[[], float] = time.monotonic):
    """Tuesday's collector: with cache_s > 0 a CachedCollector keeping the store's aggregates that many
    seconds, else a StoreCollector that reads them at each collection."""
    store = StoreCollector(runtime, queues, clock)
    return CachedCollector(store, cache_s, wait_s, monotonic) if cache_s > 0 else store


def registry_of(collector) -> CollectorRegistry:
    """A registry holding only `collector` (not the process's own default metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def metrics_registry(runtime, queues, clock: Callable[[], float] = time.time) -> CollectorRegistry:
    """A registry that reads the store at each scrape (what TUESDAY_METRICS_CACHE_S=0 serves; tests)."""
    return registry_of(StoreCollector(runtime, queues, clock))


def scrape(registry: CollectorRegistry) -> bytes:
    """The text exposition format (what Prometheus reads)."""
    return generate_latest(registry)
