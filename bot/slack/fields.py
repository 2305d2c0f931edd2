"""One Slack message for every field of a ticket (a deployment with several tasks).

The routing task's suggestion reads as a single-task message does (label, confidence, reason,
evidence, Hand off); each other field is one line with its label and confidence, its nearest
labelled ticket, and a select to change just that field. "Accept all" accepts every field that
has a label and no decision yet. Decisions are listed under their field and the buttons stay:
an agent may fix only priority now and the rest later, and partial labelling is normal.
"""

from __future__ import annotations

from bot.slack.blocks import (
    EVIDENCE_LABEL_CHARS,
    EVIDENCE_TEXT_CHARS,
    HANDOFF,
    REJECT,
    SHOWN_DECISIONS,
    button,
    decision_lines,
    escape,
    escaped_excerpt,
    excerpt,
    label_select,
    note_block,
    percent,
    summary_blocks,
    ticket_section,
)
from bot.store.feedback import Feedback
from bot.store.tickets import Suggestion, Ticket
from inference.task import Task, TaskSet

ACCEPT_ALL = "tuesday_accept_all"
FIELD_DECISIONS = 3  # newest decisions shown under a field (Slack allows 50 blocks, 3,000 characters a text)


def _field_line(task: Task, row: Suggestion) -> str:
    name = escape(task.name)
    if row.abstained:
        return f"*{name}*: :thinking_face: unsure (best guess {percent(row.confidence)}): please choose"
    return f"*{name}*: `{escape(row.label)}` · {percent(row.confidence)}"


def _nearest(row: Suggestion) -> str | None:
    evidence = row.evidence_rows[:1]
    if not evidence:
        return None
    first = evidence[0]
    label = escaped_excerpt(str(first.get("label") or "?"), EVIDENCE_LABEL_CHARS).replace("`", "'")
    return f"similar labelled ticket: `{label}` · “{escaped_excerpt(str(first.get('text') or ''), EVIDENCE_TEXT_CHARS)}”"


def _field_blocks(task: Task, row: Suggestion, decisions: list[Feedback]) -> list[dict]:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": _field_line(task, row)},
               "accessory": label_select(task, row, f"Change {task.name}"[:150])}]
    lines = [line for line in [_nearest(row)] if line] + decision_lines(decisions, FIELD_DECISIONS)
    if lines:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(lines)[:3000]}]})
    return blocks


def _models(ticket: Ticket, routing: Suggestion, fields: dict[str, Suggestion]) -> dict:
    versions = " · ".join(f"{escape(r.task)} {escape(r.model_version or '?')}" for r in [routing, *fields.values()])
    latency = routing.latency_ms + sum(r.latency_ms for r in fields.values())
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"models {versions} · {latency:.0f} ms · ticket {escape(ticket.source)}:{escape(ticket.external_id)}")}]}


def fields_blocks(ticket: Ticket, routing: Suggestion, fields: dict[str, Suggestion], tasks: TaskSet, *,
                  handoff_threshold: float | None = None, link: str | None = None,
                  decisions: dict[str, list[Feedback]] | None = None, note: str | None = None,
                  far: float = 0.0, unpromised: bool = False) -> list[dict]:
    """The message for a ticket's suggestions: the routing task's, then each other field's (task order); note: a
    footer line under the models line; unpromised: the routing version makes no abstain promise."""
    decisions = decisions or {}
    routing_task = tasks[routing.task]
    blocks = [ticket_section(ticket, link)]
    summary = summary_blocks(ticket, routing, "Please choose a label.", handoff_threshold, far=far,
                             unpromised=unpromised)[1:]
    if summary and summary[0].get("fields"):
        summary[0]["fields"][0]["text"] = f"*{escape(routing_task.name)}*\n`{escape(routing.label)}`"
    blocks += summary
    routing_lines = decision_lines(decisions.get(routing.task, []), SHOWN_DECISIONS)
    blocks += [{"type": "context", "elements": [{"type": "mrkdwn", "text": line}]} for line in routing_lines]
    for task in tasks:
        if task.name in fields:
            blocks += _field_blocks(task, fields[task.name], decisions.get(task.name, []))
    blocks.append(_models(ticket, routing, fields))
    footer = note_block(note)
    if footer is not None:
        blocks.append(footer)
    verb = "Choose " if routing.abstained else "Change "
    elements = [button("Accept all", ACCEPT_ALL, routing.id, "primary"),
                label_select(routing_task, routing, (verb + routing_task.name)[:150])]
    if not routing.abstained:
        elements.append(button("Reject", REJECT, routing.id, "danger"))
    if routing_task.handoff_label:
        elements.append(button("Hand off", HANDOFF, routing.id))
    blocks.append({"type": "actions", "block_id": f"tuesday_suggestion_{routing.id}", "elements": elements})
    return blocks


def fields_text(ticket: Ticket, routing: Suggestion, fields: dict[str, Suggestion]) -> str:
    """Plain-text fallback: every field's label (or "unsure")."""
    subject = escape(excerpt(ticket.subject or ticket.text, 80))
    parts = [f"{r.task} {r.label if r.label else 'unsure'}" for r in [routing, *fields.values()]]
    return f"Suggested {escape(', '.join(parts))} for: {subject}"
