"""The suggest job: label a stored ticket with the production model and post it to the triage channel."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from slack_sdk import WebClient

from bot.blocks import suggestion_blocks, suggestion_text
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store import add_suggestion, get_ticket, latest_suggestion, set_slack_message
from inference.errors import RegistryError, TuesdayError
from inference.predictor import Predictor
from inference.registry import Registry
from inference.task import load_task

log = logging.getLogger(__name__)


class TicketNotFound(TuesdayError):
    """The job names a ticket the store does not hold."""


class PredictorCache:
    """This process's predictor for the production version; it follows the production pointer."""

    def __init__(self, registry: Registry, load: Callable[[str], Predictor]):
        self.registry, self._load = registry, load
        self.version: str | None = None
        self.predictor: Predictor | None = None
        self.loads = 0

    def get(self) -> Predictor:
        # One small file read per ticket: cheap next to a prediction, and no signal to miss.
        name = self.registry.production_name()
        if name is None:
            raise RegistryError("no production model yet: train and promote one (`tuesday train`)")
        if name != self.version or self.predictor is None:
            # Load, then swap, then close: a version that fails to load raises here and leaves
            # the old predictor in place (the job fails and is retried; nothing is half-swapped).
            new = self._load(name)
            old, self.predictor, self.version = self.predictor, new, name
            self.loads += 1
            log.info("serving model %s", name)
            if old is not None:
                old.close()
        return self.predictor

    def close(self) -> None:
        if self.predictor is not None:
            self.predictor.close()
        self.predictor, self.version = None, None


def load_version(runtime: Runtime, name: str) -> Predictor:
    """A llama.cpp predictor for a version, with the task it was trained on."""
    from inference.llama_predictor import LlamaPredictor

    # The version's own task.yaml fixes the prompt and labels it learned, so serving stays
    # identical to training even after the team edits the task file (until the next retrain).
    info = runtime.registry.get(name)
    task_file = Path(info.path) / "task.yaml"
    task = load_task(task_file) if task_file.exists() else runtime.task
    return LlamaPredictor(info.gguf(), task, version=info.name, n_threads=runtime.settings.threads,
                          reasons=runtime.settings.reasons)


def slack_client(settings: Settings) -> WebClient | None:
    """The Web API client, or None without a token or a channel (suggestions are then only stored)."""
    if not settings.slack_bot_token or not settings.triage_channel:
        return None
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    return WebClient(token=settings.slack_bot_token, base_url=base_url)


class Suggester:
    """What the suggest job needs: the runtime, a predictor cache and a Slack client."""

    def __init__(self, runtime: Runtime, slack: WebClient | None, predictors: PredictorCache | None = None):
        self.runtime, self.slack = runtime, slack
        self.predictors = predictors or PredictorCache(runtime.registry, lambda name: load_version(runtime, name))

    @classmethod
    def from_settings(cls, settings: Settings) -> Suggester:
        return cls(Runtime(settings), slack_client(settings))

    def close(self) -> None:
        self.predictors.close()

    def run(self, ticket_id: int) -> dict:
        """Predict (once), store, post (once); safe to re-run after a failure at any step."""
        settings = self.runtime.settings
        sessions = self.runtime.sessions
        with sessions() as session:
            ticket = get_ticket(session, ticket_id)
            if ticket is None:
                raise TicketNotFound(f"no ticket {ticket_id} in the store")
            row = latest_suggestion(session, ticket_id)
        # A retried job (Slack was down) reuses the stored suggestion instead of predicting again.
        if row is None:
            prediction = self.predictors.get().predict(ticket.model_text)
            with sessions() as session:
                row = add_suggestion(session, ticket.id, prediction, threshold=settings.confidence_threshold)
            log.info("ticket %s: %s (%.2f) by %s", ticket.id, row.label or "unsure", row.confidence, row.model_version)
        if row.slack_ts is None and self.slack is not None:
            response = self.slack.chat_postMessage(
                channel=settings.triage_channel, text=suggestion_text(ticket, row),
                blocks=suggestion_blocks(ticket, row, self.runtime.task), unfurl_links=False, unfurl_media=False)
            with sessions() as session:
                row = set_slack_message(session, row.id, response["channel"], response["ts"])
        return {"ticket_id": ticket.id, "suggestion_id": row.id, "label": row.label, "confidence": row.confidence,
                "model_version": row.model_version, "slack_channel": row.slack_channel, "slack_ts": row.slack_ts}


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


def suggest_ticket(ticket_id: int) -> dict:
    """Queued job: suggest a label for a stored ticket and post it to Slack; returns a JSON-safe summary."""
    return worker_suggester().run(int(ticket_id))
