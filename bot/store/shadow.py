"""The shadow version's answers: what it would have shown for a ticket, stored and never posted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, utc_now


class ShadowSuggestion(Base):
    """What the shadow version would have shown for a ticket production suggested; never posted."""

    __tablename__ = "shadow_suggestions"
    __table_args__ = (UniqueConstraint("suggestion_id", "version", name="uq_shadow_suggestion_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    suggestion_id: Mapped[int] = mapped_column(ForeignKey("suggestions.id"))  # production's, shown to agents
    version: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)  # shown after its own thresholds
    routing: Mapped[str] = mapped_column(String(16))  # suggested | unsure | out_of_scope | failed
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why a failed row failed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
