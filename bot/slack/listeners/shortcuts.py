"""Message shortcut "Triage with Tuesday": any message becomes a ticket, as if posted in the intake channel."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.intake import InvalidTicket
from bot.queues import Queues
from bot.runtime import Runtime
from bot.slack.listeners.payloads import queue_in, slack_ticket, store_in

log = logging.getLogger(__name__)

TRIAGE_SHORTCUT = "tuesday_triage"
RESPOND_TIMEOUT_S = 5  # a response_url answers at once; a slow one must not hold the listener's thread


def confirm(client: WebClient, body: dict, text: str) -> None:
    """Tell the user who used the shortcut, and only them: through the shortcut's response_url, which works in
    any channel (chat.postEphemeral fails where the bot is not a member), else chat.postEphemeral."""
    response_url = body.get("response_url")
    if response_url:
        try:
            answer = WebhookClient(response_url, timeout=RESPOND_TIMEOUT_S).send(text=text, response_type="ephemeral")
            if answer.status_code == 200:
                return
            log.warning("shortcut: response_url answered %s; trying chat.postEphemeral", answer.status_code)
        except (SlackClientError, OSError) as exc:
            log.warning("shortcut: response_url failed (%s); trying chat.postEphemeral", type(exc).__name__)
    channel = (body.get("channel") or {}).get("id") or ""
    user_id = (body.get("user") or {}).get("id") or ""
    if channel and user_id:
        client.chat_postEphemeral(channel=channel, user=user_id, text=text)


def triage_message(ack: Ack, body: dict, client: WebClient, runtime: Runtime, queues: Queues) -> None:
    """Store the shortcut's message as a ticket, queue its suggestion and tell the user (ephemeral)."""
    channel = (body.get("channel") or {}).get("id") or ""
    try:
        # Stored before the ack: if the store fails, Slack tells the user the shortcut failed.
        ticket, created, needed = store_in(runtime, slack_ticket(channel, body.get("message") or {}))
    except InvalidTicket as exc:
        ack()
        text = f":warning: Not triaged: {exc}"
    else:
        ack()
        if needed:
            queue_in(queues, ticket)  # if Redis is down, the sweeper queues it within minutes
        text = (f":inbox_tray: Tuesday is triaging this message as ticket #{ticket.id}; the suggestion will appear "
                "in the triage channel." if created else
                f"This message is already ticket #{ticket.id}; its suggestion is in (or on its way to) the triage "
                "channel.")
    confirm(client, body, text)


def register(app: App, runtime: Runtime, queues: Queues) -> None:
    """Wire the message shortcut to triage_message."""
    app.shortcut(TRIAGE_SHORTCUT)(lambda ack, body, client: triage_message(ack, body, client, runtime, queues))
