"""The system of record: labelled examples (and, later, tickets and feedback) in SQL."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, create_engine, select
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
