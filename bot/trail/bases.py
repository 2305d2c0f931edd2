"""Base-model license approvals: a person reads a base's license note and approves it, in SQL.

The built-in notes ship *proposed*; `tuesday base approve NAME --by ...` (or `/tuesday base approve
NAME` for admins) records the approval, and every training run is handed the approved notes
(`approved_licenses`): the trainer refuses a base without one. The newest row per name holds, so
withdrawing an approval is one more row, and the history stays.

An approval is bound to content: approving pins the sha256 of every file of the base (hashed on
this host from `path`, handed in as `pins` that `tuesday base pins PATH` printed on the host that
holds the base, or the note's own: a built-in's ship with it). The trainer refuses any other bytes under
the name, and a worker refuses to serve a version once the content it was built on is no longer
approved (inference.base_models).
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.store import audit
from bot.store.base import as_utc
from bot.store.trail import BaseApproval
from inference.base_models import (ALLOWED, APPROVED, BUILT_IN_NOTES, PROPOSED, RESTRICTIONS, WITHDRAWN, LicenseNote,
                                   base_pins, built_in_path, content_sha256)
from inference.errors import ModelError, TuesdayError

REQUIRED = ("model", "source", "version", "obtained", "license")


class BaseNoteError(TuesdayError):
    """A license note cannot be approved or withdrawn as asked."""


def _note(row: BaseApproval) -> LicenseNote:
    return LicenseNote(name=row.name, model=row.model, source=row.source, version=row.version, obtained=row.obtained,
                       license=row.license, restrictions=json.loads(row.restrictions or "{}"), notes=row.notes,
                       sha256=row.sha256, files=json.loads(row.files or "{}"), status=row.status, approved_by=row.approved_by,
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


def _pins(name: str, current: LicenseNote | None, path: str | Path | None, pins: dict | None,
          sha256: str | None) -> dict[str, str]:
    """The files the approval binds to: hashed from `path`, else given `pins`, else the note's own (a
    re-approval), else the installed built-in's; `sha256` (a published hash) must then name the same bytes."""
    if path is not None and pins is not None:
        raise BaseNoteError("give the base's --path or its --pins, not both")
    try:
        if path is not None:
            files = base_pins(Path(path))  # reads every byte: outside any session
        elif pins is not None:
            files = pins.get("files", pins) if isinstance(pins, dict) else None
            if not files or not all(isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in files.items()):
                raise BaseNoteError("pins must map each file's relative path to its sha256 (`tuesday base pins PATH --json`)")
            if isinstance(pins.get("sha256"), str) and pins["sha256"] != content_sha256(files):
                raise BaseNoteError("the pins' sha256 does not match their files: they were altered")
        elif current is not None and current.pinned:
            files = current.files
        elif built_in_path(name) is not None:
            files = base_pins(built_in_path(name))
        else:
            raise BaseNoteError(f"approving '{name}' pins the sha256 of every file of it: give --path PATH on a host "
                                "that holds the base, or --pins FILE from `tuesday base pins PATH --json` run there")
    except ModelError as exc:
        raise BaseNoteError(str(exc)) from None
    if sha256 and sha256.lower() not in {content_sha256(files), *(files.values() if len(files) == 1 else ())}:
        raise BaseNoteError(f"--sha256 {sha256[:12]}… is not the sha256 of the files found ({content_sha256(files)[:12]}…)")
    return dict(sorted(files.items()))


def approve(sessions: sessionmaker[Session], name: str, *, by: str, restrictions: dict | None = None,
            path: str | Path | None = None, pins: dict | None = None, **fields) -> LicenseNote:
    """Approve `name`'s note: the current (or built-in proposed) note with `fields` and `restrictions` changed,
    bound to the sha256 of every file of the base (see _pins for where they come from).

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
    published = fields.pop("sha256", None)
    merged = current.to_dict() if current else {"name": name, "restrictions": {}}
    merged.update({k: v for k, v in fields.items() if v is not None})
    merged["restrictions"] = {**merged.get("restrictions", {}), **(restrictions or {})}
    missing = [key for key in REQUIRED if not str(merged.get(key) or "").strip() or merged.get(key) == "unknown"]
    if missing:
        raise BaseNoteError(f"base '{name}' has no note to approve yet: give " + ", ".join(f"--{m}" for m in missing)
                            + " (and each use: " + ", ".join(f"--{r.replace('_', '-')}" for r in RESTRICTIONS) + ")")
    files = _pins(name, current, path, pins, published)  # reads every byte of the base: outside any session
    row = BaseApproval(name=name, model=merged["model"], source=merged["source"], version=merged["version"],
                       obtained=merged["obtained"], license=merged["license"],
                       restrictions=json.dumps(merged["restrictions"], sort_keys=True),
                       notes=merged.get("notes") or "", sha256=content_sha256(files), files=json.dumps(files),
                       status=APPROVED, approved_by=by)
    with sessions() as session:
        session.add(row)
        audit.record(session, by, "base.approve", name, license=row.license, version=row.version,
                     sha256=row.sha256, files=len(files),
                     restricted=sorted(LicenseNote.from_dict({**merged, "status": APPROVED}).restricted))
        session.commit()
        return _note(row)


def withdraw(sessions: sessionmaker[Session], name: str, *, by: str, reason: str = "") -> LicenseNote:
    """Withdraw an approval: training refuses the base again, and workers stop serving versions built on it."""
    current = note(sessions, name.strip().lower())
    if current is None or not current.approved:
        raise BaseNoteError(f"base '{name}' is not approved, so there is nothing to withdraw")
    row = BaseApproval(name=current.name, model=current.model, source=current.source, version=current.version,
                       obtained=current.obtained, license=current.license,
                       restrictions=json.dumps(current.restrictions, sort_keys=True),
                       notes=(f"withdrawn: {reason}" if reason else current.notes), sha256=current.sha256,
                       files=json.dumps(current.files), status=WITHDRAWN, approved_by=by)
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
    if n.pinned:
        lines.append(f"  sha256:       {n.sha256} (pins {len(n.files)} file{'s' if len(n.files) != 1 else ''})")
    elif n.status == APPROVED:
        lines.append("  sha256:       NOT PINNED (approved before pins): training refuses it until approved again")
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
