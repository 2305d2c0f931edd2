"""The system of record: labelled examples, incoming tickets and the suggestions made for them."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import (DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine,
                        select)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Example(Base):
    """One labelled message. Text is PII-masked before it gets here."""

    __tablename__ = "examples"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_example_source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    @property
    def key(self) -> str:
        """Stable id used for the holdout split."""
        return f"{self.source}:{self.external_id}"

    def to_row(self) -> dict:
        return {"id": self.key, "text": self.text, "label": self.label, "reason": self.reason}


def make_session_factory(url: str) -> sessionmaker[Session]:
    """Engine + tables + a session factory for a SQLAlchemy URL."""
    engine = create_engine(url, future=True)
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


def existing_ids(session: Session, source: str) -> set[str]:
    return set(session.scalars(select(Example.external_id).where(Example.source == source)))


def all_examples(session: Session) -> list[Example]:
    return list(session.scalars(select(Example).order_by(Example.id)))


def snapshot_store(sessions: sessionmaker[Session], task, out_dir, holdout_fraction: float):
    """Freeze every example whose label the task knows into a snapshot file; returns its path."""
    from inference.snapshot import write_snapshot

    with sessions() as session:
        rows = [e.to_row() for e in all_examples(session) if e.label in task.labels]
    return write_snapshot(rows, out_dir, holdout_fraction)


def holdout_rows(sessions: sessionmaker[Session], task, holdout_fraction: float) -> list[dict]:
    """The frozen holdout as it stands in the store."""
    from inference.splits import in_holdout

    with sessions() as session:
        rows = [e.to_row() for e in all_examples(session) if e.label in task.labels]
    return [r for r in rows if in_holdout(r["id"], holdout_fraction)]


# -- tickets and suggestions ----------------------------------------------------------------------

class Ticket(Base):
    """One message to triage, as it came in (subject, text and requester PII-masked)."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_ticket_source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    requester: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    @property
    def model_text(self) -> str:
        """What the model reads: the subject (when it adds anything) above the body."""
        if self.subject and self.subject not in self.text:
            return f"{self.subject}\n\n{self.text}"
        return self.text


class Suggestion(Base):
    """What the model said about a ticket, and where in Slack it was posted."""

    __tablename__ = "suggestions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)  # None: the model abstained
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[str] = mapped_column(Text, default="{}")  # JSON {label: probability}
    reason: Mapped[str] = mapped_column(Text, default="")
    model_version: Mapped[str] = mapped_column(String(64), default="")
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    slack_channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    slack_ts: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    @property
    def probs(self) -> dict[str, float]:
        return json.loads(self.probabilities or "{}")

    @property
    def abstained(self) -> bool:
        return self.label is None


def _find_ticket(session: Session, source: str, external_id: str) -> Ticket | None:
    return session.scalar(select(Ticket).where(Ticket.source == source, Ticket.external_id == external_id))


def add_ticket(sessions: sessionmaker[Session], *, source: str, external_id: str, text: str, subject: str = "",
               url: str | None = None, requester: str | None = None) -> tuple[Ticket, bool]:
    """Store a ticket once per (source, external_id), PII-masked; returns (ticket, created)."""
    from bot.pii import mask_pii

    # Masked here so no caller can store it raw. The URL is kept as given: masking would turn
    # a long ticket number in it into [ACCOUNT] and break the link.

    with sessions() as session:
        found = _find_ticket(session, source, external_id)
        if found is not None:
            return found, False
        ticket = Ticket(source=source, external_id=external_id, subject=mask_pii(subject or ""), text=mask_pii(text),
                        url=url or None, requester=mask_pii(requester) if requester else None)
        session.add(ticket)
        try:
            session.commit()
        except IntegrityError:
            # A concurrent redelivery inserted the same ticket between our select and insert.
            session.rollback()
            found = _find_ticket(session, source, external_id)
            if found is None:
                raise
            return found, False
        return ticket, True


def get_ticket(session: Session, ticket_id: int) -> Ticket | None:
    return session.get(Ticket, ticket_id)


def latest_suggestion(session: Session, ticket_id: int) -> Suggestion | None:
    return session.scalar(select(Suggestion).where(Suggestion.ticket_id == ticket_id)
                          .order_by(Suggestion.id.desc()).limit(1))


def add_suggestion(session: Session, ticket_id: int, prediction, *, threshold: float) -> Suggestion:
    """Record a predictor's suggestion; below the threshold the label is left empty (abstained)."""
    row = Suggestion(ticket_id=ticket_id, label=prediction.label if prediction.confidence >= threshold else None,
                     confidence=float(prediction.confidence), probabilities=json.dumps(prediction.probabilities),
                     reason=prediction.reason or "", model_version=prediction.model_version or "",
                     latency_ms=float(prediction.latency_ms))
    session.add(row)
    session.commit()
    return row


def set_slack_message(session: Session, suggestion_id: int, channel: str, ts: str) -> Suggestion:
    """Remember where the suggestion was posted, so clicks and updates can find the message."""
    row = session.get(Suggestion, suggestion_id)
    row.slack_channel, row.slack_ts = channel, ts
    session.commit()
    return row
