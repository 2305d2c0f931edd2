"""Slack Block Kit for a suggestion: the ticket, the model's label and confidence, the evidence, and the buttons."""

from __future__ import annotations

from bot.store.feedback import HELD, REJECTED, Feedback
from bot.store.tickets import Suggestion, Ticket
from inference.task import Task

ACCEPT = "tuesday_accept"
CHANGE = "tuesday_change"
REJECT = "tuesday_reject"
HANDOFF = "tuesday_handoff"

EXCERPT_CHARS = 280
MAX_OPTIONS = 100  # Slack's limit for a static_select
OPTION_TEXT_CHARS = 75  # Slack's limit for an option's text
TEXT_CHARS = 3000  # Slack's limit for a mrkdwn text object

# Evidence: what the team's reviewers labelled, a few short lines (each part counted after escaping,
# so even "&&&..." stays within budget: 3 x (64 + 80 + 160) plus markup is far below TEXT_CHARS).
EVIDENCE_ITEMS = 3
EVIDENCE_LABEL_CHARS = 64
EVIDENCE_TEXT_CHARS = 80
EVIDENCE_REASON_CHARS = 160


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def escaped_excerpt(text: str, limit: int) -> str:
    """excerpt() escaped for mrkdwn, at most `limit` characters after escaping (no entity cut in half)."""
    flat = " ".join(text.split())
    whole = escape(flat)
    if len(whole) <= limit:
        return whole
    pieces, used = [], 0
    for char in flat:
        piece = escape(char)
        if used + len(piece) > limit - 1:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces).rstrip() + "…"


def option_value(suggestion_id: int, label: str) -> str:
    """An option's value: the suggestion id, then the label (ids have no colon, labels may)."""
    return f"{suggestion_id}:{label}"


def parse_option_value(value: str) -> tuple[int, str]:
    """Inverse of option_value, for the click handler: '12:claim_status' -> (12, 'claim_status')."""
    sid, _, label = value.partition(":")
    return int(sid), label


def percent(p: float) -> str:
    return f"{100 * p:.0f}%"


def _percents(a: float, b: float) -> tuple[str, str]:
    """Two percentages that do not read as equal when they differ (19.6% vs 20%, not 20% vs 20%)."""
    pa, pb = percent(a), percent(b)
    return (pa, pb) if pa != pb or a == b else (f"{100 * a:.1f}%", f"{100 * b:.1f}%")


def evidence_block(rows: list[dict]) -> dict | None:
    """The nearest labelled tickets as one context block: `label` · “excerpt” · _reviewer's reason_."""
    lines = []
    for row in rows[:EVIDENCE_ITEMS]:
        label = escaped_excerpt(str(row.get("label") or "?"), EVIDENCE_LABEL_CHARS).replace("`", "'")
        line = f"• `{label}` · “{escaped_excerpt(str(row.get('text') or ''), EVIDENCE_TEXT_CHARS)}”"
        reason = " ".join(str(row.get("reason") or "").split())
        if reason:
            line += f" · _{escaped_excerpt(reason, EVIDENCE_REASON_CHARS)}_"
        lines.append(line)
    if not lines:
        return None
    # Headed as the reviewers' words, unlike the generated reason above it.
    heading = ":bookmark_tabs: *Similar labelled tickets* (labels and reasons written by your reviewers)"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join([heading, *lines])}]}


def ticket_section(ticket: Ticket, link: str | None) -> dict:
    title = escape(ticket.subject or f"Ticket {ticket.external_id}")
    heading = f"*<{escape(link)}|{title}>*" if link else f"*{title}*"
    body = escape(excerpt(ticket.text)) if ticket.text != ticket.subject else ""
    return {"type": "section", "text": {"type": "mrkdwn", "text": f"{heading}\n{body}".rstrip()}}


def label_select(task: Task, suggestion: Suggestion, placeholder: str) -> dict:
    options = [{"text": {"type": "plain_text", "text": label[:OPTION_TEXT_CHARS]},
                "value": option_value(suggestion.id, label)} for label in task.label_names[:MAX_OPTIONS]]
    return {"type": "static_select", "action_id": CHANGE,
            "placeholder": {"type": "plain_text", "text": placeholder}, "options": options}


def button(text: str, action_id: str, suggestion_id: int, style: str | None = None) -> dict:
    button = {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text},
              "value": str(suggestion_id)}
    if style:
        button["style"] = style
    return button


def far_from_everything(suggestion: Suggestion, far: float) -> bool:
    """Routed by the far rule: its nearest labelled example is less similar than the version's far cut."""
    return bool(far) and suggestion.nearest_similarity is not None and suggestion.nearest_similarity < far


def summary_blocks(ticket: Ticket, suggestion: Suggestion, unsure: str,
                   handoff_threshold: float | None = None, link: str | None = None, far: float = 0.0,
                   unpromised: bool = False) -> list[dict]:
    """The ticket, what the model said about it and the evidence; `unsure` is shown when it abstained.
    far: the version's far cut, to say when a ticket was handed off (or asks) for being unlike every labelled one.
    unpromised: the version makes no abstain promise (its holdout is too small), so every ticket asks for a label:
    the best guess is shown as such, not as a doubt about this ticket."""
    blocks = [ticket_section(ticket, link)]
    unlike = far_from_everything(suggestion, far)
    nearest = f"its closest labelled ticket is only {suggestion.nearest_similarity:.2f} similar" if unlike else ""
    if suggestion.abstained and unlike:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":new: *A new kind of ticket*: unlike every labelled one ({nearest}). {unsure}")}})
    elif suggestion.abstained and unpromised and suggestion.predicted_label:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":thinking_face: *Best guess `{escape(suggestion.predicted_label)}`* ({percent(suggestion.confidence)}), "
            f"not promised: until its holdout can promise how often a shown label is wrong, Tuesday asks for a "
            f"label on every ticket. {unsure}")}})
    elif suggestion.abstained:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":thinking_face: *Tuesday is unsure* (best guess only {percent(suggestion.confidence)}). {unsure}")}})
    elif suggestion.out_of_scope:
        if unlike:
            why = f"unlike every labelled ticket: {nearest}"
        elif handoff_threshold is None:
            why = f"confidence {percent(suggestion.confidence)}: below the hand-off threshold or unlike every labelled ticket"
        else:
            conf, cut = _percents(suggestion.confidence, handoff_threshold)
            why = f"confidence {conf} is below the hand-off threshold {cut}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f":raising_hand: *Out of scope for Tuesday* ({why}): handed to a human as "
            f"`{escape(suggestion.label)}`.")}})
    else:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Suggested label*\n`{escape(suggestion.label)}`"},
            {"type": "mrkdwn", "text": f"*Confidence*\n{percent(suggestion.confidence)}"}]})
        if suggestion.reason:
            reason = escape(excerpt(suggestion.reason))
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": f":robot_face: _Reason (generated by the model):_ {reason}"}]})
    evidence = evidence_block(suggestion.evidence_rows)
    if evidence is not None:
        blocks.append(evidence)
    return blocks


def _model_context(ticket: Ticket, suggestion: Suggestion) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"model {escape(suggestion.model_version or 'unknown')} · {suggestion.latency_ms:.0f} ms · "
        f"ticket {escape(ticket.source)}:{escape(ticket.external_id)}")}]}


def note_block(note: str | None) -> dict | None:
    """A footer line under the message (the promise not valid now: bot.monitor.promise.note_text), or None."""
    if not note:
        return None
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": escaped_excerpt(note, TEXT_CHARS)}]}


def suggestion_blocks(ticket: Ticket, suggestion: Suggestion, task: Task, *,
                      handoff_threshold: float | None = None, link: str | None = None,
                      note: str | None = None, far: float = 0.0, unpromised: bool = False) -> list[dict]:
    """The message for one suggestion; an abstained one (label None) asks the agent to pick.

    An out-of-scope one (the hand-off label) gets the ordinary buttons: Accept accepts the hand-off.
    link: where the ticket opens (bot.helpdesk.adapters.ticket_link), shown on its title.
    note: a footer line under the model line (e.g. the version's promise is not valid now).
    unpromised: the version makes no abstain promise (summary_blocks).
    """
    blocks = summary_blocks(ticket, suggestion, "Please choose a label.", handoff_threshold, link, far, unpromised)
    if suggestion.abstained:
        elements = [label_select(task, suggestion, "Choose a label"), button("Hand off", HANDOFF, suggestion.id)]
    else:
        elements = [button("Accept", ACCEPT, suggestion.id, "primary"),
                    label_select(task, suggestion, "Change label"),
                    button("Reject", REJECT, suggestion.id, "danger"),
                    button("Hand off", HANDOFF, suggestion.id)]
    blocks.append(_model_context(ticket, suggestion))
    footer = note_block(note)
    if footer is not None:
        blocks.append(footer)
    # The block id carries the suggestion id too, so a click handler finds it from any element.
    blocks.append({"type": "actions", "block_id": f"tuesday_suggestion_{suggestion.id}", "elements": elements})
    return blocks


def suggestion_text(ticket: Ticket, suggestion: Suggestion) -> str:
    """Plain-text fallback for notifications and screen readers."""
    subject = escape(excerpt(ticket.subject or ticket.text, 80))
    if suggestion.abstained:
        return f"Tuesday is unsure about: {subject} (please choose a label)"
    if suggestion.out_of_scope:
        return (f"Out of scope for Tuesday ({percent(suggestion.confidence)}), handed to a human as "
                f"{escape(suggestion.label)}: {subject}")
    return f"Suggested {escape(suggestion.label)} ({percent(suggestion.confidence)}) for: {subject}"


# -- after a decision ------------------------------------------------------------------------------

REJECT_MODAL = "tuesday_reject_modal"
MODAL_LABEL = "label"  # block_id and action_id of the modal's label select
MODAL_WHY = "why"  # block_id and action_id of its optional one-line reason
WHY_CHARS = 300
SHOWN_DECISIONS = 10  # newest decisions listed under a message; Slack allows 50 blocks in all

DECISION = {
    "accept": "✅ Accepted as {label} by {who}",
    "change": "✏️ Changed to {label} by {who}",
    "reject": "❌ Rejected by {who}; the right label is {label}",
    "handoff": "🙋 Handed off ({label}) by {who}",
}


def _who(row: Feedback) -> str:
    return f"<@{row.user_id}>" if row.user_id else escape(row.user_name or "someone")


# A click that does not (yet) teach the model says so on the message.
TRUST_NOTE = {HELD: " _(held until a manager approves: not a labeller)_", REJECTED: " _(not used: a manager rejected it)_"}


def decision_line(row: Feedback) -> str:
    """One feedback row as a line: '✅ Accepted as `claim_status` by <@U123>', plus its why."""
    line = DECISION[row.action].format(label=f"`{escape(row.label)}`", who=_who(row)) + TRUST_NOTE.get(row.trust, "")
    return f"{line} — “{escape(row.why)}”" if row.why else line


def conflict_line(rows: list[Feedback]) -> str | None:
    """'⚠️ Conflict: ...' naming who chose which label, or None while every decision agrees (held clicks aside)."""
    first_by_label = {}
    for row in (r for r in rows if r.trains):
        first_by_label.setdefault(row.label, row)
    if len(first_by_label) < 2:
        return None
    chose = ", ".join(f"{_who(r)} chose `{escape(label)}`" for label, r in first_by_label.items())
    kept = escape(next(iter(first_by_label)))
    return (f"⚠️ Conflict: {chose}. The first label (`{kept}`) is kept, and this ticket stays out of "
            "training until the labels are reconciled.")


def decided_blocks(ticket: Ticket, suggestion: Suggestion, rows: list[Feedback],
                   link: str | None = None) -> list[dict]:
    """The suggestion message after decisions (feedback rows, oldest first): no buttons, who decided what."""
    blocks = summary_blocks(ticket, suggestion, "", link=link)
    blocks.append(_model_context(ticket, suggestion))
    lines = decision_lines(rows, SHOWN_DECISIONS)
    blocks.extend({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]} for line in lines)
    return blocks


def decision_lines(rows: list[Feedback], limit: int) -> list[str]:
    """The newest `limit` decisions as lines (an "… N earlier" line first when there were more), and the conflict."""
    lines = [decision_line(r) for r in rows]
    if len(lines) > limit:
        lines = [f"… {len(lines) - limit + 1} earlier decisions"] + lines[-limit + 1:]
    conflict = conflict_line(rows)
    return lines + ([conflict] if conflict else [])


def decided_text(ticket: Ticket, rows: list[Feedback]) -> str:
    """Plain-text fallback for the updated message: the latest decision."""
    subject = escape(excerpt(ticket.subject or ticket.text, 80))
    latest = rows[-1]
    conflict = " (labels conflict)" if conflict_line(rows) else ""
    return f"{DECISION[latest.action].format(label=escape(latest.label), who=_who(latest))}{conflict}: {subject}"


def reject_modal(task: Task, suggestion: Suggestion, private_metadata: str) -> dict:
    """The modal a Reject click opens: the right label (required) and one line of why (optional)."""
    options = [{"text": {"type": "plain_text", "text": label[:OPTION_TEXT_CHARS]}, "value": label}
               for label in task.label_names[:MAX_OPTIONS]]
    said = (f"Tuesday suggested `{escape(suggestion.label)}`." if suggestion.label else "Tuesday was unsure.")
    return {
        "type": "modal", "callback_id": REJECT_MODAL, "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": "Reject suggestion"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{said} What is the right label?"}},
            {"type": "input", "block_id": MODAL_LABEL, "label": {"type": "plain_text", "text": "Right label"},
             "element": {"type": "static_select", "action_id": MODAL_LABEL, "options": options,
                         "placeholder": {"type": "plain_text", "text": "Choose a label"}}},
            {"type": "input", "block_id": MODAL_WHY, "optional": True,
             "label": {"type": "plain_text", "text": "Why? (one line, optional)"},
             "element": {"type": "plain_text_input", "action_id": MODAL_WHY, "max_length": WHY_CHARS,
                         "placeholder": {"type": "plain_text",
                                         "text": "e.g. they dispute the premium, not the claim"}}},
        ],
    }
