"""The CPU workers' upkeep: accepted work found again from the SQL store (Redis only delivers), and the periodic chores.

The CPU workers run `Upkeep.tick` once a minute: jobs of dead CPU workers are handed back to
RQ, tickets without a (posted) suggestion are queued again, helpdesk write-backs due are
delivered, a training whose heartbeat stopped is closed as failed, a retrain whose jobs Redis
lost is queued again (or closed), a scheduled retrain is requested when one is due, and a
candidate waiting in shadow is promoted or kept once agents labelled enough of its tickets, the
production version's label frequencies are estimated from its recent suggestions (bot.monitor.label_priors),
each production version's live tickets are checked against the rows its promise was measured on
(bot.monitor.promise, every 5 minutes); one worker every few minutes checks the alert rules and the weekly digest (bot.monitor.checks).
"""

from __future__ import annotations

import logging
import threading

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from bot.error_ids import logged
from bot.helpdesk.delivery import sweep_outbox
from bot.lifecycle.retrain import check_training, recover_run
from bot.lifecycle.runs import Paused, maybe_scheduled_retrain
from bot.lifecycle.shadow_gate import settle
from bot.monitor.checks import check_monitoring
from bot.monitor.label_priors import estimate_label_prior
from bot.monitor.promise import check_promises
from bot.queues import sweep_tickets

log = logging.getLogger(__name__)

CHECK_EVERY_S = 60.0


class Upkeep:
    """Runs the chores once now and then every interval_s seconds in a thread, until stopped."""

    # A thread beside the worker rather than RQ's cron: no extra process to deploy, and every
    # chore asks the store what is due, so several CPU workers doing it at once is harmless.

    def __init__(self, runtime, queues, slack=None, interval_s: float = CHECK_EVERY_S):
        self.runtime, self.queues, self.slack, self.interval_s = runtime, queues, slack, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> dict:
        """One round of chores; each one's failure is logged and retried next round."""
        done = {}
        chores = {"abandoned": self._abandoned,
                  "tickets": lambda: sweep_tickets(self.runtime, self.queues),
                  "writebacks": self._writebacks,
                  "training": lambda: check_training(self.runtime, self.queues, self.slack),
                  "retrain": lambda: recover_run(self.runtime, self.queues, self.slack),
                  "schedule": lambda: maybe_scheduled_retrain(self.runtime, self.queues),
                  "shadow": self._shadow,
                  "priors": lambda: estimate_label_prior(self.runtime),
                  "promise": lambda: check_promises(self.runtime),
                  "monitor": lambda: check_monitoring(self.runtime, self.queues, self.slack)}
        for name, chore in chores.items():
            try:
                done[name] = chore()
            except Paused:
                done[name] = None
            except (RedisError, SQLAlchemyError) as exc:
                # The loop must outlive a Redis or database blip; the next round tries again. Type, id and
                # place only: a database error's message can quote the row it failed on (ticket text).
                logged(log, exc, f"upkeep: {name}")
                done[name] = None
            except Exception as exc:
                # A bug in one chore must not end the upkeep thread (and every other chore with it).
                logged(log, exc, f"upkeep: {name}", level=logging.ERROR)
                done[name] = None
        return done

    def _abandoned(self) -> None:
        # A job whose worker died stays "started" until its time is up; RQ's own clean-up then
        # retries it (or fails it, so the sweep above queues the ticket again). The GPU node's
        # queue is left to its own workers and to the training heartbeat.
        for name in ("suggest", "control", "writeback"):
            self.queues[name].started_job_registry.cleanup()

    def _shadow(self):
        # A candidate waiting in shadow (TUESDAY_SHADOW_MIN_TICKETS) is promoted or kept once enough is labelled.
        return settle(self.runtime, self.slack)

    def _writebacks(self):
        return sweep_outbox(self.runtime, self.queues)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def start(self) -> Upkeep:
        self._thread = threading.Thread(target=self._loop, name="upkeep", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
