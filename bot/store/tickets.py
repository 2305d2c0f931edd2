"""Incoming tickets, the suggestions made for them and their routing, and the tickets still waiting for one."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.store.base import Base, utc_now
from inference.errors import TuesdayError


DOOR, FULL = "door", "full"  # Ticket.pii_stage: the masking stages its text has passed (inference.pii)


class NotMasked(TuesdayError):
    """A ticket's text is read before the worker's masking stage has run on it."""


class Ticket(Base):
    """One message to triage, as it came in (subject, text and requester PII-masked by both stages)."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_ticket_source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)  # always NULL since 0004: see add_ticket
    requester: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    # Poison tickets (revision 0008): failed suggest jobs, and when Tuesday gave up on it (then `failed`).
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")  # the server's: older schemas lack it
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the exception's type only
    # Revision 0009: `door` until the worker's stage has masked names and addresses (bot.store.masking).
    # Until then subject, text and requester are empty here: the door's text waits in door_texts, which
    # only that stage reads, so nothing else can read a name the worker has not masked yet.
    pii_stage: Mapped[str] = mapped_column(String(8), server_default=FULL)

    @property
    def model_text(self) -> str:
        """What the model reads: the subject (when it adds anything) above the body."""
        if self.pii_stage != FULL:
            raise NotMasked(f"ticket {self.id} has not passed the worker's masking stage")
        if self.subject and self.subject not in self.text:
            return f"{self.subject}\n\n{self.text}"
        return self.text


class DoorText(Base):
    """A ticket's subject, text and requester as the door masked them (names and addresses not yet), until the
    worker's stage masks them again, moves them to the ticket and deletes this row (bot.store.masking)."""

    __tablename__ = "door_texts"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    requester: Mapped[str | None] = mapped_column(Text, nullable=True)


SUGGESTED, UNSURE, OUT_OF_SCOPE = "suggested", "unsure", "out_of_scope"

ROUTINGS = (SUGGESTED, UNSURE, OUT_OF_SCOPE)


def route(label: str, confidence: float, *, threshold: float, handoff_threshold: float = 0.0,
          handoff_label: str | None = None, similarity: float | None = None,
          far: float = 0.0, far_hands_off: bool = True) -> tuple[str, str | None]:
    """(routing, label shown) of a prediction: hand-off first, then suggest or abstain.

    similarity: the ticket's nearest labelled example's; below `far` (the version's far cut) the ticket
    is unlike anything the team labelled: handed off (where the version's promise carries it,
    `far_hands_off`), else unsure (a new kind of ticket, asking for a label), however confident the model is.

    >>> route("claim_status", 0.1, threshold=0.5, handoff_threshold=0.2, handoff_label="hand_off")
    ('out_of_scope', 'hand_off')
    >>> route("new_claim", 0.97, threshold=0.5, handoff_label="hand_off", similarity=0.31, far=0.42)
    ('out_of_scope', 'hand_off')
    """
    if far and similarity is not None and similarity < far:
        return (OUT_OF_SCOPE, handoff_label) if handoff_label and far_hands_off else (UNSURE, None)
    # Below the hand-off threshold the model is not merely unsure between labels: the ticket
    # looks unlike anything the team handles, so it goes to a human whatever the abstain threshold.
    if handoff_label and confidence < handoff_threshold:
        return OUT_OF_SCOPE, handoff_label
    if confidence >= threshold:
        return SUGGESTED, label
    return UNSURE, None


MEASURED_COLUMNS = ("model_version", "label", "routing", "first_action", "first_label", "last_label", "latency_ms",
                    "cpu_ms", "posted_at", "first_click_at", "nearest_similarity", "predicted_label", "ticket_id")


class Suggestion(Base):
    """What the model said about a ticket, and where in Slack it was posted."""

    __tablename__ = "suggestions"
    # The measures (bot.monitor) read a window by created_at; on PostgreSQL the index also carries the
    # columns they read, so a week is an index-only scan (revision 0005).
    __table_args__ = (Index("ix_suggestions_created_at", "created_at", postgresql_include=list(MEASURED_COLUMNS)),
                      Index("ix_suggestions_ticket_task", "ticket_id", "task"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    task: Mapped[str] = mapped_column(String(64))  # one suggestion per task a ticket is labelled for
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)  # None: the model abstained
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[str] = mapped_column(Text, default="{}")  # JSON {label: probability}
    reason: Mapped[str] = mapped_column(Text, default="")
    model_version: Mapped[str] = mapped_column(String(64), default="")
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    slack_channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    slack_ts: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    # One of ROUTINGS; None on rows stored before routing existed (read them by `abstained`).
    routing: Mapped[str | None] = mapped_column(String(16), nullable=True, default=SUGGESTED)
    # JSON list of the nearest labelled training examples: {id, text, label, reason, similarity}.
    evidence: Mapped[str | None] = mapped_column(Text, nullable=True, default="[]")
    # Since 0005, for bot.monitor: when the Slack message was stored (None: not posted, or an older
    # row; the measures then use created_at), the prediction's process CPU time, the model's top
    # label whatever the routing, and evidence[0]'s similarity (read as columns, never as JSON).
    posted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cpu_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    predicted_label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    nearest_similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Its first click and the last click's label, kept by a database trigger on every insert into
    # feedback (revision 0005), so the measures read one table; None until someone clicks.
    first_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    first_label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    first_click_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    clicks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Since 0006: the label_priors row its probabilities were re-weighted by (bot.monitor.label_priors), so the
    # model's own probabilities can be recovered; None: the model's probabilities as they came.
    prior_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    @property
    def probs(self) -> dict[str, float]:
        return json.loads(self.probabilities or "{}")

    @property
    def evidence_rows(self) -> list[dict]:
        return json.loads(self.evidence or "[]")

    @property
    def abstained(self) -> bool:
        return self.label is None

    @property
    def out_of_scope(self) -> bool:
        return self.routing == OUT_OF_SCOPE


class LabelPrior(Base):
    """The label frequencies estimated from a version's recent suggestions (bot.monitor.label_priors)."""

    __tablename__ = "label_priors"
    __table_args__ = (Index("ix_label_priors_version", "version", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    estimated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    n_tickets: Mapped[int] = mapped_column(Integer)
    prior: Mapped[str] = mapped_column(Text)  # JSON {label: share} of the live stream
    training: Mapped[str] = mapped_column(Text)  # JSON {label: share} the version learned from
    shift: Mapped[float] = mapped_column(Float)  # total variation between the two
    applied: Mapped[bool] = mapped_column(Boolean)  # whether serving re-weights by it


def _find_ticket(session: Session, source: str, external_id: str) -> Ticket | None:
    return session.scalar(select(Ticket).where(Ticket.source == source, Ticket.external_id == external_id))


def add_ticket(sessions: sessionmaker[Session], *, source: str, external_id: str, text: str, subject: str = "",
               requester: str | None = None) -> tuple[Ticket, bool]:
    """Store a ticket once per (source, external_id), masked by the door's stage; returns (ticket, created).

    The door's stage (inference.pii.mask_door: emails, URLs with secrets, IPs, cards, IBANs, SSNs, accounts,
    phones) runs here, so no caller can store raw text; names and addresses are the worker's
    (bot.store.masking.finish_masking), and until then the text waits in door_texts, not on the ticket.
    No URL is stored (a link can carry a token or an email): bot.helpdesk.adapters.ticket_link builds one
    from the source, the id and the settings when a message shows the ticket.

    The door's path, so it is lean: mask (outside any session: masking holds no pooled connection), then one
    transaction of two plain INSERTs; a redelivery is found by the unique key it violates, not by a lookup
    before every insert. A created ticket comes back detached, with its id, source and external id.
    """
    from inference.pii import mask_door

    door = {"subject": mask_door(subject or ""), "text": mask_door(text),
            "requester": mask_door(requester) if requester else None}
    with sessions() as session:
        try:
            ticket_id = session.execute(
                insert(Ticket).values(source=source, external_id=external_id, subject="", text="", requester=None,
                                      pii_stage=DOOR, created_at=utc_now()).returning(Ticket.id)).scalar_one()
            session.execute(insert(DoorText).values(ticket_id=ticket_id, **door))
            session.commit()
        except IntegrityError:
            # Delivered before (or by a concurrent redelivery a moment ago): that ticket, unchanged.
            session.rollback()
            found = _find_ticket(session, source, external_id)
            if found is None:
                raise
            return found, False
    return Ticket(id=ticket_id, source=source, external_id=external_id, subject="", text="", requester=None,
                  pii_stage=DOOR), True


def get_ticket(session: Session, ticket_id: int) -> Ticket | None:
    return session.get(Ticket, ticket_id)


def latest_suggestion(session: Session, ticket_id: int, task: str | None = None) -> Suggestion | None:
    """The ticket's newest suggestion for a task (or for any task)."""
    query = select(Suggestion).where(Suggestion.ticket_id == ticket_id)
    if task is not None:
        query = query.where(Suggestion.task == task)
    return session.scalar(query.order_by(Suggestion.id.desc()).limit(1))


def add_suggestion(session: Session, ticket_id: int, prediction, *, task: str, threshold: float,
                   handoff_threshold: float = 0.0,
                   handoff_label: str | None = None, cpu_ms: float | None = None,
                   prior_id: int | None = None, far: float = 0.0, far_hands_off: bool = True) -> Suggestion:
    """Record a predictor's suggestion, routed by `route`: below the threshold the label is left
    empty (unsure); below the hand-off threshold it is the hand-off label (out of scope).
    cpu_ms: the prediction's CPU time (bot.worker.suggest measures it), for the measures' cost;
    prior_id: the LabelPrior its probabilities were re-weighted by, if any; far: the version's far cut."""
    evidence = getattr(prediction, "evidence", None) or []
    routing, label = route(prediction.label, float(prediction.confidence), threshold=threshold,
                           handoff_threshold=handoff_threshold, handoff_label=handoff_label,
                           similarity=_nearest_similarity(evidence), far=far, far_hands_off=far_hands_off)
    row = Suggestion(ticket_id=ticket_id, task=task, label=label, routing=routing,
                     confidence=float(prediction.confidence), probabilities=json.dumps(prediction.probabilities),
                     reason=prediction.reason or "", model_version=prediction.model_version or "",
                     latency_ms=float(prediction.latency_ms), evidence=json.dumps(evidence, ensure_ascii=False),
                     cpu_ms=None if cpu_ms is None else float(cpu_ms), predicted_label=prediction.label,
                     nearest_similarity=_nearest_similarity(evidence), prior_id=prior_id)
    session.add(row)
    session.commit()
    return row


def _nearest_similarity(evidence: list) -> float | None:
    first = evidence[0] if evidence and isinstance(evidence[0], dict) else {}
    similarity = first.get("similarity")
    return None if similarity is None else float(similarity)


def set_slack_message(session: Session, suggestion_id: int, channel: str, ts: str) -> Suggestion:
    """Remember where the suggestion was posted, so clicks and updates can find the message.

    posted_at is kept from the first post: a re-post after a retry does not restart the review clock.
    """
    row = session.get(Suggestion, suggestion_id)
    row.slack_channel, row.slack_ts = channel, ts
    row.posted_at = row.posted_at or utc_now()
    session.commit()
    return row


BATCH = 500


def _unsuggested(posts: bool, task: str | None = None):
    """Tickets with no suggestion (of the routing task `task`, if named) yet (or, when Tuesday posts to Slack,
    none posted yet), and not given up on (failed). The suggest job stores the routing task's row last, so a
    ticket with one has every field."""
    missing = Suggestion.id.is_(None)
    if posts:
        missing = or_(missing, Suggestion.slack_ts.is_(None))
    joined = Suggestion.ticket_id == Ticket.id
    if task is not None:
        joined = and_(joined, Suggestion.task == task)
    return select(Ticket.id).outerjoin(Suggestion, joined).where(missing, Ticket.failed_at.is_(None))


def unsuggested_tickets(sessions, *, posts: bool, before: datetime | None = None, limit: int = BATCH,
                        task: str | None = None) -> list[int]:
    query = _unsuggested(posts, task)
    if before is not None:
        query = query.where(Ticket.created_at < before)
    with sessions() as session:
        # Fewest failed attempts first: a ticket whose job keeps failing never starves the later ones.
        ordered = query.add_columns(Ticket.attempts).order_by(Ticket.attempts, Ticket.id).limit(limit)
        return list(dict.fromkeys(row[0] for row in session.execute(ordered)))


def waiting_count(sessions, *, posts: bool, task: str | None = None) -> int:
    """How many tickets wait for a suggestion (shown by `/tuesday status`)."""
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(_unsuggested(posts, task).distinct().subquery())))


def record_failure(sessions, ticket_id: int, error: str, *, max_attempts: int) -> bool:
    """Count one failed suggest job of a ticket (error: the exception's type); returns whether it is `failed` now
    (max_attempts reached: the sweeper leaves it alone until `tuesday tickets --retry`)."""
    with sessions() as session:
        ticket = session.get(Ticket, ticket_id, with_for_update=True)
        if ticket is None:
            return False
        ticket.attempts = (ticket.attempts or 0) + 1
        ticket.last_error = error[:255]
        if ticket.attempts >= max_attempts and ticket.failed_at is None:
            ticket.failed_at = utc_now()
        session.commit()
        return ticket.failed_at is not None


def failed_tickets(sessions, limit: int = 50) -> list[Ticket]:
    """Tickets Tuesday gave up on, newest first."""
    with sessions() as session:
        return list(session.scalars(select(Ticket).where(Ticket.failed_at.is_not(None))
                                    .order_by(Ticket.failed_at.desc(), Ticket.id.desc()).limit(limit)))


def failed_count(sessions, since: datetime | None = None) -> int:
    query = select(func.count()).select_from(Ticket).where(Ticket.failed_at.is_not(None))
    if since is not None:
        query = query.where(Ticket.failed_at >= since)
    with sessions() as session:
        return int(session.scalar(query) or 0)


def retry_tickets(sessions, ids: list[int] | None = None) -> list[int]:
    """Forget the failures of failed tickets (all of them, or `ids`), so the sweeper queues them again."""
    with sessions() as session:
        query = select(Ticket).where(Ticket.failed_at.is_not(None))
        if ids is not None:
            query = query.where(Ticket.id.in_(ids))
        tickets = list(session.scalars(query))
        for ticket in tickets:
            ticket.failed_at, ticket.attempts, ticket.last_error = None, 0, None
        session.commit()
        return [t.id for t in tickets]
