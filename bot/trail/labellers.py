"""Who teaches the model: clicks held for a manager, their approval, and each person's labelling in numbers.

A click from someone outside TUESDAY_LABELLERS (and not a manager or admin) is stored `held`: it
shows on the message and counts in the measures, but makes no training example, so it can neither
start a retrain nor reach a holdout. A manager approves a person's held clicks (they become
training data in the order they were made, as if a labeller had clicked) or rejects them (kept
for the record, never trained on). Both are audited.

    held_people(sessions)                                   # [{"user_id": "U7", "held": 12, ...}]
    decide_held(sessions, "U7", approve=True, by="slack:U1")  # 12
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot.store import audit
from bot.store.base import as_utc, utc_now
from bot.store.feedback import APPROVED, HELD, REJECTED, TRAINS, Feedback, feedback_example, ticket_labels
from bot.store.tickets import Ticket
from inference.errors import TuesdayError

CORRECTIONS = ("change", "reject")  # clicks that say the model was wrong
ALL = "all"


class LabellerError(TuesdayError):
    """The held clicks named cannot be approved or rejected."""


def held_people(sessions: sessionmaker[Session]) -> list[dict]:
    """Everyone with clicks waiting for a manager: user, name, how many, first and last, most held first."""
    query = (select(Feedback.user_id, func.max(Feedback.user_name), func.count(Feedback.id),
                    func.min(Feedback.created_at), func.max(Feedback.created_at))
             .where(Feedback.trust == HELD).group_by(Feedback.user_id)
             .order_by(func.count(Feedback.id).desc(), Feedback.user_id))
    with sessions() as session:
        return [{"user_id": user, "user_name": name or "", "held": int(n), "first": as_utc(first), "last": as_utc(last)}
                for user, name, n, first, last in session.execute(query)]


def held_count(sessions: sessionmaker[Session], user_id: str) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count(Feedback.id)).where(Feedback.trust == HELD,
                                                                        Feedback.user_id == user_id)))


def decide_held(sessions: sessionmaker[Session], user_id: str, *, approve: bool, by: str) -> int:
    """Approve (training data from now on) or reject every held click of user_id (ALL: of everyone); returns how many.

    Approved clicks make their tickets' examples in the order they were clicked, with the ticket
    locked as a live click locks it, so a conflict with a labeller's label is found the same way.
    """
    user_id = user_id.strip()
    if not user_id:
        raise LabellerError("name whose held clicks to decide: a Slack user id, or `all`")
    query = select(Feedback).where(Feedback.trust == HELD).order_by(Feedback.id)
    if user_id != ALL:
        query = query.where(Feedback.user_id == user_id)
    now = utc_now()
    with sessions() as session:
        rows = list(session.scalars(query))
        if not rows:
            raise LabellerError(f"no held clicks {'at all' if user_id == ALL else f'from {user_id}'}")
        for row in rows:
            if approve:
                session.execute(update(Ticket).where(Ticket.id == row.ticket_id).values(id=Ticket.id))
                earlier = ticket_labels(session, row.ticket_id, row.task)
                row.conflict = any(other != row.label for other in earlier)
                feedback_example(session, session.get(Ticket, row.ticket_id), row.task, row.label, row.why,
                                 [*earlier, row.label])
            row.trust, row.trust_by, row.trust_at = (APPROVED if approve else REJECTED), by[:255], now
            session.flush()  # the next held click on the same ticket sees this one's label
        audit.record(session, by, "labels.approve" if approve else "labels.reject", user_id,
                     clicks=len(rows), people=sorted({r.user_id for r in rows}), first=rows[0].id, last=rows[-1].id)
        session.commit()
    return len(rows)


def people(sessions: sessionmaker[Session], since: datetime, until: datetime | None = None,
           task: str | None = None) -> list[dict]:
    """Each person who clicked in [since, until) (on one task's field, or any): clicks, corrections, held, and
    agreement with the others.

    agreement: of their clicks on tickets someone else also labelled (the same field), the share whose
    label matched the other person's (pairs counted once per other click); None when nobody else did.
    """
    until = until or utc_now()
    window = and_(Feedback.created_at >= since, Feedback.created_at < until,
                  *([Feedback.task == task] if task is not None else []))
    counts = (select(Feedback.user_id, func.max(Feedback.user_name), func.count(Feedback.id),
                     func.sum(case((Feedback.action.in_(CORRECTIONS), 1), else_=0)),
                     func.sum(case((Feedback.trust == HELD, 1), else_=0)),
                     func.sum(case((Feedback.trust.in_(TRAINS), 1), else_=0)))
              .where(window).group_by(Feedback.user_id))
    other = aliased(Feedback)
    pairs = (select(Feedback.user_id, func.count(), func.sum(case((Feedback.label == other.label, 1), else_=0)))
             .join(other, and_(other.ticket_id == Feedback.ticket_id, other.task == Feedback.task,
                               other.user_id != Feedback.user_id))
             .where(window).group_by(Feedback.user_id))
    with sessions() as session:
        agreed = {user: (int(n), int(same or 0)) for user, n, same in session.execute(pairs)}
        rows = []
        for user, name, clicks, corrections, held, trains in session.execute(counts):
            n, same = agreed.get(user, (0, 0))
            rows.append({"user_id": user, "user_name": name or "", "clicks": int(clicks),
                         "corrections": int(corrections or 0), "held": int(held or 0), "trains": int(trains or 0),
                         "compared": n, "agreement": same / n if n else None})
    return sorted(rows, key=lambda r: (-r["clicks"], r["user_id"]))


def correction_floods(sessions: sessionmaker[Session], now: datetime, *, over: int,
                      within: timedelta = timedelta(hours=1)) -> list[dict]:
    """People who changed or rejected more than `over` suggestions in the `within` before now."""
    query = (select(Feedback.user_id, func.max(Feedback.user_name), func.count(Feedback.id),
                    func.sum(case((Feedback.trust == HELD, 1), else_=0)))
             .where(Feedback.created_at >= now - within, Feedback.created_at <= now,
                    Feedback.action.in_(CORRECTIONS))
             .group_by(Feedback.user_id).having(func.count(Feedback.id) > over))
    with sessions() as session:
        return [{"user_id": user, "user_name": name or "", "corrections": int(n), "held": int(held or 0)}
                for user, name, n, held in session.execute(query)]
