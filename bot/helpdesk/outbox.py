"""The write-back outbox: one SQL row per decision to write back, so none is lost while Redis or the helpdesk is down.

A row is `pending` from the click until an attempt succeeds (`delivered`) or Tuesday gives up (`failed`,
with the error in last_error). Each attempt first claims the row under a row lock, so two jobs for
the same row never both write it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Callable

from sqlalchemy import event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.helpdesk.adapters import HelpdeskError, HelpdeskRefused, decision_note
from bot.store.base import utc_now
from bot.store.feedback import Feedback
from bot.store.outbox import DELIVERED, FAILED, PENDING, STATUSES, WriteBack
from bot.store.tickets import Suggestion, Ticket

MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed write-back is tried again, and when Tuesday gives up on it."""

    # Wait after the 1st, 2nd, ... failed attempt; the last value repeats. Short at first (a blip),
    # then hourly, so a helpdesk outage of most of a day still ends delivered.
    backoff_s: tuple[float, ...] = (10, 30, 60, 300, 900, 1800, 3600)
    # 30 attempts on the schedule above span about a day; then the row is failed, visibly.
    max_attempts: int = 30
    # How long a claimed attempt may take before the sweeper assumes its worker died; must exceed
    # the job's timeout, or a slow attempt would run beside the next one.
    lease_s: float = 180
    # A Retry-After of 0 (or a past date) still waits this long, so a helpdesk cannot make Tuesday spin.
    min_wait_s: float = 1.0

    def __post_init__(self):
        if not self.backoff_s or min(self.backoff_s) < 0:
            raise ValueError("backoff_s must be a non-empty list of non-negative seconds")
        if self.max_attempts < 1 or self.lease_s <= 0 or self.min_wait_s < 0:
            raise ValueError("max_attempts must be >= 1, lease_s > 0 and min_wait_s >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed."""
        return float(self.backoff_s[min(attempt, len(self.backoff_s)) - 1])


def new_write_back(feedback: Feedback, ticket: Ticket, suggestion: Suggestion) -> WriteBack:
    return WriteBack(feedback=feedback, task=feedback.task, ticket_id=ticket.id, helpdesk=ticket.source,
                     label=feedback.label, note=decision_note(feedback, suggestion), status=PENDING, attempts=0, next_attempt_at=utc_now())


def recording_outbox(sessions: sessionmaker[Session], writes_back: Callable[[str], bool]) -> Callable[[], Session]:
    """Sessions from `sessions` whose commits give each new feedback row to write back its outbox row.

    Pass it to bot.store.feedback.record_feedback: the outbox row is then written in the very transaction that
    records the click, so no crash or Redis outage can leave a decision without its write-back.
    """
    def open_session() -> Session:
        session = sessions()
        event.listen(session, "before_flush", partial(_add_write_backs, writes_back))
        return session

    return open_session


def _add_write_backs(writes_back: Callable[[str], bool], session: Session, _context, _instances) -> None:
    for row in [o for o in session.new if isinstance(o, Feedback)]:
        # A label that disagrees with an earlier one stays in Tuesday (flagged) rather than adding
        # a second, contradicting tag to the ticket.
        if row.conflict:
            continue
        ticket = session.get(Ticket, row.ticket_id)
        if ticket is not None and writes_back(ticket.source):
            session.add(new_write_back(row, ticket, session.get(Suggestion, row.suggestion_id)))


def write_back_for(session: Session, feedback_id: int) -> WriteBack | None:
    return session.scalar(select(WriteBack).where(WriteBack.feedback_id == int(feedback_id)))


def ensure_write_back(sessions: sessionmaker[Session], feedback_id: int) -> WriteBack | None:
    """The feedback's outbox row, added if it has none (None: no such feedback)."""
    with sessions() as session:
        found = write_back_for(session, feedback_id)
        feedback = found or session.get(Feedback, int(feedback_id))
        if found is not None or feedback is None:
            return found
        session.add(new_write_back(feedback, session.get(Ticket, feedback.ticket_id),
                                   session.get(Suggestion, feedback.suggestion_id)))
        try:
            session.commit()
        except IntegrityError:  # another process added it between the select and the insert
            session.rollback()
        return write_back_for(session, feedback_id)


def _locked(session: Session, outbox_id: int) -> WriteBack | None:
    # The no-op UPDATE takes a row lock on PostgreSQL and the write lock on SQLite (it is the
    # transaction's first statement), so a concurrent claim or outcome waits for this one.
    session.execute(update(WriteBack).where(WriteBack.id == outbox_id).values(id=WriteBack.id))
    return session.get(WriteBack, outbox_id, populate_existing=True)


def claim(sessions: sessionmaker[Session], outbox_id: int, attempt: int, policy: RetryPolicy,
          now: datetime) -> tuple[WriteBack | None, bool]:
    """Take attempt number `attempt` of a pending row; returns (row, taken).

    Not taken: the row is gone, delivered, failed, or that attempt was already taken by another job.
    """
    with sessions() as session:
        row = _locked(session, outbox_id)
        if row is None or row.status != PENDING or row.attempts != attempt - 1:
            return row, False
        if row.attempts >= policy.max_attempts:
            # Attempts whose worker died record no outcome; this ends a row that keeps killing them.
            row.status = FAILED
            row.last_error = f"gave up after {row.attempts} attempts; last error: {row.last_error or 'none recorded'}"
            session.commit()
            return row, False
        row.attempts = attempt
        row.next_attempt_at = now + timedelta(seconds=policy.lease_s)
        session.commit()
        return row, True


def settle(sessions: sessionmaker[Session], outbox_id: int, attempt: int, error: HelpdeskError | None,
           policy: RetryPolicy, now: datetime) -> WriteBack:
    """Record how an attempt ended: delivered, pending until next_attempt_at, or failed for good."""
    with sessions() as session:
        row = _locked(session, outbox_id)
        if row.status != PENDING or (error is not None and row.attempts != attempt):
            return row  # already settled, or a later attempt owns the row now
        if error is None:
            row.status, row.delivered_at = DELIVERED, now
        else:
            row.last_error = f"attempt {attempt}: {error}"[:MAX_ERROR_CHARS]
            wait = policy.delay(attempt) if error.retry_after is None else max(error.retry_after, policy.min_wait_s)
            if isinstance(error, HelpdeskRefused) or attempt >= policy.max_attempts:
                row.status = FAILED
            else:
                row.next_attempt_at = now + timedelta(seconds=wait)
        session.commit()
        return row


def due_write_backs(sessions: sessionmaker[Session], now: datetime, limit: int = 500) -> list[tuple[int, int]]:
    """(id, attempts) of pending rows whose next attempt is due, the longest waiting first."""
    query = (select(WriteBack.id, WriteBack.attempts)
             .where(WriteBack.status == PENDING, WriteBack.next_attempt_at <= now)
             .order_by(WriteBack.next_attempt_at).limit(limit))
    with sessions() as session:
        return [(i, n) for i, n in session.execute(query)]


def outbox_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    """How many write-backs are pending, delivered and failed (for status pages and metrics)."""
    with sessions() as session:
        found = dict(session.execute(select(WriteBack.status, func.count()).group_by(WriteBack.status)).all())
    return {status: int(found.get(status, 0)) for status in STATUSES}


def failed_write_backs(sessions: sessionmaker[Session], limit: int = 20) -> list[WriteBack]:
    """The most recently failed write-backs, with their errors."""
    with sessions() as session:
        return list(session.scalars(select(WriteBack).where(WriteBack.status == FAILED)
                                    .order_by(WriteBack.id.desc()).limit(limit)))


def retry_failed(sessions: sessionmaker[Session], ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Make failed write-backs (all, or these ids) pending again with a fresh set of attempts; returns how many."""
    query = update(WriteBack).where(WriteBack.status == FAILED)
    if ids is not None:
        query = query.where(WriteBack.id.in_([int(i) for i in ids]))
    with sessions() as session:
        changed = session.execute(query.values(status=PENDING, attempts=0, next_attempt_at=now or utc_now())).rowcount
        session.commit()
    return int(changed)
