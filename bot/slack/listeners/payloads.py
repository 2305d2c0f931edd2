"""What the listeners share: who clicked, which message, a refusal told to the clicker, and a Slack message stored as a ticket."""

from __future__ import annotations

import logging
import re

from redis.exceptions import RedisError
from slack_sdk import WebClient

from bot.intake import MAX_ID_CHARS, IncomingTicket, InvalidTicket
from bot.queues import Queues
from bot.runtime import Runtime
from bot.slack.feedback import Reviewer
from bot.store.tickets import Ticket, add_ticket, latest_suggestion
from inference.errors import TuesdayError

log = logging.getLogger(__name__)

SLACK_SOURCE = "slack"


def reviewer(body: dict) -> Reviewer:
    """Who clicked or submitted, from an interactivity payload."""
    user = body.get("user") or {}
    return Reviewer(user_id=str(user.get("id") or ""), user_name=str(user.get("name") or user.get("username") or ""))


def message_of(body: dict) -> tuple[str | None, str | None]:
    """(channel, ts) of the message a button sits on."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    return channel, ts


def tell(client: WebClient, channel: str | None, user_id: str, error: TuesdayError) -> None:
    """Answer a refused click with a message only the clicker sees (there is no HTTP status to give)."""
    if channel and user_id:
        client.chat_postEphemeral(channel=channel, user=user_id, text=f":warning: Not recorded: {error}")


# Slack's control sequences: <@U123>, <#C123|general>, <!here>, <https://x|label>. No '<' or '>'
# inside one, so a scan from each '<' stops at the next bracket and every character is read once.
SLACK_MARKUP = re.compile(r"<([^<>]*)>")
SLACK_ENTITY = re.compile(r"&(amp|lt|gt);")
ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}


def _readable(match: re.Match) -> str:
    target, _, label = match.group(1).partition("|")
    if target.startswith(("@", "#")):
        return target[0] + label.lstrip("@#") if label else target  # <@U123|jo> -> @jo, <@U123> -> @U123
    if target.startswith("!"):
        return label or "@" + target[1:].split("^")[0]  # <!here> -> @here, <!date^...|fallback> -> fallback
    return label or target  # a link: what it says, else where it goes


def slack_plain_text(text: str) -> str:
    """Slack's message markup as the person typed it, so it is stored (and later escaped) once.

    >>> slack_plain_text("<@U123> says &lt;b&gt; &amp; see <https://x.io/a|the doc> in <#C1|general>")
    '@U123 says <b> & see the doc in #general'
    """
    text = SLACK_MARKUP.sub(_readable, text)
    return SLACK_ENTITY.sub(lambda m: ENTITIES[m.group(1)], text)


def _files(message: dict) -> str:
    # A file shared without a message: its names are all there is to triage (better than dropping it).
    files = message.get("files")
    if not isinstance(files, list):
        return ""
    names = [str(f.get("title") or f.get("name") or "") for f in files if isinstance(f, dict)]
    return ", ".join(n for n in names if n)


def slack_ticket(channel: str, message: dict) -> IncomingTicket:
    """A ticket from a Slack message, keyed '<channel>:<ts>' so a redelivery or a second shortcut is the same ticket."""
    ts = str(message.get("ts") or "")
    text = slack_plain_text(str(message.get("text") or "")).strip() or _files(message)
    if not channel or not ts:
        raise InvalidTicket("the message has no channel or timestamp")
    if not text:
        raise InvalidTicket("the message has no text to triage")
    external_id = f"{channel}:{ts}"
    if len(external_id) > MAX_ID_CHARS:
        raise InvalidTicket("the message id is too long")
    return IncomingTicket(SLACK_SOURCE, external_id, text, requester=message.get("user") or None)


def store_in(runtime: Runtime, incoming: IncomingTicket) -> tuple[Ticket, bool, bool]:
    """Store the ticket (PII-masked) once; returns (ticket, created, whether it still needs a suggestion)."""
    ticket, created = add_ticket(runtime.sessions, source=incoming.source, external_id=incoming.external_id,
                                 text=incoming.text, subject=incoming.subject, requester=incoming.requester)
    if created:
        return ticket, True, True
    with runtime.sessions() as session:
        return ticket, False, latest_suggestion(session, ticket.id) is None


def queue_in(queues: Queues, ticket: Ticket) -> bool:
    """Queue a stored ticket's suggestion; False when Redis is down (the sweeper queues it later)."""
    try:
        # The job id is per ticket, so this collapses into a job already queued or running.
        queues.enqueue_suggest(ticket.id)
    except RedisError as exc:
        log.warning("ticket %s stored; its suggestion is not queued yet (%s); the sweeper will", ticket.id, exc)
        return False
    return True
