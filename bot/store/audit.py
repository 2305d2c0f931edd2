"""The audit log: every admin action, append-only in SQL; `tuesday audit` and `/tuesday audit` read it.

Actions are short dotted names: retrain, retrain.cancel, pause, resume, rollback, promote.signoff,
base.approve, base.withdraw, data.approve, conflict.settle, forget, shadow, ...
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.store.base import as_utc
from bot.store.trail import AuditEntry


def record(session_or_factory, actor: str, action: str, target: str = "", **detail) -> None:
    """Add one entry. Given a Session it joins that transaction (committed with the action itself);
    given a session factory it commits on its own."""
    entry = AuditEntry(actor=str(actor)[:255], action=action, target=str(target or "")[:255],
                       detail=json.dumps(detail, default=str, sort_keys=True))
    if isinstance(session_or_factory, Session):
        session_or_factory.add(entry)
        return
    with session_or_factory() as session:
        session.add(entry)
        session.commit()


def entries(sessions: sessionmaker[Session], *, limit: int = 50, action: str | None = None) -> list[dict]:
    """The newest `limit` entries (newest first), optionally of one action (or its dotted family)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where((AuditEntry.action == action) | AuditEntry.action.startswith(f"{action}."))
    with sessions() as session:
        return [{"id": e.id, "at": as_utc(e.at).isoformat(timespec="seconds"), "actor": e.actor,
                 "action": e.action, "target": e.target, "detail": json.loads(e.detail or "{}")}
                for e in session.scalars(query)]


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
