"""Modal submissions: the Reject modal's right label and optional why become feedback."""

from __future__ import annotations

import json

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.blocks import MODAL_LABEL, MODAL_WHY, REJECT_MODAL
from bot.feedback import FeedbackDesk, parse_suggestion_id
from bot.listeners import reviewer, tell
from bot.store import FeedbackError, UnknownLabel, UnknownSuggestion


def _metadata(view: dict) -> dict:
    try:
        data = json.loads(view.get("private_metadata") or "")
    except ValueError:
        raise UnknownSuggestion("the form lost track of its suggestion; click Reject again") from None
    return data if isinstance(data, dict) else {}


def submit_reject(ack: Ack, body: dict, view: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """The Reject modal was saved: record (reject, right label, why) and update the message."""
    ack()  # closes the modal; errors below are told in the channel instead
    by = reviewer(body)
    channel = None
    try:
        meta = _metadata(view)
        channel = meta.get("channel")
        values = (view.get("state") or {}).get("values") or {}
        chosen = (values.get(MODAL_LABEL, {}).get(MODAL_LABEL) or {}).get("selected_option") or {}
        if not chosen.get("value"):
            raise UnknownLabel("no label was chosen")
        why = (values.get(MODAL_WHY, {}).get(MODAL_WHY) or {}).get("value")
        desk.decide(client, parse_suggestion_id(meta.get("suggestion_id")), action="reject", label=chosen["value"],
                    by=by, why=why, channel=channel, ts=meta.get("ts"))
    except FeedbackError as exc:
        tell(client, channel, by.user_id, exc)


def register(app: App, desk: FeedbackDesk) -> None:
    """Wire the Reject modal's submission to submit_reject."""
    app.view(REJECT_MODAL)(lambda ack, body, view, client: submit_reject(ack, body, view, client, desk))
