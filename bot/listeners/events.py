"""Events API: new top-level messages in the intake channel become tickets, like helpdesk webhooks."""

from __future__ import annotations

import logging

from slack_bolt import App

from bot.intake import InvalidTicket
from bot.listeners import slack_ticket, take_in
from bot.queues import Queues
from bot.runtime import Runtime

log = logging.getLogger(__name__)


# A plain message, or one with files attached; every other subtype is an edit, a join, a bot, ...
QUESTION_SUBTYPES = (None, "", "file_share")


def is_new_question(event: dict, intake_channel: str) -> bool:
    """A person's new top-level message (with or without files) in the intake channel: no bot, edit, join, or reply."""
    if not intake_channel or event.get("channel") != intake_channel:
        return False
    if event.get("subtype") not in QUESTION_SUBTYPES or event.get("bot_id") or not event.get("user"):
        return False
    thread_ts = event.get("thread_ts")
    return thread_ts is None or thread_ts == event.get("ts")


def take_message(event: dict, runtime: Runtime, queues: Queues) -> None:
    """Store an intake-channel message as a ticket and queue its suggestion; other messages are ignored."""
    if not is_new_question(event, runtime.settings.intake_channel):
        return
    try:
        ticket, created = take_in(runtime, queues, slack_ticket(event["channel"], event))
    except InvalidTicket as exc:
        # Events are acknowledged before this runs: there is nobody to answer, only the log.
        log.info("intake message %s:%s skipped: %s", event.get("channel"), event.get("ts"), exc)
        return
    log.info("intake message %s stored as ticket %s%s", ticket.external_id, ticket.id,
             "" if created else " (redelivery)")


def register(app: App, runtime: Runtime, queues: Queues) -> None:
    """Listen to every message event (an unhandled one would make bolt answer 404 and Slack retry)."""

    def message(ack, event: dict) -> None:
        ack()
        take_message(event, runtime, queues)

    app.event("message")(message)
