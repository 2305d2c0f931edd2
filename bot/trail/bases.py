"""Base-model license approvals: a person reads a base's license note and approves it, in SQL.

The built-in notes ship *proposed*; `tuesday base approve NAME --by ...` (or `/tuesday base approve
NAME` for admins) records the approval, and every training run is handed the approved notes
(`approved_licenses`): the trainer refuses a base without one. The newest row per name holds, so
withdrawing an approval is one more row, and the history stays.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.store import audit
from bot.store.base import as_utc
from bot.store.trail import BaseApproval
from inference.base_models import ALLOWED, APPROVED, BUILT_IN_NOTES, PROPOSED, RESTRICTIONS, WITHDRAWN, LicenseNote
from inference.errors import TuesdayError

REQUIRED = ("model", "source", "version", "obtained", "license")


class BaseNoteError(TuesdayError):
    """A license note cannot be approved or withdrawn as asked."""


def _note(row: BaseApproval) -> LicenseNote:
    return LicenseNote(name=row.name, model=row.model, source=row.source, version=row.version, obtained=row.obtained,
                       license=row.license, restrictions=json.loads(row.restrictions or "{}"), notes=row.notes,
                       sha256=row.sha256, status=row.status, approved_by=row.approved_by,
                       approved_at=as_utc(row.approved_at).isoformat(timespec="seconds"))


def _newest(session: Session) -> dict[str, BaseApproval]:
    rows = session.scalars(select(BaseApproval).order_by(BaseApproval.id))
    return {row.name: row for row in rows}  # later rows replace earlier ones


def notes(sessions: sessionmaker[Session]) -> list[LicenseNote]:
    """Every base Tuesday knows of: the built-in proposals, then what people approved or withdrew."""
    with sessions() as session:
        recorded = {name: _note(row) for name, row in _newest(session).items()}
    built_in = {note.name: note for note in BUILT_IN_NOTES}
    return [recorded.get(name, note) for name, note in built_in.items()] + \
        [note for name, note in sorted(recorded.items()) if name not in built_in]


def note(sessions: sessionmaker[Session], name: str) -> LicenseNote | None:
    return next((n for n in notes(sessions) if n.name == name), None)


def approved_licenses(sessions: sessionmaker[Session]) -> dict[str, dict]:
    """name -> approved note (as a dict): what a train job is handed."""
    return {n.name: n.to_dict() for n in notes(sessions) if n.approved}


def approve(sessions: sessionmaker[Session], name: str, *, by: str, restrictions: dict | None = None,
            **fields) -> LicenseNote:
    """Approve `name`'s note: the current (or built-in proposed) note with `fields` and `restrictions` changed.

    A base Tuesday does not ship needs model, source, version, obtained and license; a use left
    out of restrictions counts as restricted ("not reviewed") until someone writes "allowed".
    """
    name = name.strip().lower()
    if not name:
        raise BaseNoteError("name the base to approve (`tuesday base` lists them)")
    if not by.strip():
        raise BaseNoteError("say who approves (--by)")
    unknown = set(restrictions or {}) - set(RESTRICTIONS)
    if unknown:
        raise BaseNoteError(f"unknown restriction(s) {', '.join(sorted(unknown))}; they are {', '.join(RESTRICTIONS)}")
    current = note(sessions, name)
    merged = current.to_dict() if current else {"name": name, "restrictions": {}}
    merged.update({k: v for k, v in fields.items() if v is not None})
    merged["restrictions"] = {**merged.get("restrictions", {}), **(restrictions or {})}
    missing = [key for key in REQUIRED if not str(merged.get(key) or "").strip() or merged.get(key) == "unknown"]
    if missing:
        raise BaseNoteError(f"base '{name}' has no note to approve yet: give " + ", ".join(f"--{m}" for m in missing)
                            + " (and each use: " + ", ".join(f"--{r.replace('_', '-')}" for r in RESTRICTIONS) + ")")
    row = BaseApproval(name=name, model=merged["model"], source=merged["source"], version=merged["version"],
                       obtained=merged["obtained"], license=merged["license"],
                       restrictions=json.dumps(merged["restrictions"], sort_keys=True),
                       notes=merged.get("notes") or "", sha256=merged.get("sha256") or "", status=APPROVED,
                       approved_by=by)
    with sessions() as session:
        session.add(row)
        audit.record(session, by, "base.approve", name, license=row.license, version=row.version,
                     restricted=sorted(LicenseNote.from_dict({**merged, "status": APPROVED}).restricted))
        session.commit()
        return _note(row)


def withdraw(sessions: sessionmaker[Session], name: str, *, by: str, reason: str = "") -> LicenseNote:
    """Withdraw an approval: training refuses the base again (versions already built keep serving)."""
    current = note(sessions, name.strip().lower())
    if current is None or not current.approved:
        raise BaseNoteError(f"base '{name}' is not approved, so there is nothing to withdraw")
    row = BaseApproval(name=current.name, model=current.model, source=current.source, version=current.version,
                       obtained=current.obtained, license=current.license,
                       restrictions=json.dumps(current.restrictions, sort_keys=True),
                       notes=(f"withdrawn: {reason}" if reason else current.notes), sha256=current.sha256,
                       status=WITHDRAWN, approved_by=by)
    with sessions() as session:
        session.add(row)
        audit.record(session, by, "base.withdraw", current.name, reason=reason)
        session.commit()
        return _note(row)


def status_word(n: LicenseNote) -> str:
    return {APPROVED: "approved", WITHDRAWN: "withdrawn", PROPOSED: "proposed (not approved)"}.get(n.status, n.status)


def note_text(n: LicenseNote) -> str:
    """A note as a reviewer reads it."""
    lines = [f"{n.name}: {n.model}", f"  status:       {status_word(n)}"
             + (f" by {n.approved_by} at {n.approved_at}" if n.status != PROPOSED else ""),
             f"  license:      {n.license}", f"  source:       {n.source}", f"  version:      {n.version}",
             f"  obtained:     {n.obtained}"]
    if n.sha256:
        lines.append(f"  sha256:       {n.sha256}")
    for key in RESTRICTIONS:
        value = n.restrictions.get(key) or "not reviewed"
        lines.append(f"  {key.replace('_', ' ') + ':':<27}{value if value == ALLOWED else 'RESTRICTED: ' + value}")
    if n.notes:
        lines.append(f"  notes:        {n.notes}")
    return "\n".join(lines)


def listing_text(all_notes: list[LicenseNote]) -> str:
    lines = []
    for n in all_notes:
        flags = f"  RESTRICTED: {', '.join(n.restricted)}" if n.restricted else ""
        lines.append(f"{n.name:<26} {n.license:<14} {status_word(n)}"
                     + (f" by {n.approved_by}" if n.status != PROPOSED else "") + flags)
    return "\n".join(lines)


def approve_built_ins(sessions: sessionmaker[Session], *, by: str) -> list[str]:
    """Approve the built-in notes still only proposed (the demos do, saying so); returns their names."""
    names = [n.name for n in notes(sessions) if n.status == PROPOSED]
    for name in names:
        approve(sessions, name, by=by)
    return names


def version_licenses(manifest: dict) -> list[dict]:
    """The license notes of the bases a version was built from (served family first), restrictions spelled out."""
    parts = sorted((manifest.get("families") or {}).items(), key=lambda kv: kv[0] != manifest.get("family"))
    seen, out = set(), []
    for _, part in parts:
        note = LicenseNote.from_dict(part.get("license") or {"name": "?", "model": "?", "source": "?", "version": "?",
                                                            "obtained": "?", "license": "unknown"})
        if note.name in seen:
            continue
        seen.add(note.name)
        out.append({"name": note.name, "license": note.license, "approved_by": note.approved_by,
                    "restricted": note.restricted})
    return out


def license_line(lic: dict) -> str:
    """'smollm2-135m-instruct: Apache-2.0, approved by cli:ana' or the restrictions, loudly."""
    head = f"{lic['name']}: {lic['license']}, " + (f"approved by {lic['approved_by']}" if lic["approved_by"]
                                                    else "*NOT APPROVED*")
    if lic["restricted"]:
        head += " · :warning: *RESTRICTED*: " + "; ".join(f"{k.replace('_', ' ')}: {v}"
                                                           for k, v in lic["restricted"].items())
    return head
