"""The suggest job: label a stored ticket with every task's production model and post one message to the triage channel.

One row per task: the routing task's (whose hand-off decides escalation) first, then each other
field's. A field whose task has no production model yet is left out; the ticket waits only for
the routing task's first model.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime

from redis.exceptions import RedisError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.exc import SQLAlchemyError

from bot.helpdesk.adapters import ticket_link
from bot.monitor.label_priors import PriorCache, reweigh
from bot.monitor.promise import PromiseCache, note_text
from bot.runtime import Runtime, slack_client
from bot.settings import Settings
from bot.slack.blocks import suggestion_blocks, suggestion_text
from bot.slack.fields import fields_blocks, fields_text
from bot.store.base import as_utc
from bot.store.masking import finish_masking
from bot.store.tickets import (
    Suggestion,
    add_suggestion,
    get_ticket,
    latest_suggestion,
    record_failure,
    set_slack_message,
)
from bot.worker.predictors import PredictorCache, Thresholds, load_version, served_thresholds, serving_cache
from bot.worker.shadow_runner import ShadowRunner
from inference.artifacts import ArtifactError
from inference.base_models import UnapprovedBase
from inference.errors import RegistryError, TuesdayError

log = logging.getLogger(__name__)


class TicketNotFound(TuesdayError):
    """The job names a ticket the store does not hold."""


POSTED_EVENT = "tuesday_suggestion"  # metadata event type on every suggestion message

HISTORY_PAGES = 20  # pages of 200 messages searched for an already posted suggestion


def find_posted(slack: WebClient, channel: str, suggestion_id: int, since: datetime) -> dict | None:
    """{channel, ts} of the message already posted for a suggestion (posted after `since`), by its metadata."""
    cursor = None
    # Only messages newer than the suggestion row can be its post, however busy the channel.
    oldest = f"{as_utc(since).timestamp() - 5:.6f}"
    for _ in range(HISTORY_PAGES):
        try:
            page = slack.conversations_history(channel=channel, oldest=oldest, limit=200, cursor=cursor,
                                               include_all_metadata=True)
        except SlackApiError as exc:
            # No history scope, or a channel given by name: post (at worst twice) rather than never.
            log.warning("cannot look for an earlier post in %s: %s", channel, exc.response.get("error"))
            return None
        for message in page.get("messages", []):
            meta = message.get("metadata") or {}
            if meta.get("event_type") == POSTED_EVENT and meta.get("event_payload", {}).get("suggestion_id") == suggestion_id:
                return {"channel": page.get("channel") or channel, "ts": message["ts"]}
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


class Suggester:
    """What the suggest job needs: the runtime, a predictor cache and a Slack client."""

    def __init__(self, runtime: Runtime, slack: WebClient | None, predictors: PredictorCache | None = None,
                 shadow: ShadowRunner | None = None):
        self.runtime, self.slack = runtime, slack
        self.predictors = predictors or serving_cache(runtime)
        # Each other task's predictor, following its own production pointer.
        self.fields = {scoped.task.name: (scoped, serving_cache(scoped)) for scoped in runtime.each_task()[1:]}
        self._thresholds: dict[str, Thresholds] = {}
        self.priors = PriorCache(runtime.sessions)  # label frequencies of the live stream (TUESDAY_PRIOR_ADJUSTMENT)
        self.promise = PromiseCache(runtime.sessions)  # whether live tickets still look like the promise's rows
        # The version in shadow (bot.lifecycle.shadow), if an admin or the shadow gate named one: its own
        # predictor. Each task has its own shadow.
        self.shadow = shadow or ShadowRunner(runtime, lambda name: load_version(runtime, name), self.thresholds)
        self.field_shadows = {name: ShadowRunner(scoped, lambda version, s=scoped: load_version(s, version),
                                                 self.thresholds) for name, (scoped, _) in self.fields.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> Suggester:
        return cls(Runtime(settings), slack_client(settings))

    def close(self) -> None:
        self.predictors.close()
        for _, cache in self.fields.values():
            cache.close()
        self.shadow.close()
        for runner in self.field_shadows.values():
            runner.close()

    def thresholds(self, version: str) -> Thresholds:
        """A version's thresholds under this process's settings (kept: a committed version never changes), with the
        hand-off threshold re-set while its promise is not valid now (bot.monitor.promise: a recent shifted check).

        Only the routing task hands off: another field's version gets no hand-off threshold."""
        if version not in self._thresholds:
            self._thresholds[version] = served_thresholds(self.runtime, self.runtime.registry.get(version))
        cut = self._thresholds[version]
        shifted = self.promise.override(version) if cut.handoff_label else None
        if shifted is not None and shifted.reset_handoff is not None:
            cut = dataclasses.replace(cut, handoff=shifted.reset_handoff, far=cut.far if shifted.far_on else 0.0)
        return cut

    def promise_note(self, version: str) -> str | None:
        """The message's footer while the version's promise is not valid now, else None."""
        shifted = self.promise.override(version)
        return None if shifted is None else note_text(shifted)

    def _suggest(self, scoped: Runtime, cache: PredictorCache, ticket) -> Suggestion:
        """Predict one task's label for the ticket and store it (routed by that version's thresholds)."""
        settings = self.runtime.settings
        predictor = cache.get()
        # process_time, not thread_time: llama.cpp computes on its own thread pool, which
        # thread_time (this thread only) would miss; a worker runs one job at a time, so the
        # process's CPU time over the call is the prediction's (what a CPU-hour buys).
        cpu = time.process_time()
        prediction = predictor.predict(ticket.model_text)
        cpu_ms = (time.process_time() - cpu) * 1000.0
        prior = self.priors.applied(prediction.model_version) if settings.prior_adjustment else None
        if prior is not None:
            prediction = reweigh(prediction, prior)
        cut = self.thresholds(prediction.model_version)
        with self.runtime.sessions() as session:
            row = add_suggestion(session, ticket.id, prediction, task=scoped.task.name, threshold=cut.abstain,
                                 handoff_threshold=cut.handoff, handoff_label=cut.handoff_label, cpu_ms=cpu_ms,
                                 prior_id=prior.id if prior is not None else None, far=cut.far,
                                 far_hands_off=cut.far_hands_off)
        log.info("ticket %s %s: %s %s (%.2f) by %s", ticket.id, scoped.task.name, row.routing, row.label or "-",
                 row.confidence, row.model_version)
        return row

    def _fields(self, ticket) -> dict[str, Suggestion]:
        """Each other task's suggestion for the ticket (stored once; a task without production is left out)."""
        rows = {}
        for name, (scoped, cache) in self.fields.items():
            with self.runtime.sessions() as session:
                row = latest_suggestion(session, ticket.id, name)
            if row is None and scoped.production.name() is not None:
                row = self._suggest(scoped, cache, ticket)
            if row is not None:
                rows[name] = row
        return rows

    def run(self, ticket_id: int) -> dict:
        """Predict (once), store, post (once); safe to re-run after a failure at any step."""
        settings = self.runtime.settings
        sessions = self.runtime.sessions
        # The worker's masking stage first (names, addresses): before the ticket is read for anything, and
        # before it may wait for a first model, so no unmasked name outlives this job.
        finish_masking(sessions, ticket_id)
        with sessions() as session:
            ticket = get_ticket(session, ticket_id)
            if ticket is None:
                raise TicketNotFound(f"no ticket {ticket_id} in the store")
            row = latest_suggestion(session, ticket_id, self.runtime.task.name)
        # A retried job (Slack was down) reuses the stored suggestion instead of predicting again.
        retried = row is not None
        if row is None:
            if self.runtime.production.name() is None:
                # Not a failure: the ticket waits, counted by `/tuesday status`, and the first
                # promotion (or the sweeper after it) queues it again.
                log.info("ticket %s waits: no production model yet", ticket.id)
                return {"ticket_id": ticket.id, "status": "waiting", "model_version": None}
        # The other fields first, the routing row last: a ticket whose routing row exists has all its fields.
        fields = self._fields(ticket)
        if row is None:
            row = self._suggest(self.runtime, self.predictors, ticket)
        if row.slack_ts is None and self.slack is not None:
            # A worker killed between Slack's answer and the store's write left a posted message
            # the store does not know of: find it by its metadata rather than post it twice.
            found = find_posted(self.slack, settings.triage_channel, row.id, row.created_at) if retried else None
            if found is None:
                cut = self.thresholds(row.model_version)
                handoff = cut.handoff if row.out_of_scope else None
                link = ticket_link(settings, ticket.source, ticket.external_id)
                note = self.promise_note(row.model_version)
                if fields:  # several fields: one message with each (only the routing task's model: the classic one)
                    blocks = fields_blocks(ticket, row, fields, self.runtime.tasks, handoff_threshold=handoff, link=link,
                                           note=note, far=cut.far, unpromised=cut.unpromised)
                    text = fields_text(ticket, row, fields)
                else:
                    blocks = suggestion_blocks(ticket, row, self.runtime.task, handoff_threshold=handoff, link=link,
                                               note=note, far=cut.far, unpromised=cut.unpromised)
                    text = suggestion_text(ticket, row)
                found = self.slack.chat_postMessage(
                    channel=settings.triage_channel, text=text, blocks=blocks,
                    metadata={"event_type": POSTED_EVENT, "event_payload": {"suggestion_id": row.id}},
                    unfurl_links=False, unfurl_media=False)
            with sessions() as session:
                for field in fields.values():  # a click on a field finds the message through its own row
                    set_slack_message(session, field.id, found["channel"], found["ts"])
                row = set_slack_message(session, row.id, found["channel"], found["ts"])
        # Only now the shadow version, if one is set: production's suggestion is stored and posted
        # whatever it does, and its failures are stored as rows of its own, never raised here.
        self.shadow.run(ticket, row)
        for name, field in fields.items():
            self.field_shadows[name].run(ticket, field)
        return {"ticket_id": ticket.id, "suggestion_id": row.id, "label": row.label, "routing": row.routing,
                "confidence": row.confidence, "model_version": row.model_version,
                "slack_channel": row.slack_channel, "slack_ts": row.slack_ts,
                **({"fields": {name: {"suggestion_id": f.id, "label": f.label, "routing": f.routing,
                                      "confidence": f.confidence, "model_version": f.model_version}
                               for name, f in fields.items()}} if fields else {})}


# The queue runs suggest_ticket(ticket_id) by dotted path in an inference worker, which builds
# its dependencies from the environment on the first job and keeps them for the life of the
# process (the model stays loaded between tickets). Everything above takes them as arguments.
# The cache is keyed by the settings that built them.
_suggesters: dict[str, Suggester] = {}


def worker_suggester() -> Suggester:
    """The Suggester for this process's settings (TUESDAY_* environment and .env), built on first use."""
    settings = Settings()
    key = settings.model_dump_json()
    if key not in _suggesters:
        # Settings only change under tests; drop what the old ones loaded before building anew.
        for old in _suggesters.values():
            old.close()
        _suggesters.clear()
        _suggesters[key] = Suggester.from_settings(settings)
    return _suggesters[key]


# Failures that are not the ticket's: the store, Redis, Slack, the network or the artifact store is down,
# no model can be loaded, or the production model's base is no longer approved (an admin's decision: tickets
# wait for a model that may be served, as they wait for a first one). They are retried without counting
# against the ticket.
NOT_THE_TICKETS = (SQLAlchemyError, RedisError, SlackClientError, OSError, RegistryError, ArtifactError, TicketNotFound,
                   UnapprovedBase)


def suggest_ticket(ticket_id: int) -> dict:
    """Queued job: suggest a label for a stored ticket and post it to Slack; returns a JSON-safe summary.

    A failure of the ticket's own (the model cannot read it, a bug its text triggers) is counted on the
    ticket; after TUESDAY_SUGGEST_MAX_ATTEMPTS it is `failed` and no longer queued (bot.store.tickets)."""
    suggester = worker_suggester()
    try:
        return suggester.run(int(ticket_id))
    except NOT_THE_TICKETS:
        raise
    except Exception as exc:
        _count_failure(suggester.runtime, int(ticket_id), exc)
        raise


def _count_failure(runtime: Runtime, ticket_id: int, exc: Exception) -> None:
    try:
        failed = record_failure(runtime.sessions, ticket_id, type(exc).__name__,
                                max_attempts=runtime.settings.suggest_max_attempts)
    except SQLAlchemyError as store_down:
        log.warning("ticket %s: its failure (%s) was not counted: %s", ticket_id, type(exc).__name__,
                    type(store_down).__name__)
        return
    if failed:
        log.error("ticket %s failed %d times (%s): it is `failed` and no longer queued; "
                  "`tuesday tickets --retry %s` queues it again", ticket_id, runtime.settings.suggest_max_attempts,
                  type(exc).__name__, ticket_id)
