"""Button and select clicks: on a suggestion message Accept, Change label, Reject (opens a modal), Hand off;
on the managers' lists Settle (opens a modal) and Approve data."""

from __future__ import annotations

import json

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.slack.blocks import ACCEPT, CHANGE, HANDOFF, REJECT, reject_modal
from bot.slack.curation_blocks import APPROVE_DATA, SETTLE, approved_text, settle_modal
from bot.slack.feedback import FeedbackDesk, parse_suggestion_id
from bot.slack.fields import ACCEPT_ALL
from bot.slack.listeners.payloads import message_of, reviewer, tell
from bot.slack.roles import require_manager
from bot.store.feedback import FeedbackError
from bot.trail import curation
from inference.errors import TuesdayError


def _decide(body: dict, client: WebClient, desk: FeedbackDesk, value, *, action: str, label: str | None) -> None:
    by = reviewer(body)
    channel, ts = message_of(body)
    try:
        desk.decide(client, parse_suggestion_id(value), action=action, label=label, by=by, channel=channel, ts=ts)
    except FeedbackError as exc:
        tell(client, channel, by.user_id, exc)


def accept(ack: Ack, body: dict, action: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """Accept: the suggested label is right."""
    ack()
    _decide(body, client, desk, action.get("value"), action="accept", label=None)


def accept_all(ack: Ack, body: dict, action: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """Accept all: every field's suggested label is right (fields already decided keep their decision)."""
    ack()
    by = reviewer(body)
    channel, ts = message_of(body)
    try:
        desk.accept_all(client, parse_suggestion_id(action.get("value")), by=by, channel=channel, ts=ts)
    except FeedbackError as exc:
        tell(client, channel, by.user_id, exc)


def change(ack: Ack, body: dict, action: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """Change label: the option's value is '<suggestion id>:<label>'."""
    ack()
    value = (action.get("selected_option") or {}).get("value") or ""
    # The split of blocks.parse_option_value, without its int(): a bad id is told, not raised.
    suggestion_id, _, label = value.partition(":")
    _decide(body, client, desk, suggestion_id, action="change", label=label)


def handoff(ack: Ack, body: dict, action: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """Hand off: a human must look; recorded as the task's hand-off label."""
    ack()
    try:
        label = desk.handoff_label()
    except FeedbackError as exc:
        tell(client, message_of(body)[0], reviewer(body).user_id, exc)
        return
    _decide(body, client, desk, action.get("value"), action="handoff", label=label)


def reject(ack: Ack, body: dict, action: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """Reject: ask for the right label (and why) in a modal; its submission is the feedback (views.py)."""
    ack()
    channel, ts = message_of(body)
    try:
        suggestion = desk.suggestion(parse_suggestion_id(action.get("value")))
    except FeedbackError as exc:
        tell(client, channel, reviewer(body).user_id, exc)
        return
    # The submission arrives without the message, so the modal carries where to show the decision.
    metadata = json.dumps({"suggestion_id": suggestion.id, "channel": channel, "ts": ts})
    # trigger_id expires 3 s after the click: open the modal before anything else slow.
    task = desk.runtime.tasks[suggestion.task] if suggestion.task in desk.runtime.tasks.names else desk.runtime.task
    client.views_open(trigger_id=body["trigger_id"], view=reject_modal(task, suggestion, metadata))


def _number(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise curation.CurationError(f"the button carries no number ({value!r}); ask for the list again") from None


def settle(ack: Ack, body: dict, action: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """Settle… beside a conflict: a manager picks the label that holds, and why, in a modal (views.py)."""
    ack()
    channel, _ = message_of(body)
    user_id = reviewer(body).user_id
    try:
        require_manager(client, desk.runtime.settings, user_id)
        found = curation.conflict(desk.runtime.sessions, _number(action.get("value")))
        if found["settled_at"]:
            raise curation.NotConflicted(f"this conflict was settled already by {found['settled_by']}")
    except TuesdayError as exc:
        tell(client, channel, user_id, exc)
        return
    metadata = json.dumps({"example_id": found["example_id"], "channel": channel})
    tasks = desk.runtime.tasks
    task = tasks[found["task"]] if found.get("task") in tasks.names else desk.runtime.task
    client.views_open(trigger_id=body["trigger_id"], view=settle_modal(task, found, metadata))


def approve_data(ack: Ack, body: dict, action: dict, client: WebClient, desk: FeedbackDesk) -> None:
    """Approve on `/tuesday data`: approves the examples up to the highest id that list showed, no later one."""
    ack()
    channel, _ = message_of(body)
    user_id = reviewer(body).user_id
    try:
        require_manager(client, desk.runtime.settings, user_id)
        approval = curation.approve_data(desk.runtime.sessions, up_to=_number(action.get("value")),
                                         by=f"slack:{user_id}")
    except TuesdayError as exc:
        tell(client, channel, user_id, exc)
        return
    if channel:
        client.chat_postEphemeral(channel=channel, user=user_id, text=approved_text(approval))


def register(app: App, desk: FeedbackDesk) -> None:
    """Wire the suggestion message's and the managers' lists' buttons to the listeners above."""
    # Bolt injects listener arguments by name, so the desk is bound in with a closure.
    app.action(ACCEPT)(lambda ack, body, action, client: accept(ack, body, action, client, desk))
    app.action(ACCEPT_ALL)(lambda ack, body, action, client: accept_all(ack, body, action, client, desk))
    app.action(CHANGE)(lambda ack, body, action, client: change(ack, body, action, client, desk))
    app.action(REJECT)(lambda ack, body, action, client: reject(ack, body, action, client, desk))
    app.action(HANDOFF)(lambda ack, body, action, client: handoff(ack, body, action, client, desk))
    app.action(SETTLE)(lambda ack, body, action, client: settle(ack, body, action, client, desk))
    app.action(APPROVE_DATA)(lambda ack, body, action, client: approve_data(ack, body, action, client, desk))
