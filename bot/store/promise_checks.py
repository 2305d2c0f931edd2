"""The exchangeability checks of production versions (bot.monitor.promise): is the promise valid now, and the
hand-off threshold re-set from clicked tickets while it is not."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, String, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.store.base import Base, utc_now


class PromiseCheck(Base):
    """One check of a version's live suggestions against the rows its promise was measured on (revision 0015)."""

    __tablename__ = "promise_checks"
    # Every suggest worker reads its version's newest row.
    __table_args__ = (Index("ix_promise_checks_version", "version", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(64))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    n: Mapped[int] = mapped_column(Integer)  # live suggestions with a nearest-neighbour similarity in the window
    below: Mapped[int] = mapped_column(Integer)  # of those, below the version's holdout p05
    p05: Mapped[float] = mapped_column(Float)  # the holdout's 5th percentile it was compared with
    p_value: Mapped[float] = mapped_column(Float)  # P(Binomial(n, 0.05) >= below)
    shifted: Mapped[bool] = mapped_column(Boolean)
    # While shifted (else None): the re-set hand-off threshold, whether the far rule stays on, and which case
    # of the rule applied on how many clicked tickets (bot.monitor.promise.reset_handoff).
    reset_handoff: Mapped[float | None] = mapped_column(Float, nullable=True)
    reset_bound: Mapped[float | None] = mapped_column(Float, nullable=True)
    far_on: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    clicked_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    in_scope_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rule: Mapped[str | None] = mapped_column(String(32), nullable=True)

    def to_dict(self) -> dict:
        from bot.store.base import as_utc

        return {"version": self.version, "task": self.task,
                "checked_at": as_utc(self.checked_at).isoformat(timespec="seconds"), "n": self.n,
                "below": self.below, "p05": self.p05, "p_value": self.p_value, "shifted": self.shifted,
                "reset_handoff": self.reset_handoff, "reset_bound": self.reset_bound, "far_on": self.far_on,
                "clicked_n": self.clicked_n, "in_scope_n": self.in_scope_n, "rule": self.rule}


def add_check(sessions, **values) -> PromiseCheck:
    row = PromiseCheck(**values)
    with sessions() as session:
        session.add(row)
        session.commit()
    return row


def newest_check(session: Session, version: str, *, timeout_s: float | None = None) -> PromiseCheck | None:
    """The version's newest check; on PostgreSQL the read gives up after timeout_s (its transaction's statement_timeout)."""
    if timeout_s is not None and session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}"))
    return session.scalar(select(PromiseCheck).where(PromiseCheck.version == version)
                          .order_by(PromiseCheck.id.desc()).limit(1))
