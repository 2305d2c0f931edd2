"""The paper trail's SQL tables (revision 0004). Every one is a record: rows are added, not edited,
except where a column says otherwise."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, utc_now


class AuditEntry(Base):
    """One admin action: who did what to what, when. Append-only (the database refuses edits) and
    hash-chained (revision 0010): each row holds the hash of the one before (bot.store.audit)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(255))  # "slack:U123", "cli:alice", "tuesday" for triggers
    action: Mapped[str] = mapped_column(String(64))  # e.g. "retrain", "rollback", "base.approve"
    target: Mapped[str] = mapped_column(String(255), default="")  # a version, run, base, ticket...
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON: what else the action carried, never customer text
    # The previous row's hash (GENESIS for the first); unique, so two writers can never both extend one row.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True, server_default="")
    hash: Mapped[str] = mapped_column(String(64), server_default="")  # sha256 of this row's canonical form


class AuditText(Base):
    """Free text an audit entry refers to (a settlement's reason): kept out of the hash-chained log, so
    `tuesday forget` can blank it; the entry's detail holds this row's id."""

    __tablename__ = "audit_texts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)  # what the text is about, e.g. "example:12"
    text: Mapped[str | None] = mapped_column(Text, nullable=True)  # None once forgotten
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class BaseApproval(Base):
    """A base model's license note as a person approved (or withdrew) it; the newest row per name holds."""

    __tablename__ = "base_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)  # the base's short name, e.g. "smollm2-135m-instruct"
    model: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(255))
    obtained: Mapped[str] = mapped_column(String(64))  # the date the weights were obtained
    license: Mapped[str] = mapped_column(String(128))
    # JSON {commercial_use, hosted_use, customer_facing_output, modification, redistribution}: "allowed" or the restriction
    restrictions: Mapped[str] = mapped_column(Text, default="{}")
    notes: Mapped[str] = mapped_column(Text, default="")
    # content_sha256(files) since revision 0013 (before it, an optional single file's sha256)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    # JSON {relative path -> sha256} of every file approved (revision 0013); '{}': not pinned, training refuses it
    files: Mapped[str] = mapped_column(Text, server_default="{}")
    status: Mapped[str] = mapped_column(String(16), default="approved")  # approved | withdrawn
    approved_by: Mapped[str] = mapped_column(String(255))
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class DataApproval(Base):
    """A manager's approval of the labelled examples stored so far (ids up to up_to_example_id)."""

    __tablename__ = "data_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    up_to_example_id: Mapped[int] = mapped_column(Integer)
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON: what the approver was shown
    approved_by: Mapped[str] = mapped_column(String(255))
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Forgotten(Base):
    """A ticket whose text was removed on request (`tuesday forget`); it never enters a snapshot again."""

    __tablename__ = "forgotten"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_forgotten_source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    versions: Mapped[str] = mapped_column(Text, default="[]")  # JSON: the versions whose training data held it
    forgotten_by: Mapped[str] = mapped_column(String(255))
    forgotten_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
