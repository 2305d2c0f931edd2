"""The helpdesk outbox table: one write-back per decision, delivered by bot.helpdesk.delivery."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.store.base import Base, utc_now
from bot.store.feedback import Feedback

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

STATUSES = (PENDING, DELIVERED, FAILED)


class WriteBack(Base):
    """One decision to write back to a helpdesk, and how far its delivery got."""

    __tablename__ = "writeback_outbox"
    __table_args__ = (UniqueConstraint("feedback_id", name="uq_writeback_outbox_feedback"),
                      Index("ix_writeback_outbox_due", "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    task: Mapped[str] = mapped_column(String(64))  # the field this writes (settings map a task to a field)
    helpdesk: Mapped[str] = mapped_column(String(64))  # the ticket's source, e.g. "zendesk"
    label: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")  # decision_note at the click, so a retry writes the same
    status: Mapped[str] = mapped_column(String(16), default=PENDING)  # one of STATUSES
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # attempts claimed so far
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    # Lets the row be added in the same flush as its feedback, before the feedback has an id.
    feedback: Mapped[Feedback] = relationship()
