"""Message shortcut "Triage with Tuesday": any message becomes a ticket, as if posted in the intake channel."""

from __future__ import annotations

from redis.exceptions import RedisError
from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.intake import InvalidTicket
from bot.listeners import slack_ticket, take_in
from bot.queues import Queues
from bot.runtime import Runtime

TRIAGE_SHORTCUT = "tuesday_triage"


def triage_message(ack: Ack, body: dict, client: WebClient, runtime: Runtime, queues: Queues) -> None:
    """Store the shortcut's message as a ticket, queue its suggestion and tell the user (ephemeral)."""
    ack()
    channel = (body.get("channel") or {}).get("id") or ""
    user_id = (body.get("user") or {}).get("id") or ""
    try:
        ticket, created = take_in(runtime, queues, slack_ticket(channel, body.get("message") or {}))
    except InvalidTicket as exc:
        text = f":warning: Not triaged: {exc}"
    except RedisError:
        text = ":warning: The ticket is stored but the job queue is unreachable; try the shortcut again shortly."
    else:
        text = (f":inbox_tray: Tuesday is triaging this message as ticket #{ticket.id}; the suggestion will appear "
                "in the triage channel." if created else
                f"This message is already ticket #{ticket.id}; its suggestion is in (or on its way to) the triage "
                "channel.")
    if channel and user_id:
        client.chat_postEphemeral(channel=channel, user=user_id, text=text)


def register(app: App, runtime: Runtime, queues: Queues) -> None:
    """Wire the message shortcut to triage_message."""
    app.shortcut(TRIAGE_SHORTCUT)(lambda ack, body, client: triage_message(ack, body, client, runtime, queues))
