"""Slack Block Kit and text for curation: the conflicts list, the Settle modal and the data approval."""

from __future__ import annotations

from bot.slack.blocks import MAX_OPTIONS, OPTION_TEXT_CHARS, escape, escaped_excerpt

SETTLE = "tuesday_settle"  # the button beside each conflict; its value is the example id
APPROVE_DATA = "tuesday_approve_data"  # its value is the highest example id shown
SETTLE_MODAL = "tuesday_settle_modal"
SETTLE_LABEL = "settle_label"  # block_id and action_id of the modal's label select
SETTLE_REASON = "settle_reason"  # block_id and action_id of its reason
SHOWN_CONFLICTS = 15  # one section each; Slack allows 50 blocks in a message
SHOWN_DECISIONS = 6
TEXT_CHARS, WHY_CHARS, LABEL_CHARS, SUBJECT_CHARS = 200, 160, 64, 100


def actor_text(actor: str | None) -> str:
    """'slack:U123' -> '<@U123>', 'cli:alice' -> 'alice (CLI)'."""
    kind, _, name = (actor or "").partition(":")
    if kind == "slack" and name:
        return f"<@{escape(name)}>"
    if kind == "cli" and name:
        return f"{escape(name)} (CLI)"
    return escape(actor or "someone")


def _code(label: str) -> str:
    inner = escaped_excerpt(label, LABEL_CHARS).replace("`", "'")
    return f"`{inner}`"


def _who(decision: dict) -> str:
    return f"<@{decision['user_id']}>" if decision.get("user_id") else escape(decision.get("user_name") or "someone")


def conflict_text(conflict: dict) -> str:
    """The ticket, then per label who chose it and why (mrkdwn, well under Slack's 3,000 characters)."""
    subject = escaped_excerpt(conflict.get("subject") or "", SUBJECT_CHARS)
    title = subject or (f"Ticket {conflict['ticket_id']}" if conflict.get("ticket_id") else escape(conflict["key"]))
    head = f"*<{conflict['url']}|{title}>*" if conflict.get("url") else f"*{title}*"
    lines = [head, f"“{escaped_excerpt(conflict['text'], TEXT_CHARS)}”"]
    decisions = conflict.get("decisions") or []
    for label in dict.fromkeys([*conflict["labels"], *(d["label"] for d in decisions)]):
        chose = [d for d in decisions if d["label"] == label][:SHOWN_DECISIONS]
        parts = [_who(d) + (f" — _{escaped_excerpt(d['why'], WHY_CHARS)}_" if d.get("why") else "") for d in chose]
        lines.append(f"• {_code(label)}" + (": " + "; ".join(parts) if parts else ""))
    return "\n".join(lines)


def conflicts_message(conflicts: list[dict], total: int) -> dict:
    """The reply to `/tuesday conflicts`: each open conflict with a Settle button."""
    if not total:
        return {"text": "No open conflicts: every example reviewers disagreed on has been settled."}
    shown = f" (the oldest {len(conflicts)} below)" if total > len(conflicts) else ""
    text = (f"*{total} open conflict{'s' if total != 1 else ''}*{shown}: reviewers chose different labels. Each stays "
            "out of training until a manager settles it with the right label and one sentence of why.")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    for conflict in conflicts:
        blocks.append({"type": "section", "block_id": f"tuesday_conflict_{conflict['example_id']}",
                       "text": {"type": "mrkdwn", "text": conflict_text(conflict)},
                       "accessory": {"type": "button", "action_id": SETTLE, "value": str(conflict["example_id"]),
                                     "text": {"type": "plain_text", "text": "Settle…"}}})
    return {"text": f"{total} open conflict(s) in the labels", "blocks": blocks}


def settle_modal(task, conflict: dict, private_metadata: str) -> dict:
    """The modal a Settle click opens: the label that holds (required) and one sentence of why (required)."""
    first = [label for label in conflict["labels"] if label in task.label_names]
    names = first + [label for label in task.label_names if label not in first]
    options = [{"text": {"type": "plain_text", "text": label[:OPTION_TEXT_CHARS]}, "value": label}
               for label in names[:MAX_OPTIONS]]
    return {
        "type": "modal", "callback_id": SETTLE_MODAL, "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": "Settle a conflict"},
        "submit": {"type": "plain_text", "text": "Settle"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": conflict_text(conflict)}},
            {"type": "input", "block_id": SETTLE_LABEL, "label": {"type": "plain_text", "text": "The right label"},
             "element": {"type": "static_select", "action_id": SETTLE_LABEL, "options": options,
                         "placeholder": {"type": "plain_text", "text": "Choose a label"}}},
            {"type": "input", "block_id": SETTLE_REASON,
             "label": {"type": "plain_text", "text": "Why? (one sentence, kept with the verdict)"},
             "element": {"type": "plain_text_input", "action_id": SETTLE_REASON, "max_length": 300,
                         "placeholder": {"type": "plain_text",
                                         "text": "e.g. the customer disputes the premium, not the claim"}}},
        ],
    }


def settled_text(result: dict) -> str:
    """The confirmation after a verdict."""
    what = f"ticket {result['ticket_id']}" if result.get("ticket_id") else f"example {result['example_id']}"
    return (f"⚖️ Settled {what} as {_code(result['label'])} (was {_code(result['before'])}): "
            f"_{escape(result['reason'])}_. It enters the next training snapshot; the clicks stay as they were.")


def _counts(counts: dict) -> str:
    return " · ".join(f"{escape(str(name))} {n}" for name, n in counts.items()) or "none"


def data_text(pending: dict, approval_required: bool) -> str:
    """What `/tuesday data` and `tuesday data` show: what arrived since the last approval, counted."""
    since = pending.get("since")
    if since is None:
        head = "*Labelled data never approved yet*"
    else:
        head = (f"*Labelled data since approval {since['id']}* (examples up to id {since['up_to_example_id']}, "
                f"by {actor_text(since['approved_by'])} at {since['approved_at'][:16].replace('T', ' ')} UTC)")
    lines = [head]
    if not pending["examples"]:
        lines.append("Nothing new to approve.")
    else:
        lines += [f"• *{pending['examples']}* new example{'s' if pending['examples'] != 1 else ''} "
                  f"(ids {pending['after'] + 1}–{pending['up_to']})",
                  f"• by label: {_counts(pending['labels'])}",
                  f"• by source: {_counts(pending['sources'])}"]
    if pending["open_conflicts"]:
        lines.append(f"• open conflicts: {pending['open_conflicts']} (out of training, approved or not, until settled: "
                     "`/tuesday conflicts`)")
    lines.append("Data approval is *on*: training uses only approved examples." if approval_required else
                 "Data approval is off (TUESDAY_DATA_APPROVAL): every example enters training; an approval is "
                 "only recorded.")
    return "\n".join(lines)


def data_message(pending: dict, approval_required: bool) -> dict:
    """The reply to `/tuesday data`, with an Approve button for exactly the examples counted."""
    text = data_text(pending, approval_required)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if pending["examples"]:
        n = pending["examples"]
        blocks.append({"type": "actions", "block_id": "tuesday_data", "elements": [{
            "type": "button", "action_id": APPROVE_DATA, "style": "primary", "value": str(pending["up_to"]),
            "text": {"type": "plain_text", "text": f"Approve these {n} for training"},
            "confirm": {"title": {"type": "plain_text", "text": "Approve the data?"},
                        "text": {"type": "mrkdwn", "text": f"The {n} examples counted here (ids up to "
                                                           f"{pending['up_to']}) may then be trained on."},
                        "confirm": {"type": "plain_text", "text": "Approve"},
                        "deny": {"type": "plain_text", "text": "Not yet"}}}]})
    return {"text": text, "blocks": blocks}


def approved_text(approval: dict) -> str:
    """The confirmation after a data approval."""
    counts = approval["counts"]
    return (f"✅ Data approval {approval['id']}: {counts.get('examples', 0)} example(s) up to id "
            f"{approval['up_to_example_id']} approved for training by {actor_text(approval['approved_by'])} "
            f"(by label: {_counts(counts.get('labels') or {})}).")
