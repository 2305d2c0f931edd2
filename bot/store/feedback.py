"""Feedback: one reviewer decision per row, append-only, and the training example each ticket's decisions make."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.store.base import FORGOTTEN_TEXT, Base, utc_now
from bot.store.examples import Example
from bot.store.tickets import Suggestion, Ticket
from inference.errors import TuesdayError
from inference.task import TaskSet

FEEDBACK_ACTIONS = ("accept", "change", "reject", "handoff")
# Feedback.trust: whose click trains the model. A labeller's (TUESDAY_LABELLERS, managers, admins) at once;
# anyone else's is `held` until a manager approves it (then `approved`) or rejects it (`rejected`).
LABELLER, HELD, APPROVED, REJECTED = "labeller", "held", "approved", "rejected"
TRAINS = (LABELLER, APPROVED)
FEEDBACK_SOURCE = "feedback"  # Example.source of labels that came from clicks
MAX_WHY_CHARS = 500


class FeedbackError(TuesdayError):
    """A click cannot be recorded as feedback."""


class UnknownSuggestion(FeedbackError):
    """The click names a suggestion the store does not hold."""


class UnknownLabel(FeedbackError):
    """The label is not one of the task's labels (or there is none to accept)."""


class Feedback(Base):
    """One reviewer decision on a suggestion. Append-only: a later click adds a row, never edits one."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suggestion_id: Mapped[int] = mapped_column(ForeignKey("suggestions.id"), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    task: Mapped[str] = mapped_column(String(64))  # the task this click labels (its suggestion's)
    user_id: Mapped[str] = mapped_column(String(64))
    user_name: Mapped[str] = mapped_column(String(255), default="")
    action: Mapped[str] = mapped_column(String(16))  # one of FEEDBACK_ACTIONS
    label: Mapped[str] = mapped_column(String(128))
    why: Mapped[str | None] = mapped_column(Text, nullable=True)  # PII-masked
    model_version: Mapped[str] = mapped_column(String(64), default="")
    # Indexed (revision 0011): the flood alert and the People page read a window of recent clicks.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    # True when this label disagrees with an earlier feedback label on the same ticket.
    conflict: Mapped[bool] = mapped_column(Boolean, default=False)
    # Revision 0011: LABELLER, HELD, APPROVED or REJECTED; only LABELLER and APPROVED rows make training data.
    trust: Mapped[str] = mapped_column(String(16), server_default=LABELLER, index=True)  # set on every insert
    trust_by: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the manager who approved or rejected
    trust_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def trains(self) -> bool:
        return self.trust in TRAINS


def feedback_example_id(ticket_id: int) -> str:
    """Example.external_id of the training example a ticket's feedback makes."""
    return f"ticket-{int(ticket_id)}"


def ticket_feedback(session: Session, ticket_id: int, task: str | None = None) -> list[Feedback]:
    """Every decision on a ticket (for one task, or for all), oldest first."""
    query = select(Feedback).where(Feedback.ticket_id == ticket_id)
    if task is not None:
        query = query.where(Feedback.task == task)
    return list(session.scalars(query.order_by(Feedback.id)))


def ticket_labels(session: Session, ticket_id: int, task: str | None = None) -> list[str]:
    """The distinct labels labellers gave a ticket (for one task), in the order they were first given.

    Held clicks are not among them: until a manager approves them they neither label nor conflict."""
    return list(dict.fromkeys(f.label for f in ticket_feedback(session, ticket_id, task) if f.trains))


def feedback_example(session: Session, ticket: Ticket, task: str, label: str, why: str | None,
                      labels_given: list[str]) -> Example | None:
    """Add the ticket's training example, or mark the existing one conflicted (its label is kept)."""
    if ticket.text == FORGOTTEN_TEXT:
        return None  # forgotten on request: its clicks are kept, its text never becomes training data again
    external_id = feedback_example_id(ticket.id)
    example = session.scalar(select(Example).where(Example.task == task, Example.source == FEEDBACK_SOURCE,
                                                   Example.external_id == external_id))
    if example is None:
        example = Example(task=task, source=FEEDBACK_SOURCE, external_id=external_id, text=ticket.model_text, label=label,
                          reason=why)
        session.add(example)
    if example.settled_at is not None and label != example.label:
        # A reviewer disagrees with the verdict: the conflict is open again (and out of training)
        # until it is settled anew; the earlier verdict stays in the audit log.
        example.settled_by = example.settled_at = example.settled_reason = None
    distinct = list(dict.fromkeys([example.label, *labels_given]))
    if len(distinct) > 1:
        example.conflict_labels = json.dumps(distinct)
    return example


def record_feedback(sessions: sessionmaker[Session], *, suggestion_id: int, action: str, label: str | None,
                    user_id: str, user_name: str = "", why: str | None = None,
                    labels, trusted: bool = True) -> tuple[Feedback, list[str]]:
    """Store one decision and its training example; returns (row, earlier labels it disagrees with).

    label None means the suggested label (an accept); labels is the task's label set, or the
    deployment's TaskSet (the suggestion's task's labels are then used). trusted False (a click from
    someone who is not a labeller): the row is stored as held and makes no training example until a
    manager approves it (bot.trail.labellers).
    """
    from inference.pii import mask_pii

    if action not in FEEDBACK_ACTIONS:
        raise FeedbackError(f"unknown action {action!r}")
    with sessions() as session:
        suggestion = session.get(Suggestion, suggestion_id)
        if suggestion is None:
            raise UnknownSuggestion(f"no suggestion {suggestion_id} in the store (it may have been deleted)")
        ticket_id, model_version, task = suggestion.ticket_id, suggestion.model_version, suggestion.task
        label = label if label is not None else suggestion.label
    if isinstance(labels, TaskSet):
        labels = labels[task].labels
    if label is None:
        raise UnknownLabel("Tuesday suggested no label here, so there is nothing to accept: choose one")
    if label not in labels:
        raise UnknownLabel(f"'{label}' is not a label of this task")
    # One line, masked like everything else that comes in; an empty answer is no answer.
    why = " ".join(mask_pii(why or "").split())[:MAX_WHY_CHARS] or None

    with sessions() as session:
        # Lock the ticket first, so two reviewers clicking at once are recorded one after the
        # other and the second sees the first's label: a row lock on PostgreSQL, the write lock
        # on SQLite (it is this transaction's first statement, so SQLite waits instead of failing).
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(id=Ticket.id))
        ticket = session.get(Ticket, ticket_id)
        earlier = ticket_labels(session, ticket_id, task)
        conflicts = [other for other in earlier if other != label]
        row = Feedback(task=task, suggestion_id=suggestion_id, ticket_id=ticket_id, user_id=user_id, user_name=user_name or "",
                       action=action, label=label, why=why, model_version=model_version or "",
                       conflict=bool(conflicts), trust=LABELLER if trusted else HELD)
        session.add(row)
        if trusted:
            feedback_example(session, ticket, task, label, why, [*earlier, label])
        session.commit()
        return row, conflicts
