"""Labels a team can defend: which examples may be trained on, settled conflicts and data approvals.

`training_data` is the one rule every training path follows (`tuesday train`, queued and scheduled
retrains, the demo) and the holdout `/tuesday eval` counts:

- the example's label is one of the task's labels;
- reviewers who disagreed on it have been settled by a manager (`Example.conflicted` is False);
- it was not forgotten on request (`tuesday forget` blanks its text and keeps the row);
- with `TUESDAY_DATA_APPROVAL` on, a manager approved it: its id is at most the newest data
  approval's `up_to_example_id` (no approval yet: nothing may be trained on).

Settling and approving are admin actions: each is recorded in the audit log, in the same
transaction as the action itself.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.store import audit
from bot.store.base import as_utc, utc_now
from bot.store.examples import Example, all_examples
from bot.store.feedback import FEEDBACK_SOURCE, Feedback, UnknownLabel
from bot.store.tickets import Ticket
from bot.store.trail import DataApproval
from inference.errors import TuesdayError
from inference.task import TaskSet

SETTLE_REASON_CHARS = 300


class CurationError(TuesdayError):
    """A conflict cannot be settled, or data cannot be approved, as asked."""


class NotConflicted(CurationError):
    """The example has no open conflict to settle."""


class NoApprovedData(CurationError):
    """Data approval is on and no manager has approved any data yet."""


class NothingToApprove(CurationError):
    """The examples asked for are approved already (or do not exist)."""


# -- what may be trained on -------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingData:
    """The rows a snapshot may hold and the data approval they were cut at (None: approval is off)."""

    rows: list[dict]
    data_approval: int | None
    approval_required: bool


def latest_approval(session: Session) -> DataApproval | None:
    return session.scalar(select(DataApproval).order_by(DataApproval.id.desc()).limit(1))


def _row(example: Example) -> dict:
    row = example.to_row()
    if example.settled_at is not None:
        # The verdict's reason argues for the settled label; the first clicker's may argue against it.
        row["reason"] = example.settled_reason
    return row


def training_data(sessions: sessionmaker[Session], task, *, approval_required: bool) -> TrainingData:
    """Every example training may use, by the rule in this module's docstring."""
    with sessions() as session:
        approval = latest_approval(session) if approval_required else None
        if approval_required and approval is None:
            return TrainingData([], None, True)
        limit = approval.up_to_example_id if approval is not None else None
        rows = [_row(e) for e in all_examples(session, task.name)
                if e.label in task.labels and not e.conflicted and not e.forgotten and (limit is None or e.id <= limit)]
    return TrainingData(rows, approval.id if approval is not None else None, approval_required)


def snapshot_store(sessions: sessionmaker[Session], task, out_dir: Path, holdout_fraction: float, *,
                   approval_required: bool) -> tuple[Path, int | None]:
    """Freeze the trainable examples into a snapshot file; returns (its path, the data approval used)."""
    from inference.snapshot import write_snapshot

    data = training_data(sessions, task, approval_required=approval_required)
    if approval_required and data.data_approval is None:
        raise NoApprovedData("no approved data: a manager must approve with /tuesday data "
                             "(or `tuesday data approve --by NAME`)")
    meta = {"data_approval": data.data_approval} if data.data_approval is not None else None
    return write_snapshot(data.rows, out_dir, holdout_fraction, meta=meta), data.data_approval


def holdout_rows(sessions: sessionmaker[Session], task, holdout_fraction: float, *,
                 approval_required: bool) -> list[dict]:
    """The frozen holdout as a snapshot taken now would hold it."""
    from inference.splits import in_holdout

    rows = training_data(sessions, task, approval_required=approval_required).rows
    return [r for r in rows if in_holdout(r["text"], holdout_fraction)]


# -- conflicts ----------------------------------------------------------------------------------------

def _ticket_id(example: Example) -> int | None:
    """The ticket a feedback example was made from, else None (imports have no clicks)."""
    prefix = "ticket-"
    if example.source != FEEDBACK_SOURCE or not example.external_id.startswith(prefix):
        return None
    number = example.external_id[len(prefix):]
    return int(number) if number.isdigit() else None


def _conflict(session: Session, example: Example) -> dict:
    ticket_id = _ticket_id(example)
    ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
    decisions = [] if ticket_id is None else [
        {"label": f.label, "user_id": f.user_id, "user_name": f.user_name, "action": f.action, "why": f.why,
         "at": as_utc(f.created_at).isoformat(timespec="seconds")}
        for f in session.scalars(select(Feedback).where(Feedback.ticket_id == ticket_id, Feedback.task == example.task)
                                 .order_by(Feedback.id))]
    return {"example_id": example.id, "task": example.task, "key": example.key, "ticket_id": ticket_id,
            "text": ticket.text if ticket is not None else example.text,
            "subject": ticket.subject if ticket is not None else "", "url": ticket.url if ticket is not None else None,
            "label": example.label, "labels": json.loads(example.conflict_labels or "[]"), "decisions": decisions}


def open_conflicts(sessions: sessionmaker[Session], *, limit: int | None = None) -> tuple[list[dict], int]:
    """(the oldest `limit` unsettled conflicts with who chose what and why, how many there are in all)."""
    unsettled = (Example.conflict_labels.is_not(None), Example.settled_at.is_(None))
    with sessions() as session:
        total = int(session.scalar(select(func.count(Example.id)).where(*unsettled)))
        query = select(Example).where(*unsettled).order_by(Example.id)
        if limit is not None:
            query = query.limit(limit)
        return [_conflict(session, e) for e in session.scalars(query)], total


def conflict(sessions: sessionmaker[Session], example_id: int) -> dict:
    """One example's conflict, settled or not; NotConflicted when reviewers never disagreed on it."""
    with sessions() as session:
        example = session.get(Example, int(example_id))
        if example is None or example.conflict_labels is None:
            raise NotConflicted(f"example {example_id} has no conflict to settle")
        return {**_conflict(session, example), "settled_by": example.settled_by,
                "settled_at": as_utc(example.settled_at).isoformat(timespec="seconds") if example.settled_at else None}


def settle(sessions: sessionmaker[Session], example_id: int, *, label: str, reason: str | None, by: str,
           labels) -> dict:
    """Record a reviewer's verdict on a conflict: the example's label becomes `label`, with `reason`.

    The clicks stay as they were (feedback rows are append-only); the verdict is audited as
    "conflict.settle". labels is the task's label set, or the deployment's TaskSet (the example's
    task's labels are then used); `by` names the actor ("slack:U123").
    """
    from inference.pii import mask_pii

    if not isinstance(labels, TaskSet) and label not in labels:
        raise UnknownLabel(f"'{label}' is not a label of this task")
    reason = " ".join(mask_pii(reason or "").split())[:SETTLE_REASON_CHARS]
    if not reason:
        raise CurationError("a settlement needs a reason: one sentence on why this label is right")
    with sessions() as session:
        example = session.get(Example, int(example_id))
        if example is None or example.conflict_labels is None:
            raise NotConflicted(f"example {example_id} has no conflict to settle")
        if isinstance(labels, TaskSet) and (example.task not in labels.names or label not in labels[example.task].labels):
            raise UnknownLabel(f"'{label}' is not a label of {example.task}")
        ticket_id = _ticket_id(example)
        if ticket_id is not None:
            # The ticket row is what a click locks (bot.store.feedback.record_feedback): a click and a verdict
            # are recorded one after the other, so a disagreeing click is never lost under a verdict.
            session.execute(update(Ticket).where(Ticket.id == ticket_id).values(id=Ticket.id))
        # Then the example itself: two verdicts at once are recorded one after the other, the second refused.
        session.execute(update(Example).where(Example.id == example.id).values(id=Example.id))
        session.refresh(example)
        if example.settled_at is not None:
            raise NotConflicted(f"example {example_id} was settled already, as `{example.label}` by "
                                f"{example.settled_by}")
        before = example.label
        example.label, example.settled_by, example.settled_at, example.settled_reason = label, by, utc_now(), reason
        # The reason may quote the ticket: it goes where `tuesday forget` can blank it, not into the chained log.
        audit.record(session, by, "conflict.settle", f"ticket {ticket_id}" if ticket_id else f"example {example.id}",
                     texts={"reason": reason}, subject=f"example:{example.id}",
                     example=example.id, label=label, before=before, labels=json.loads(example.conflict_labels))
        session.commit()
        return {"example_id": example.id, "ticket_id": ticket_id, "label": label, "before": before,
                "reason": reason, "settled_by": by}


# -- data approval --------------------------------------------------------------------------------------

def _approval_dict(approval: DataApproval | None) -> dict | None:
    if approval is None:
        return None
    return {"id": approval.id, "up_to_example_id": approval.up_to_example_id, "approved_by": approval.approved_by,
            "approved_at": as_utc(approval.approved_at).isoformat(timespec="seconds"),
            "counts": json.loads(approval.counts or "{}")}


def _counts(session: Session, after: int, up_to: int | None) -> dict:
    query = select(Example.label, Example.source, Example.conflict_labels, Example.settled_at).where(Example.id > after)
    if up_to is not None:
        query = query.where(Example.id <= up_to)
    rows = session.execute(query).all()
    return {"examples": len(rows), "labels": dict(Counter(r.label for r in rows).most_common()),
            "sources": dict(Counter(r.source for r in rows).most_common()),
            "conflicts": sum(1 for r in rows if r.conflict_labels is not None and r.settled_at is None)}


def pending_data(sessions: sessionmaker[Session]) -> dict:
    """Examples stored since the newest data approval, counted per label and per source.

    `up_to` is the highest example id counted: an approval of what was shown is an approval up to it.
    """
    with sessions() as session:
        approval = latest_approval(session)
        after = approval.up_to_example_id if approval is not None else 0
        up_to = session.scalar(select(func.max(Example.id)).where(Example.id > after))
        counts = _counts(session, after, up_to)
        total_conflicts = int(session.scalar(select(func.count(Example.id)).where(
            Example.conflict_labels.is_not(None), Example.settled_at.is_(None))))
    return {"since": _approval_dict(approval), "after": after, "up_to": up_to, **counts,
            "open_conflicts": total_conflicts}


def approve_data(sessions: sessionmaker[Session], *, up_to: int | None, by: str) -> dict:
    """Approve the examples stored since the newest approval, up to id `up_to` (None: all stored now).

    Audited as "data.approve"; returns the approval with the counts it covered.
    """
    with sessions() as session:
        approval = latest_approval(session)
        after = approval.up_to_example_id if approval is not None else 0
        newest = session.scalar(select(func.max(Example.id))) or 0
        up_to = newest if up_to is None else int(up_to)
        if up_to <= after:
            raise NothingToApprove(f"examples up to id {after} are approved already"
                                   + (f" (by {approval.approved_by})" if approval is not None else ""))
        if up_to > newest:
            raise NothingToApprove(f"there is no example {up_to} (the newest is {newest})")
        counts = _counts(session, after, up_to)
        row = DataApproval(up_to_example_id=up_to, counts=json.dumps(counts), approved_by=by)
        session.add(row)
        session.flush()
        audit.record(session, by, "data.approve", f"examples {after + 1}-{up_to}", approval=row.id,
                     up_to_example_id=up_to, **counts)
        session.commit()
        return _approval_dict(row)
