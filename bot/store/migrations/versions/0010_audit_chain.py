"""The audit log hash-chained, TRUNCATE refused on PostgreSQL, and settlement reasons moved out of it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Each audit row gets prev_hash (the hash of the row before it) and hash (sha256 of its canonical form,
bot.store.audit.entry_hash); the rows already there are chained here, oldest first. prev_hash is
unique: two writers can never both extend the same row. Free text an entry carried about a ticket
(a conflict settlement's reason) moves to audit_texts, which `tuesday forget` may blank; the entry
keeps the reference (`reason_text`). Both changes rewrite rows, so the append-only triggers are
lifted for this transaction only and put back before it ends.
"""

import hashlib
import json
from datetime import timezone

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
SQLITE_TRIGGERS = {event: f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                          "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
                   for event in ("UPDATE", "DELETE")}
PG_TRUNCATE = ("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
               "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")

audit_log = sa.table("audit_log", sa.column("id", sa.Integer()), sa.column("at", sa.DateTime(timezone=True)),
                     sa.column("actor", sa.String()), sa.column("action", sa.String()),
                     sa.column("target", sa.String()), sa.column("detail", sa.Text()),
                     sa.column("prev_hash", sa.String()), sa.column("hash", sa.String()))
audit_texts = sa.table("audit_texts", sa.column("id", sa.Integer()), sa.column("subject", sa.String()),
                       sa.column("text", sa.Text()), sa.column("created_at", sa.DateTime(timezone=True)))


def _entry_hash(id, at, actor, action, target, detail, prev_hash) -> str:
    """A frozen copy of bot.store.audit.entry_hash (a revision must not change when the code does)."""
    aware = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    canonical = json.dumps([int(id), aware.isoformat(timespec="microseconds"), actor, action, target, detail,
                            prev_hash], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _lift_triggers(bind) -> None:
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    else:
        for event in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{event.lower()}")


def _restore_triggers(bind) -> None:
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    else:
        for create in SQLITE_TRIGGERS.values():
            op.execute(create)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "audit_texts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_texts_subject", "audit_texts", ["subject"])
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(length=64), nullable=False, server_default=""))
    op.add_column("audit_log", sa.Column("hash", sa.String(length=64), nullable=False, server_default=""))
    _lift_triggers(bind)
    prev = GENESIS
    rows = bind.execute(sa.select(audit_log).order_by(audit_log.c.id)).mappings().all()
    for row in rows:
        detail = row["detail"]
        if row["action"] == "conflict.settle":
            parsed = json.loads(detail or "{}")
            if parsed.get("reason") is not None:
                subject = f"example:{parsed.get('example')}"
                note_id = bind.execute(audit_texts.insert().values(subject=subject, text=parsed.pop("reason"),
                                                                   created_at=row["at"])
                                       .returning(audit_texts.c.id)).scalar_one()
                parsed["reason_text"] = note_id
                detail = json.dumps(parsed, default=str, sort_keys=True)
        digest = _entry_hash(row["id"], row["at"], row["actor"], row["action"], row["target"], detail, prev)
        bind.execute(audit_log.update().where(audit_log.c.id == row["id"])
                     .values(detail=detail, prev_hash=prev, hash=digest))
        prev = digest
    _restore_triggers(bind)
    op.create_index("ix_audit_log_prev_hash", "audit_log", ["prev_hash"], unique=True)
    if bind.dialect.name == "postgresql":
        op.execute(PG_TRUNCATE)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    inspector = sa.inspect(bind)
    if "audit_texts" in inspector.get_table_names():
        # The reasons go back into their entries (a forgotten one stays out), as revision 0004 kept them.
        notes = dict(bind.execute(sa.select(audit_texts.c.id, audit_texts.c.text)).all())
        _lift_triggers(bind)
        for row in bind.execute(sa.select(audit_log.c.id, audit_log.c.detail)
                                .where(audit_log.c.detail.like('%"reason_text"%'))).all():
            parsed = json.loads(row.detail)
            parsed["reason"] = notes.get(parsed.pop("reason_text", None))
            bind.execute(audit_log.update().where(audit_log.c.id == row.id)
                         .values(detail=json.dumps(parsed, default=str, sort_keys=True)))
        _restore_triggers(bind)
        op.drop_index("ix_audit_texts_subject", table_name="audit_texts")
        op.drop_table("audit_texts")
    present = {c["name"] for c in inspector.get_columns("audit_log")}
    if "ix_audit_log_prev_hash" in {i["name"] for i in inspector.get_indexes("audit_log")}:
        op.drop_index("ix_audit_log_prev_hash", table_name="audit_log")
    for column in ("hash", "prev_hash"):
        if column in present:
            op.drop_column("audit_log", column) if bind.dialect.name != "sqlite" \
                else op.execute(f"ALTER TABLE audit_log DROP COLUMN {column}")
