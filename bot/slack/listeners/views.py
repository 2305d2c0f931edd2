"""Modal submissions: the Reject modal's right label and optional why become feedback; the Settle modal's
label and reason become a conflict's verdict."""

from __future__ import annotations

import json

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.slack.blocks import MODAL_LABEL, MODAL_WHY, REJECT_MODAL
from bot.slack.curation_blocks import SETTLE_LABEL, SETTLE_MODAL, SETTLE_REASON, settled_text
from bot.slack.feedback import FeedbackDesk, parse_suggestion_id
from bot.slack.listeners.payloads import reviewer, tell
from bot.slack.roles import require_manager
from bot.store.feedback import FeedbackError, UnknownLabel, UnknownSuggestion
from bot.trail import curation
from inference.errors import TuesdayError


def _metadata(view: dict) -> dict:
    try:
        data = json.loads(view.get("private_metadata") or "")
    except ValueError:
        raise UnknownSuggestion("the form lost track of its suggestion; click Reject again") from None
    return data if isinstance(data, dict) else {}


def submit_reject(ack: Ack, body: dict, view: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """The Reject modal was saved: record (reject, right label, why) before the modal closes, then update the
    message. A label missing or equal to the suggestion, or a store that does not answer, is told in the modal
    (it stays open, so nothing is lost silently)."""
    by = reviewer(body)

    def refuse(message: str) -> None:
        ack(response_action="errors", errors={MODAL_LABEL: message[:150]})

    try:
        meta = _metadata(view)
        suggestion_id = parse_suggestion_id(meta.get("suggestion_id"))
        values = (view.get("state") or {}).get("values") or {}
        chosen = ((values.get(MODAL_LABEL, {}).get(MODAL_LABEL) or {}).get("selected_option") or {}).get("value")
        if not chosen:
            return refuse("Choose the right label.")
        suggestion = desk.suggestion(suggestion_id)
        if chosen == suggestion.label:
            return refuse(f"{chosen} is what Tuesday suggested: choose the right label (or close this and Accept).")
        why = (values.get(MODAL_WHY, {}).get(MODAL_WHY) or {}).get("value")
        row = desk.record(client, suggestion_id, action="reject", label=chosen, by=by, why=why)
    except FeedbackError as exc:
        return refuse(f"Not saved: {exc}")
    ack()  # recorded: the modal closes
    desk.after(client, [row], suggestion_id, meta.get("channel"), meta.get("ts"))


def submit_settle(ack: Ack, body: dict, view: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """The Settle modal was saved: a manager's verdict (label, reason) on a conflict, audited."""
    ack()  # closes the modal; errors below are told in the channel the list was shown in
    user_id = reviewer(body).user_id
    channel = None
    try:
        try:
            meta = json.loads(view.get("private_metadata") or "")
            channel, example_id = meta.get("channel"), int(meta["example_id"])
        except (ValueError, TypeError, KeyError, AttributeError):
            raise curation.CurationError("the form lost track of its conflict; ask `/tuesday conflicts` again") from None
        require_manager(client, desk.runtime.settings, user_id)
        values = (view.get("state") or {}).get("values") or {}
        chosen = (values.get(SETTLE_LABEL, {}).get(SETTLE_LABEL) or {}).get("selected_option") or {}
        if not chosen.get("value"):
            raise UnknownLabel("no label was chosen")
        reason = (values.get(SETTLE_REASON, {}).get(SETTLE_REASON) or {}).get("value")
        result = curation.settle(desk.runtime.sessions, example_id, label=chosen["value"], reason=reason,
                                 by=f"slack:{user_id}", labels=desk.runtime.tasks)
    except TuesdayError as exc:
        tell(client, channel, user_id, exc)
        return
    if channel:
        client.chat_postEphemeral(channel=channel, user=user_id, text=settled_text(result))


def register(app: App, desk: FeedbackDesk) -> None:
    """Wire the Reject and Settle modals' submissions to their listeners."""
    app.view(REJECT_MODAL)(lambda ack, body, view, client: submit_reject(ack, body, view, client, desk))
    app.view(SETTLE_MODAL)(lambda ack, body, view, client: submit_settle(ack, body, view, client, desk))
