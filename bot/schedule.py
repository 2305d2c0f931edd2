"""Scheduled retrains: a thread in the CPU workers (`tuesday worker --queue suggest`) that asks once a minute whether one is due."""

from __future__ import annotations

import logging
import threading

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from bot.control import Paused, maybe_scheduled_retrain

log = logging.getLogger(__name__)

CHECK_EVERY_S = 60.0


class RetrainScheduler:
    """Calls maybe_scheduled_retrain every interval_s seconds until stopped."""

    # A thread beside the worker rather than RQ's cron: no extra process to deploy, and the
    # decision ("last run older than N hours, and new labels") needs the store, not a fixed time.

    def __init__(self, runtime, queues, interval_s: float = CHECK_EVERY_S):
        self.runtime, self.queues, self.interval_s = runtime, queues, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self):
        """One check; returns (run, created) when a retrain was requested, else None."""
        try:
            result = maybe_scheduled_retrain(self.runtime, self.queues)
        except Paused:
            return None  # paused between the check and the request
        except (RedisError, SQLAlchemyError) as exc:
            # The loop must outlive a Redis or database blip; the next tick tries again.
            log.warning("scheduled retrain check failed: %s", exc)
            return None
        if result is not None and result[1]:
            log.info("scheduled retrain queued as run %s", result[0].id)
        return result

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def start(self) -> RetrainScheduler:
        self._thread = threading.Thread(target=self._loop, name="retrain-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
