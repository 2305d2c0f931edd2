"""Events API: new top-level messages in the intake channel become tickets, like helpdesk webhooks."""

from __future__ import annotations

import logging

from slack_bolt import App

from bot.intake import InvalidTicket
from bot.queues import Queues
from bot.runtime import Runtime
from bot.slack.listeners.payloads import queue_in, slack_ticket, store_in

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


def store_message(event: dict, runtime: Runtime):
    """Store an intake-channel message as a ticket; returns (ticket, created, needs a suggestion) or None."""
    if not is_new_question(event, runtime.settings.intake_channel):
        return None
    try:
        stored = store_in(runtime, slack_ticket(event["channel"], event))
    except InvalidTicket as exc:
        # There is nobody to answer an event, only the log.
        log.info("intake message %s:%s skipped: %s", event.get("channel"), event.get("ts"), exc)
        return None
    log.info("intake message %s stored as ticket %s%s", stored[0].external_id, stored[0].id,
             "" if stored[1] else " (redelivery)")
    return stored


def register(app: App, runtime: Runtime, queues: Queues) -> None:
    """Store intake messages before Slack is answered, then queue them; every message event is listened to
    (an unhandled one would make bolt answer 404 and Slack retry)."""

    def store_first(body: dict, context, next) -> None:  # noqa: A002 (bolt injects by name)
        # bolt acknowledges an event before its listener runs; a middleware runs before that.
        # Slack resends an event it got no 200 for, never one it did: store here, and if the
        # store fails this raises, bolt answers 500 and Slack retries.
        event = body.get("event") if body.get("type") == "event_callback" else None
        if isinstance(event, dict) and event.get("type") == "message":
            context["intake"] = store_message(event, runtime)
        next()

    def message(ack, context) -> None:
        ack()
        stored = context.get("intake")
        if stored and stored[2]:
            queue_in(queues, stored[0])  # if Redis is down, the sweeper queues it within minutes

    app.middleware(store_first)
    app.event("message")(message)
