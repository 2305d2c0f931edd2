"""Delivering the outbox: one job per attempt on the "writeback" queue, and the sweep that finds what Redis lost.

>>> sweep_outbox(runtime, queues)  # every minute on the CPU workers; returns how many attempts it queued
0
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Callable

import httpx
from redis.exceptions import RedisError
from rq import get_current_job
from rq.exceptions import DuplicateJobError

from bot.helpdesk.adapters import HelpdeskAdapter, HelpdeskError, HelpdeskRefused, adapter_for
from bot.helpdesk.outbox import RetryPolicy, claim, due_write_backs, ensure_write_back, settle
from bot.queues import Queues
from bot.settings import Settings
from bot.store.base import as_utc, make_session_factory, utc_now
from bot.store.outbox import DELIVERED, FAILED, PENDING
from bot.store.tickets import Ticket

log = logging.getLogger(__name__)

DELIVER_JOB = "bot.helpdesk.delivery.deliver_job"
QUEUE = "writeback"
HTTP_TIMEOUT_S = 10  # per request; an attempt makes two
JOB_TIMEOUT_S = 60  # well under RetryPolicy.lease_s, so a killed attempt never overlaps the next
POLICY = RetryPolicy()  # what deliver_job uses; tests swap in a faster one


def delivery_job_id(outbox_id: int, attempt: int) -> str:
    """One id per row and attempt: an ended attempt's job never blocks the next one."""
    return f"writeback-{int(outbox_id)}-{int(attempt)}"


def enqueue_delivery(queues: Queues, outbox_id: int, attempt: int, at: datetime | None = None) -> bool:
    """Queue attempt `attempt` of an outbox row, now or at `at`; False when a job with its id is already there."""
    job_id = delivery_job_id(outbox_id, attempt)
    if at is None or at <= utc_now():
        _, queued = queues.enqueue(QUEUE, DELIVER_JOB, int(outbox_id), int(attempt), job_id=job_id,
                                   timeout=JOB_TIMEOUT_S)
        return queued
    # rq's scheduler keeps whole seconds and runs a job once its second has come: rounding up
    # keeps the attempt from running before a Retry-After has passed.
    at = datetime.fromtimestamp(math.ceil(at.timestamp()), timezone.utc)
    try:
        queues[QUEUE].enqueue_at(at, DELIVER_JOB, int(outbox_id), int(attempt), job_id=job_id,
                                 job_timeout=JOB_TIMEOUT_S, unique=True)
    except DuplicateJobError:
        return False
    return True


def deliver(sessions, adapters: Callable[[str], HelpdeskAdapter | None], outbox_id: int, attempt: int, *,
            policy: RetryPolicy | None = None) -> dict:
    """One attempt at one outbox row: claim it, write it back, record the outcome; returns a JSON-safe summary."""
    policy = policy or POLICY
    row, taken = claim(sessions, outbox_id, attempt, policy, utc_now())
    summary = {"outbox_id": outbox_id, "attempt": attempt, "attempted": taken,
               "status": row.status if row is not None else "missing"}
    if not taken:
        return summary  # delivered, failed, or another job has this attempt: nothing to do twice
    with sessions() as session:
        ticket = session.get(Ticket, row.ticket_id)
    error = None
    try:
        adapter = adapters(row.helpdesk)
        if adapter is None:
            # Settings an admin can still fix on this worker: retried, and failed only in the end.
            raise HelpdeskError(f"no write-back configured for {row.helpdesk} tickets on this worker")
        adapter.write_back(ticket, row.label, row.note, task=row.task)
    except HelpdeskError as exc:
        error = exc
    row = settle(sessions, outbox_id, attempt, error, policy, utc_now())
    if row.status == DELIVERED:
        log.info("write-back %s: %s written to %s ticket %s (attempt %d)", row.id, row.label, row.helpdesk,
                 ticket.external_id, attempt)
    elif row.status == FAILED:
        log.warning("write-back %s failed for good after %d attempt(s): %s", row.id, row.attempts, row.last_error)
    else:
        log.info("write-back %s: attempt %d failed, next at %s: %s", row.id, attempt,
                 row.next_attempt_at.isoformat(), error)
    return {**summary, "status": row.status, "error": None if error is None else str(error),
            "next_attempt_at": row.next_attempt_at.isoformat() if row.status == PENDING else None}


def deliver_job(outbox_id: int, attempt: int = 1) -> dict:
    """Queued job: one delivery attempt of an outbox row; a failed attempt queues the next at its time."""
    settings = Settings()
    sessions = make_session_factory(settings.store_url, connect_timeout_s=settings.sql_timeout_s,
                                    statement_timeout_s=settings.sql_statement_timeout_s or None)
    try:
        with httpx.Client(timeout=HTTP_TIMEOUT_S) as http:
            summary = deliver(sessions, lambda source: adapter_for(settings, source, http), int(outbox_id),
                              int(attempt))
    finally:
        sessions.kw["bind"].dispose()  # a worker runs many jobs; leave no pooled connection behind
    job = get_current_job()
    if summary["attempted"] and summary["status"] == PENDING and job is not None:
        at = datetime.fromisoformat(summary["next_attempt_at"])
        try:
            enqueue_delivery(Queues(job.connection), int(outbox_id), int(attempt) + 1, at=as_utc(at))
        except RedisError as exc:
            # The row says when it is due; the sweeper queues it then.
            log.warning("write-back %s: next attempt not queued (%s); the sweeper will queue it", outbox_id, exc)
    return summary


def write_back_job(feedback_id: int) -> dict:
    """The job the release before the outbox queued per click: deliver that feedback through the outbox now."""
    settings = Settings()
    sessions = make_session_factory(settings.store_url, connect_timeout_s=settings.sql_timeout_s,
                                    statement_timeout_s=settings.sql_statement_timeout_s or None)
    try:
        row = ensure_write_back(sessions, feedback_id)
    finally:
        sessions.kw["bind"].dispose()
    if row is None:
        raise HelpdeskRefused(f"no feedback {feedback_id} in the store")
    return deliver_job(row.id, row.attempts + 1)


def sweep_outbox(runtime, queues: Queues, now: datetime | None = None) -> int:
    """Queue the next attempt of every due pending write-back that has no live job; returns how many were queued."""
    queued = 0
    for outbox_id, attempts in due_write_backs(runtime.sessions, now or utc_now()):
        job_id = delivery_job_id(outbox_id, attempts + 1)
        # A queued, started or scheduled job will make the attempt (enqueue refuses its id); one
        # that ended without recording it (it crashed, or its worker died) must not block it.
        queues.clear_ended(job_id)
        queued += enqueue_delivery(queues, outbox_id, attempts + 1)
    if queued:
        log.warning("sweeper: queued %d helpdesk write-back(s) that had no live job", queued)
    return queued

