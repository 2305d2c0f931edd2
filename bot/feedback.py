"""A click becomes feedback: record the decision, show it on the Slack message, queue the helpdesk write-back."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rq import Retry
from slack_sdk import WebClient

from bot.blocks import decided_blocks, decided_text
from bot.control import maybe_auto_retrain
from bot.helpdesk import WRITE_BACK_JOB
from bot.queues import Queues
from bot.runtime import Runtime
from bot.store import (Feedback, Suggestion, Ticket, UnknownLabel, UnknownSuggestion, record_feedback,
                       ticket_feedback)

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


def write_back_job_id(feedback_id: int) -> str:
    return f"writeback-{int(feedback_id)}"


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
        """Record one decision (label None: the suggested one), queue its write-back, update the message."""
        row, conflicts = record_feedback(self.runtime.sessions, suggestion_id=suggestion_id, action=action,
                                         label=label, user_id=by.user_id, user_name=by.user_name, why=why,
                                         labels=self.runtime.task.labels)
        log.info("suggestion %s: %s %s by %s%s", suggestion_id, action, row.label, by.user_id,
                 f" (conflicts with {', '.join(conflicts)})" if conflicts else "")
        with self.runtime.sessions() as session:
            suggestion = session.get(Suggestion, suggestion_id)
            ticket = session.get(Ticket, suggestion.ticket_id)
            rows = ticket_feedback(session, ticket.id)
        try:
            # The helpdesk gets the first label and later agreeing ones; a disagreement stays in
            # Tuesday (flagged) rather than adding a second, contradicting tag to the ticket.
            if not conflicts:
                self.queue_write_back(row, ticket)
            # Every label counts towards the next automatic retrain (nothing happens below the threshold).
            maybe_auto_retrain(self.runtime, self.queues)
        finally:
            # Show the decision even if Redis is down: the click is recorded either way.
            channel, ts = channel or suggestion.slack_channel, ts or suggestion.slack_ts
            if channel and ts:
                client.chat_update(channel=channel, ts=ts, text=decided_text(ticket, rows),
                                   blocks=decided_blocks(ticket, suggestion, rows))
        return row

    def queue_write_back(self, row: Feedback, ticket: Ticket) -> bool:
        """Queue the write-back job when the ticket's helpdesk takes one; returns whether it was queued."""
        settings = self.runtime.settings
        if ticket.source != "zendesk" or not settings.zendesk_url:
            return False
        # The helpdesk can be slow or down for a while: a job, retried, instead of a call in the click.
        _, queued = self.queues.enqueue("suggest", WRITE_BACK_JOB, row.id, job_id=write_back_job_id(row.id),
                                        timeout=60, retry=Retry(max=3, interval=[10, 60, 300]))
        return queued
