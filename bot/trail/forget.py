"""`tuesday forget TICKET`: remove a ticket's text from the store and from every future snapshot.

What goes: the text, subject and requester of the ticket (and the door's copy, if the worker's
masking stage has not run yet); the text and reasons of its training example (and of any imported
example under the same id), which the training-rows rule then leaves out; the reviewers' written
reasons on it (and in the notes its write-backs carry); the model's generated reason on its suggestions;
its text where another ticket's suggestion showed it as evidence. What stays: the rows themselves (ids, labels, clicks, times), so counts
and the audit trail still add up, no later row takes their ids, and a redelivered webhook or a
re-import finds them and stores nothing again. A settlement's reason on its example (kept in
audit_texts, never in the hash-chained audit log) is blanked.

Then every file copy goes (bot.trail.purge): stored snapshots are rewritten without the rows (the
old objects deleted), each version's evidence, vocabulary, TF-IDF terms and review sheet too, with
a redaction record per version beside its unchanged manifest; this host's snapshot files and
cached copies are deleted. The weights of versions trained on the rows still carry what they
learnt: the answer names those versions (and their snapshots), so an admin can retire them. The
answer lists what was purged by counts and keys, never the text.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.store import audit
from bot.store.base import FORGOTTEN_TEXT, utc_now
from bot.store.examples import Example
from bot.store.feedback import Feedback, feedback_example_id
from bot.store.masking import drop_door_texts
from bot.store.outbox import WriteBack
from bot.store.runs import Flag
from bot.store.tickets import FULL, Suggestion, Ticket
from bot.store.trail import Forgotten
from bot.trail.purge import purge_host, purge_store
from bot.trail.snapshots import version_rows
from inference.artifacts import ArtifactError
from inference.errors import TuesdayError
from inference.redaction import RedactionError


PURGED_FLAG = "forget.purged"  # control_flags row, a new value after every purge (forgotten_generation)
WHY_PREFIX = "Why: "  # where a write-back's note quotes the reviewer, to its end (bot.helpdesk.adapters.decision_note)


class ForgetError(TuesdayError):
    """The ticket to forget cannot be found or is not named precisely enough, or its file copies were not all purged."""


def _find(session: Session, ref: str, source: str | None) -> tuple[list[Ticket], list[Example]]:
    """Tickets and examples named by `ref` ("source:id" or a bare id, narrowed by `source`)."""
    candidates = [(source, ref)] if source else [(None, ref)]
    if not source and ":" in ref:
        candidates.append(tuple(ref.split(":", 1)))
    tickets, examples = [], []
    for src, ext in candidates:
        ticket_query = select(Ticket).where(Ticket.external_id == ext)
        example_query = select(Example).where(Example.external_id == ext)
        if src:
            ticket_query = ticket_query.where(Ticket.source == src)
            example_query = example_query.where(Example.source == src)
        tickets += session.scalars(ticket_query).all()
        examples += session.scalars(example_query).all()
    for ticket in tickets:  # the training example its clicks made
        examples += session.scalars(select(Example).where(Example.source == "feedback",
                                                          Example.external_id == feedback_example_id(ticket.id))).all()
    return list({t.id: t for t in tickets}.values()), list({e.id: e for e in examples}.values())


def forget(runtime, ref: str, *, by: str, source: str | None = None) -> dict:
    """Forget the ticket (or labelled example) `ref`; returns what was removed and which versions saw it."""
    with runtime.sessions() as session:
        tickets, examples = _find(session, ref, source)
        if not tickets and not examples:
            raise ForgetError(f"no ticket or labelled example '{ref}'" + (f" from {source}" if source else ""))
        if len({t.source for t in tickets}) > 1:
            raise ForgetError(f"'{ref}' names tickets from several sources ({', '.join(sorted({t.source for t in tickets}))}); "
                              "say which with --source")
        keys = {e.key for e in examples}
        # A ticket still at the door's masking stage was never seen by a model (nor its text by anything).
        masked = [t for t in tickets if t.pii_stage == FULL]
        texts = {e.text for e in examples} | {t.model_text for t in masked} | {t.text for t in masked}
        texts -= {FORGOTTEN_TEXT, "", None}  # forgotten once already: its rows are found by id
    versions = _versions_that_saw(runtime.registry, keys, texts)
    with runtime.sessions() as session:
        sqlite = session.get_bind().dialect.name == "sqlite"
        if sqlite:  # the old text's bytes are zeroed in the file, not left in freed space
            session.execute(text("PRAGMA secure_delete = ON"))
        tickets, examples = _find(session, ref, source)
        ticket_ids = [t.id for t in tickets]
        for ticket in tickets:
            ticket.text, ticket.subject, ticket.requester, ticket.url = FORGOTTEN_TEXT, "", None, None
            ticket.pii_stage = FULL  # nothing left for the worker's stage to move
        unmasked = drop_door_texts(session, ticket_ids)
        # A tombstone per id: a re-import or a click on the ticket does not bring the text back.
        for src, ext in {(t.source, t.external_id) for t in tickets} | {(e.source, e.external_id) for e in examples}:
            if not is_forgotten(session, src, ext):
                session.add(Forgotten(source=src, external_id=ext, versions=json.dumps(versions), forgotten_by=by))
        # The rows stay (blanked), so no later example takes their ids: data approvals cut at ids.
        for example in examples:
            example.text, example.reason, example.settled_reason = FORGOTTEN_TEXT, None, None
        reasons = 0
        if ticket_ids:
            for row in session.scalars(select(Feedback).where(Feedback.ticket_id.in_(ticket_ids),
                                                              Feedback.why.is_not(None))):
                row.why, reasons = None, reasons + 1
        scrubbed = _scrub_evidence(session, keys)
        model_reasons, notes = _scrub_copies(session, ticket_ids)
        audit_texts = audit.forget_texts(session, [f"example:{e.id}" for e in examples])
        audit.record(session, by, "forget", ref, source=source, examples=len(examples), versions=versions)
        session.commit()
    if sqlite:  # and the write-ahead log's copies of the old pages go back into the (zeroed) file
        with runtime.sessions() as session:
            session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    # After the commit: the tombstones keep every new snapshot clean while the files are rewritten.
    try:
        purged = purge_store(runtime.registry, keys, texts, ref=f"forget {ref}")
        settings = runtime.settings
        purged["host_files"] = purge_host([settings.data_dir / "snapshots", settings.model_cache_dir / "snapshots"],
                                          keys, texts)
    except (ArtifactError, RedactionError, OSError) as exc:
        # Our errors name keys and the store's answer (e.g. a permission the bucket policy lacks), never text.
        why = str(exc) if isinstance(exc, TuesdayError) else type(exc).__name__
        raise ForgetError(f"'{ref}' is forgotten in the SQL store, but its copies in the files were not all purged "
                          f"({why}): run the same `tuesday forget` again to finish") from exc
    _mark_purged(runtime.sessions, by, ref, purged)
    return {"ticket": ref, "tickets": len(ticket_ids), "examples": sorted(keys), "reasons_removed": reasons,
            "door_texts_removed": unmasked, "audit_texts_removed": audit_texts,
            "model_reasons_removed": model_reasons, "write_back_notes_scrubbed": notes,
            "evidence_scrubbed": scrubbed, "versions": versions, "purged": purged}


def _mark_purged(sessions, by: str, ref: str, purged: dict) -> None:
    """Audit the purge and move the purge flag on, together: serving processes reload after the files changed."""
    for _ in range(2):
        with sessions() as session:
            flag = session.get(Flag, PURGED_FLAG)
            if flag is None:
                flag = Flag(name=PURGED_FLAG)
                session.add(flag)
            flag.value, flag.set_by, flag.set_at = uuid.uuid4().hex, by[:255], utc_now()
            audit.record(session, by, "forget.purge", ref, snapshots=len(purged["snapshots"]),
                         versions=purged["versions"], host_files=len(purged["host_files"]))
            try:
                session.commit()
                return
            except IntegrityError:  # another forget made the flag row at the same moment: update it instead
                session.rollback()
    raise ForgetError(f"'{ref}': the purge flag could not be set; run the same `tuesday forget` again")


def forgotten_generation(sessions) -> str | None:
    """Changes after every forget's purge of the files (the purge flag): a serving process that sees it change
    loads its version again, with the rewritten evidence (bot.worker.predictors). One primary-key read."""
    with sessions() as session:
        flag = session.get(Flag, PURGED_FLAG)
        return flag.value if flag is not None else None


def is_forgotten(session: Session, source: str, external_id: str) -> bool:
    return session.scalar(select(Forgotten.id).where(Forgotten.source == source,
                                                     Forgotten.external_id == external_id)) is not None


def _versions_that_saw(registry, keys: set[str], texts: set[str]) -> list[dict]:
    """[{version, split, snapshot}] for each version whose snapshot held one of the rows (by id or text)."""
    seen = []
    for info in registry.versions():
        try:
            rows = version_rows(registry, info)
        except Exception as exc:  # an unreadable snapshot is said, not skipped silently
            seen.append({"version": info.name, "split": f"unknown ({exc})", "snapshot": info.manifest.get("snapshot")})
            continue
        if rows is None:
            seen.append({"version": info.name, "split": "unknown (built without a stored snapshot)", "snapshot": None})
            continue
        splits = sorted({row["split"] for row in rows if row.get("id") in keys or row.get("text") in texts})
        if splits:
            seen.append({"version": info.name, "split": "+".join(splits), "snapshot": registry.snapshot_key(info.name)})
    return seen


def _scrub_copies(session: Session, ticket_ids: list[int]) -> tuple[int, int]:
    """The tickets' text where it was copied: the model's generated reason on each of their suggestions (it may
    quote the ticket), and the reviewers' reasons in the notes their write-backs carry (a pending one then writes
    the note without them). Returns (reasons blanked, notes scrubbed)."""
    if not ticket_ids:
        return 0, 0
    reasons = session.execute(update(Suggestion).where(Suggestion.ticket_id.in_(ticket_ids), Suggestion.reason != "")
                              .values(reason="")).rowcount
    notes = 0
    for row in session.scalars(select(WriteBack).where(WriteBack.ticket_id.in_(ticket_ids), WriteBack.note != "")):
        kept = row.note.split(f"\n{WHY_PREFIX}", 1)[0]  # the reason is the note's last part, and may span lines
        if kept != row.note:
            row.note, notes = kept, notes + 1
    return reasons, notes


def _scrub_evidence(session: Session, keys: set[str]) -> int:
    """Blank the forgotten rows' text where suggestions showed them as evidence; returns how many suggestions."""
    changed = 0
    for key in keys:
        quoted = json.dumps(key, ensure_ascii=False)
        for row in session.scalars(select(Suggestion).where(Suggestion.evidence.contains(quoted, autoescape=True))):
            evidence = row.evidence_rows
            hits = [item for item in evidence if item.get("id") == key]
            for item in hits:
                item["text"], item["reason"] = FORGOTTEN_TEXT, None
            if hits:
                row.evidence = json.dumps(evidence, ensure_ascii=False)
                changed += 1
    return changed


def forget_text(result: dict) -> str:
    lines = [f"forgot {result['ticket']}: {result['tickets']} ticket(s), {len(result['examples'])} labelled example(s) "
             f"removed ({', '.join(result['examples']) or 'none'}), {result['reasons_removed']} reviewer reason(s) "
             f"removed, evidence blanked in {result['evidence_scrubbed']} suggestion(s), the model's reason on "
             f"{result['model_reasons_removed']} and the reviewers' in {result['write_back_notes_scrubbed']} "
             "write-back note(s) removed"
             + (", its text dropped before the worker's masking stage read it" if result["door_texts_removed"] else "")
             + (f", {result['audit_texts_removed']} settlement reason(s) blanked"
                if result["audit_texts_removed"] else "")
             + "; future snapshots leave it out"]
    purged = result["purged"]
    lines.append(f"purged: {len(purged['snapshots'])} stored snapshot(s) rewritten without it, "
                 f"{len(purged['host_files'])} snapshot file(s) on this host deleted")
    lines += [f"  {old} -> {new}" for old, new in purged["snapshots"].items()]
    lines += [f"  {name}: {', '.join(files)} rewritten (redaction record beside its manifest)"
              for name, files in purged["versions"].items()]
    if result["versions"]:
        lines.append("versions that saw it (their weights were trained on it: retire them):")
        lines += [f"  {v['version']}: {v['split']}" + (f" (snapshot {v['snapshot']})" if v["snapshot"] else "")
                  for v in result["versions"]]
    else:
        lines.append("no version saw it")
    return "\n".join(lines)
