"""A click becomes feedback: record the decision and its helpdesk write-back, show it on the Slack message."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.exceptions import RedisError
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot.helpdesk.adapters import ticket_link, writes_back
from bot.helpdesk.delivery import enqueue_delivery
from bot.helpdesk.outbox import recording_outbox, write_back_for
from bot.lifecycle.runs import maybe_auto_retrain
from bot.queues import Queues
from bot.runtime import Runtime
from bot.slack.blocks import decided_blocks, decided_text
from bot.slack.fields import fields_blocks
from bot.slack.roles import Labellers
from bot.store.feedback import (
    HELD,
    Feedback,
    FeedbackError,
    UnknownLabel,
    UnknownSuggestion,
    record_feedback,
    ticket_feedback,
)
from bot.store.tickets import Suggestion, Ticket, latest_suggestion
from bot.trail.labellers import held_count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reviewer:
    """Who clicked, as Slack names them."""

    user_id: str
    user_name: str = ""


class NotRecorded(FeedbackError):
    """The store did not answer: the click is not recorded, and the person who clicked is told so."""

    def __init__(self, exc: SQLAlchemyError):
        super().__init__("the store did not answer, so this decision is not saved: please click again in a minute")
        log.warning("a click was not recorded: the store did not answer (%s)", type(exc).__name__)


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
        self.labellers = Labellers(runtime.settings)

    def suggestion(self, suggestion_id: int) -> Suggestion:
        try:
            with self.runtime.sessions() as session:
                row = session.get(Suggestion, suggestion_id)
        except SQLAlchemyError as exc:
            raise NotRecorded(exc) from None
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
        """Record one decision (label None: the suggested one) and its write-back, update the message.
        Raises NotRecorded (a FeedbackError the listener tells the clicker) when the store is down."""
        row = self.record(client, suggestion_id, action=action, label=label, by=by, why=why)
        self.after(client, [row], suggestion_id, channel, ts)
        return row

    def accept_all(self, client: WebClient, suggestion_id: int, *, by: Reviewer, channel: str | None = None,
                   ts: str | None = None) -> list[Feedback]:
        """Accept every field of the ticket that has a label and no decision yet (one row per task)."""
        try:
            with self.runtime.sessions() as session:
                routing = session.get(Suggestion, suggestion_id)
                if routing is None:
                    raise UnknownSuggestion(f"no suggestion {suggestion_id} in the store (it may have been deleted)")
                decided = {f.task for f in ticket_feedback(session, routing.ticket_id)}
                rows = [latest_suggestion(session, routing.ticket_id, name) for name in self.runtime.tasks.names]
        except SQLAlchemyError as exc:
            raise NotRecorded(exc) from None
        todo = [r.id for r in rows if r is not None and r.label and r.task not in decided]
        if not todo:
            raise UnknownLabel("nothing left to accept: every field with a suggested label has a decision "
                               "(change a field with its menu)")
        recorded = [self.record(client, sid, action="accept", label=None, by=by) for sid in todo]
        self.after(client, recorded, suggestion_id, channel, ts)
        return recorded

    def record(self, client: WebClient, suggestion_id: int, *, action: str, label: str | None, by: Reviewer,
               why: str | None = None) -> Feedback:
        """Store one decision and its write-back's outbox row; NotRecorded when the store does not answer.
        A click from someone who is not a labeller is stored held: shown, never trained on until approved."""
        trusted = self.labellers.trusts(client, by.user_id)
        try:
            return self._record(suggestion_id, action=action, label=label, by=by, why=why, trusted=trusted)
        except SQLAlchemyError as exc:
            raise NotRecorded(exc) from None

    def _record(self, suggestion_id: int, *, action: str, label: str | None, by: Reviewer,
                why: str | None = None, trusted: bool = True) -> Feedback:
        # The write-back's outbox row is written in the transaction that records the click, so it is
        # delivered later even if Redis or this process dies right after the commit.
        sessions = recording_outbox(self.runtime.sessions, lambda source: writes_back(self.runtime.settings, source))
        row, conflicts = record_feedback(sessions, suggestion_id=suggestion_id, action=action,
                                         label=label, user_id=by.user_id, user_name=by.user_name, why=why,
                                         labels=self.runtime.tasks, trusted=trusted)
        log.info("suggestion %s: %s %s by %s%s%s", suggestion_id, action, row.label, by.user_id,
                 "" if trusted else " (held: not a labeller)",
                 f" (conflicts with {', '.join(conflicts)})" if conflicts else "")
        return row

    def after(self, client: WebClient, recorded: list[Feedback], suggestion_id: int, channel: str | None,
              ts: str | None) -> None:
        """Queue the write-backs, count the labels towards a retrain, show the decisions on the message."""
        with self.runtime.sessions() as session:
            suggestion = session.get(Suggestion, suggestion_id)
            ticket = session.get(Ticket, suggestion.ticket_id)
            outboxes = [o for o in (write_back_for(session, row.id) for row in recorded) if o is not None]
        try:
            for outbox in outboxes:
                self.queue_write_back(outbox.id)
            # Every label counts towards its task's next automatic retrain (nothing happens below the threshold).
            for task in dict.fromkeys(row.task for row in recorded):
                maybe_auto_retrain(self.runtime.for_task(task), self.queues)
        finally:
            # Show the decision even if Redis is down: the click is recorded either way.
            channel, ts = channel or suggestion.slack_channel, ts or suggestion.slack_ts
            if channel and ts:
                text, blocks = self._message(ticket, suggestion)
                client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
            self._tell_held(client, recorded, channel)

    def _tell_held(self, client: WebClient, recorded: list[Feedback], channel: str | None) -> None:
        """Tell someone who is not a labeller, at their first click waiting, that a manager approves it first."""
        held = [row for row in recorded if row.trust == HELD]
        if not held or not channel or held_count(self.runtime.sessions, held[0].user_id) > len(held):
            return
        client.chat_postEphemeral(channel=channel, user=held[0].user_id, text=(
            ":hourglass: Saved, and shown on the ticket. You are not one of this team's labellers yet, so your labels "
            "teach Tuesday only once a manager approves them (`/tuesday labellers`)."))

    def _message(self, ticket: Ticket, clicked: Suggestion) -> tuple[str, list[dict]]:
        """The message after decisions: one task's decided message, or every field with its decisions."""
        link = ticket_link(self.runtime.settings, ticket.source, ticket.external_id)
        tasks = self.runtime.tasks
        with self.runtime.sessions() as session:
            rows = ticket_feedback(session, ticket.id)
            latest = {name: latest_suggestion(session, ticket.id, name) for name in tasks.names}
        routing = latest.pop(tasks.routing_name) or clicked
        fields = {name: row for name, row in latest.items() if row is not None}
        if not fields:  # one task suggested (the only one, or the only one with a model): the classic message
            return decided_text(ticket, rows), decided_blocks(ticket, clicked, rows, link)
        decisions = {name: [r for r in rows if r.task == name] for name in tasks.names}
        return decided_text(ticket, rows), fields_blocks(ticket, routing, fields, tasks, link=link,
                                                         decisions=decisions)

    def queue_write_back(self, outbox_id: int) -> bool:
        """Queue the first delivery attempt of an outbox row; returns whether it was queued."""
        # The helpdesk can be slow or down: a job on its own queue, never a call in the click.
        try:
            return enqueue_delivery(self.queues, outbox_id, 1)
        except RedisError as exc:
            # The row is stored; the sweeper queues it once Redis is back.
            log.warning("write-back %s not queued (%s); the sweeper will queue it", outbox_id, exc)
            return False
