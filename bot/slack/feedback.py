"""A click becomes feedback: record the decision and its helpdesk write-back, show it on the Slack message."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.exceptions import RedisError
from slack_sdk import WebClient

from bot.helpdesk.adapters import ticket_link, writes_back
from bot.helpdesk.delivery import enqueue_delivery
from bot.helpdesk.outbox import recording_outbox, write_back_for
from bot.lifecycle.runs import maybe_auto_retrain
from bot.queues import Queues
from bot.runtime import Runtime
from bot.slack.blocks import decided_blocks, decided_text
from bot.store.feedback import Feedback, UnknownLabel, UnknownSuggestion, record_feedback, ticket_feedback
from bot.store.tickets import Suggestion, Ticket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reviewer:
    """Who clicked, as Slack names them."""

    user_id: str
    user_name: str = ""


def parse_suggestion_id(value) -> int:
    """The suggestion id a button's value (or a modal's metadata) carries."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise UnknownSuggestion(f"'{value}' is not a suggestion id") from None


class FeedbackDesk:
    """What the click listeners share: the runtime (store, task) and the queues."""

    def __init__(self, runtime: Runtime, queues: Queues):
        self.runtime, self.queues = runtime, queues

    def suggestion(self, suggestion_id: int) -> Suggestion:
        with self.runtime.sessions() as session:
            row = session.get(Suggestion, suggestion_id)
        if row is None:
            raise UnknownSuggestion(f"no suggestion {suggestion_id} in the store (it may have been deleted)")
        return row

    def handoff_label(self) -> str:
        label = self.runtime.task.handoff_label
        if label is None:
            raise UnknownLabel(f"task {self.runtime.task.name!r} has no hand-off label; choose a label instead")
        return label

    def decide(self, client: WebClient, suggestion_id: int, *, action: str, label: str | None, by: Reviewer,
               why: str | None = None, channel: str | None = None, ts: str | None = None) -> Feedback:
        """Record one decision (label None: the suggested one) and its write-back, update the message."""
        # The write-back's outbox row is written in the transaction that records the click, so it is
        # delivered later even if Redis or this process dies right after the commit.
        sessions = recording_outbox(self.runtime.sessions, lambda source: writes_back(self.runtime.settings, source))
        row, conflicts = record_feedback(sessions, suggestion_id=suggestion_id, action=action,
                                         label=label, user_id=by.user_id, user_name=by.user_name, why=why,
                                         labels=self.runtime.task.labels)
        log.info("suggestion %s: %s %s by %s%s", suggestion_id, action, row.label, by.user_id,
                 f" (conflicts with {', '.join(conflicts)})" if conflicts else "")
        with self.runtime.sessions() as session:
            suggestion = session.get(Suggestion, suggestion_id)
            ticket = session.get(Ticket, suggestion.ticket_id)
            rows = ticket_feedback(session, ticket.id)
            outbox = write_back_for(session, row.id)
        try:
            if outbox is not None:
                self.queue_write_back(outbox.id)
            # Every label counts towards the next automatic retrain (nothing happens below the threshold).
            maybe_auto_retrain(self.runtime, self.queues)
        finally:
            # Show the decision even if Redis is down: the click is recorded either way.
            channel, ts = channel or suggestion.slack_channel, ts or suggestion.slack_ts
            if channel and ts:
                client.chat_update(channel=channel, ts=ts, text=decided_text(ticket, rows),
                                   blocks=decided_blocks(ticket, suggestion, rows, ticket_link(
                                       self.runtime.settings, ticket.source, ticket.external_id)))
        return row

    def queue_write_back(self, outbox_id: int) -> bool:
        """Queue the first delivery attempt of an outbox row; returns whether it was queued."""
        # The helpdesk can be slow or down: a job on its own queue, never a call in the click.
        try:
            return enqueue_delivery(self.queues, outbox_id, 1)
        except RedisError as exc:
            # The row is stored; the sweeper queues it once Redis is back.
            log.warning("write-back %s not queued (%s); the sweeper will queue it", outbox_id, exc)
            return False
