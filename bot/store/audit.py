"""The audit log: every admin action, append-only and hash-chained in SQL; `tuesday audit` and `/tuesday audit` read it.

Actions are short dotted names: retrain, retrain.cancel, pause, resume, rollback, promote.signoff,
base.approve, base.withdraw, data.approve, conflict.settle, forget, shadow, ...

Tamper evidence (revision 0010): each row holds `prev_hash`, the hash of the row before it (GENESIS for
the first), and `hash`, the sha256 of its canonical form (`entry_hash`). The database refuses UPDATE,
DELETE and (PostgreSQL) TRUNCATE; whoever can drop those triggers (a database owner) can still edit
rows, and `verify` then finds the first row whose hash or link no longer holds. Removing the newest
rows leaves a shorter chain that still holds: compare `verify`'s head with one noted earlier.

Customer text never enters a row (a row cannot be changed, so `tuesday forget` could not remove it):
free text an action carries about a ticket (a settlement's reason) goes to audit_texts, and the
detail names that row's id as `<name>_text`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from bot.store.base import FORGOTTEN_TEXT, as_utc, utc_now
from bot.store.trail import AuditEntry, AuditText

GENESIS = "0" * 64  # the prev_hash of the first row
PG_AUDIT_LOCK = 0x7475657364 + 10  # transaction-scoped advisory lock serialising appends (any constant all share)
TEXT_SUFFIX = "_text"
VERIFY_BATCH = 1000


def canonical_at(value: datetime) -> str:
    """A stored time as the chain hashes it: UTC, microseconds (SQLite hands it back naive, PostgreSQL aware)."""
    aware = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return aware.isoformat(timespec="microseconds")


def entry_hash(id: int, at: datetime, actor: str, action: str, target: str, detail: str, prev_hash: str) -> str:
    """sha256 of one row's canonical form. Revision 0010 keeps a frozen copy of this: change neither alone."""
    canonical = json.dumps([int(id), canonical_at(at), actor, action, target, detail, prev_hash],
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _lock_and_next(session: Session) -> tuple[int, str]:
    """Take the log's append lock for the rest of the transaction; returns (the next id, the newest row's hash).

    PostgreSQL: a transaction-scoped advisory lock, then the id from the table's sequence. SQLite: a write
    statement that touches no row takes the database's write lock (SQLite has one writer at a time), so
    the newest row read after it cannot change before this transaction ends.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_AUDIT_LOCK})
        next_id = session.scalar(text("SELECT nextval(pg_get_serial_sequence('audit_log', 'id'))"))
    else:
        session.execute(update(AuditEntry).where(AuditEntry.id < 0).values(id=AuditEntry.id))
        next_id = None
    last = session.execute(select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first()
    if next_id is None or (last is not None and next_id <= last.id):
        if next_id is not None:  # rows written with their own ids left the sequence behind: it catches up
            session.execute(text("SELECT setval(pg_get_serial_sequence('audit_log', 'id'), :id)"), {"id": last.id + 1})
        next_id = (last.id if last else 0) + 1
    return int(next_id), (last.hash if last else GENESIS)


def record(session_or_factory, actor: str, action: str, target: str = "", *, texts: dict[str, str | None] | None = None,
           subject: str = "", **detail) -> None:
    """Add one entry, chained to the newest. Given a Session it joins that transaction (committed with the
    action itself): call it last, just before commit, as the append lock is held until then. Given a
    session factory it commits on its own.

    texts: free text about `subject` (e.g. {"reason": ...} with subject "example:12"), stored in
    audit_texts where `tuesday forget` can blank it; the entry's detail holds only their ids.
    """
    if isinstance(session_or_factory, Session):
        _append(session_or_factory, actor, action, target, texts or {}, subject, detail)
        return
    with session_or_factory() as session:
        _append(session, actor, action, target, texts or {}, subject, detail)
        session.commit()


def _append(session: Session, actor, action, target, texts: dict, subject: str, detail: dict) -> None:
    for name, value in texts.items():
        if value is None:
            continue
        note = AuditText(subject=subject[:255], text=value)
        session.add(note)
        session.flush()
        detail[f"{name}{TEXT_SUFFIX}"] = note.id
    entry_id, prev = _lock_and_next(session)
    row = {"id": entry_id, "at": utc_now(), "actor": str(actor)[:255], "action": action,
           "target": str(target or "")[:255], "detail": json.dumps(detail, default=str, sort_keys=True)}
    session.add(AuditEntry(**row, prev_hash=prev, hash=entry_hash(**row, prev_hash=prev)))
    session.flush()


def forget_texts(session: Session, subjects: list[str]) -> int:
    """Blank the audit texts about these subjects (in the caller's transaction); returns how many."""
    if not subjects:
        return 0
    return session.execute(update(AuditText).where(AuditText.subject.in_(subjects), AuditText.text.is_not(None))
                           .values(text=None)).rowcount


def _resolve(detail: dict, notes: dict[int, str | None]) -> dict:
    """The detail as a reader sees it: each `<name>_text` reference replaced by its text (or "[forgotten]")."""
    shown = {}
    for key, value in detail.items():
        if key.endswith(TEXT_SUFFIX) and isinstance(value, int):
            text_value = notes.get(value)
            shown[key[:-len(TEXT_SUFFIX)]] = FORGOTTEN_TEXT if text_value is None else text_value
        else:
            shown[key] = value
    return shown


def entries(sessions: sessionmaker[Session], *, limit: int = 50, action: str | None = None) -> list[dict]:
    """The newest `limit` entries (newest first), optionally of one action (or its dotted family)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where((AuditEntry.action == action) | AuditEntry.action.startswith(f"{action}."))
    with sessions() as session:
        rows = list(session.scalars(query))
        details = [json.loads(e.detail or "{}") for e in rows]
        ids = {v for d in details for k, v in d.items() if k.endswith(TEXT_SUFFIX) and isinstance(v, int)}
        notes = dict(session.execute(select(AuditText.id, AuditText.text).where(AuditText.id.in_(ids))).all()) \
            if ids else {}
        return [{"id": e.id, "at": as_utc(e.at).isoformat(timespec="seconds"), "actor": e.actor,
                 "action": e.action, "target": e.target, "detail": _resolve(d, notes)}
                for e, d in zip(rows, details)]


def verify(sessions: sessionmaker[Session], *, expect: str | None = None) -> dict:
    """Walk the chain oldest first; returns {ok, rows, checked, head, broken} where broken names the first row
    whose link (prev_hash) or own hash does not hold, and why. expect: a head hash noted earlier, which the
    chain must still pass through (removing the newest rows leaves a shorter chain that holds otherwise)."""
    checked, prev, head, seen = 0, GENESIS, None, expect is None
    with sessions() as session:
        total = int(session.scalar(select(func.count(AuditEntry.id))))
        after = 0
        while True:  # in batches by id: a long log is never held in memory whole
            batch = session.scalars(select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id)
                                    .limit(VERIFY_BATCH)).all()
            if not batch:
                break
            for row in batch:
                if row.prev_hash != prev:
                    why = ("it does not follow the row before it (a row was removed or inserted before it)"
                           if row.prev_hash else "it carries no hash")
                    return {"ok": False, "rows": total, "checked": checked, "head": head,
                            "broken": {"id": row.id, "why": why}}
                if entry_hash(row.id, row.at, row.actor, row.action, row.target, row.detail, row.prev_hash) != row.hash:
                    return {"ok": False, "rows": total, "checked": checked, "head": head,
                            "broken": {"id": row.id, "why": "its content does not match its hash (it was edited)"}}
                prev, head, checked = row.hash, {"id": row.id, "hash": row.hash}, checked + 1
                seen = seen or row.hash == expect
            after = batch[-1].id
            session.expunge_all()
    if not seen:
        return {"ok": False, "rows": total, "checked": checked, "head": head,
                "broken": {"id": None, "why": f"no row has the hash noted earlier ({expect[:16]}…): rows were removed "
                                              "from the end of the log, or it was rebuilt"}}
    return {"ok": True, "rows": total, "checked": checked, "head": head, "broken": None}


def verify_text(result: dict) -> str:
    if result["ok"]:
        if not result["head"]:
            return "The audit log is empty: nothing to verify."
        return (f"audit log intact: {result['checked']} row(s) chained; head row {result['head']['id']} "
                f"hash {result['head']['hash']} (note it: a later check that finds it proves no row before it changed)")
    broken = result["broken"]
    if broken["id"] is None:
        return f"audit log BROKEN: {broken['why']}. {result['checked']} row(s) chained"
    return (f"audit log BROKEN at row {broken['id']}: {broken['why']}. {result['checked']} row(s) before it hold"
            + (f" (up to row {result['head']['id']})" if result["head"] else ""))


def audit_text(rows: list[dict]) -> str:
    """One line per entry, newest first."""
    if not rows:
        return "The audit log is empty."
    lines = []
    for row in rows:
        detail = ", ".join(f"{k}={v}" for k, v in row["detail"].items() if v not in (None, "", [], {}))
        lines.append(f"{row['at'].replace('T', ' ')}  {row['actor']}  {row['action']}"
                     + (f" {row['target']}" if row["target"] else "") + (f"  ({detail})" if detail else ""))
    return "\n".join(lines)
