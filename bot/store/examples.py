"""Labelled examples: the rows a snapshot trains on (text PII-masked before it gets here)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.store.base import FORGOTTEN_TEXT, Base, utc_now


class Example(Base):
    """One labelled message. Text is PII-masked before it gets here."""

    __tablename__ = "examples"
    __table_args__ = (UniqueConstraint("task", "source", "external_id", name="uq_example_task_source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(64))  # the task whose label this is (one text may serve several)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    # JSON list of every label reviewers gave this text when they disagreed; None while they agree.
    # The first label stays in `label`; no snapshot holds the row until a manager settles it.
    conflict_labels: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A reviewer's verdict on a conflict (bot.trail.curation): `label` becomes the settled label.
    settled_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    settled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def conflicted(self) -> bool:
        """Reviewers gave different labels and nobody has settled it yet."""
        return self.conflict_labels is not None and self.settled_at is None

    @property
    def forgotten(self) -> bool:
        """Its text was removed on request; the row stays so ids are never reused (data approvals cut at ids)."""
        return self.text == FORGOTTEN_TEXT

    @property
    def key(self) -> str:
        """Stable id used for the holdout split."""
        return f"{self.source}:{self.external_id}"

    def to_row(self) -> dict:
        return {"id": self.key, "text": self.text, "label": self.label, "reason": self.reason}


def existing_ids(session: Session, source: str, task: str) -> set[str]:
    return set(session.scalars(select(Example.external_id).where(Example.source == source, Example.task == task)))


def all_examples(session: Session, task: str | None = None) -> list[Example]:
    """Every example of a task (or of every task), oldest first."""
    query = select(Example).order_by(Example.id)
    if task is not None:
        query = query.where(Example.task == task)
    return list(session.scalars(query))
