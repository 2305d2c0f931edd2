"""`/tuesday base` and `/tuesday audit`: license approvals and the audit log, for admins in Slack."""

from __future__ import annotations

from bot.store import audit
from bot.trail import bases

AUDIT_LINES = 20


def do_base(runtime, queues, user_id: str, args: str) -> str:
    """`/tuesday base` lists the notes; `base NAME` shows one; `base approve NAME`; `base withdraw NAME why`."""
    verb, _, rest = args.strip().partition(" ")
    verb, rest = verb.lower(), rest.strip()
    if verb == "approve":
        name = rest.split(" ")[0]
        if not name:
            return "Usage: `/tuesday base approve <name>` (`/tuesday base` lists them)."
        note = bases.approve(runtime.sessions, name, by=f"slack:{user_id}")
        return f"Approved the license note of *{note.name}*; training may use it.\n```{bases.note_text(note)}```"
    if verb == "withdraw":
        name, _, reason = rest.partition(" ")
        if not name:
            return "Usage: `/tuesday base withdraw <name> <why>`."
        note = bases.withdraw(runtime.sessions, name, by=f"slack:{user_id}", reason=reason.strip())
        return (f"Approval of *{note.name}* withdrawn: training refuses it, and workers stop serving versions built "
                "on it, until it is approved again.")
    if verb:
        note = bases.note(runtime.sessions, verb)
        if note is None:
            return f"No base named `{verb}`. `/tuesday base` lists them."
        return f"```{bases.note_text(note)}```"
    return ("Base models' license notes (training refuses a base until its note is approved; "
            "`/tuesday base <name>` shows one, `/tuesday base approve <name>` approves it):\n"
            f"```{bases.listing_text(bases.notes(runtime.sessions))}```")


def do_audit(runtime, queues, user_id: str, args: str) -> str:
    """The newest entries of the audit log (`/tuesday audit <action>` for one kind)."""
    rows = audit.entries(runtime.sessions, limit=AUDIT_LINES, action=args.strip().lower() or None)
    return f"Audit log, newest first (`tuesday audit` shows more):\n```{audit.audit_text(rows)}```"
