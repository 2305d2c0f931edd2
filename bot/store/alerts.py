"""Alerts as rows: one per kind, key and day, claimed before it is posted (bot.monitor.alerts)."""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import Date, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, as_utc, utc_now


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat(timespec="seconds")


class Alert(Base):
    """One alert (or weekly digest) as fired: at most one row per kind, key and UTC day."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("kind", "key", "day", name="uq_alert_kind_key_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # one of KINDS, or DIGEST
    key: Mapped[str] = mapped_column(String(128), default="")  # the label, for per-label rules
    day: Mapped[date] = mapped_column(Date)  # the UTC day it fired (a digest: the day it was due)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    message: Mapped[str] = mapped_column(Text)
    measures: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the numbers the rule saw
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    posted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    slack_ts: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set by the first check that finds the rule no longer holds; digests are never open.
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "key": self.key, "day": self.day.isoformat(),
                "fired_at": _iso(self.fired_at), "message": self.message, "measures": json.loads(self.measures or "{}"),
                "posted_at": _iso(self.posted_at), "resolved_at": _iso(self.resolved_at)}
