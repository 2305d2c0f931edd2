"""What a command needs, built once from the settings and passed along (no module singletons)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from slack_sdk import WebClient

from bot.settings import Settings
from bot.store.base import make_session_factory
from bot.store.production import Production
from inference.base_models import smollm2_gguf
from inference.registry import Registry
from inference.task import Task, demo_task_path, load_task


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def task_path(self) -> Path:
        return self.settings.task_file or demo_task_path()

    @cached_property
    def task(self) -> Task:
        return load_task(self.task_path)

    @cached_property
    def sessions(self):
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return make_session_factory(self.settings.store_url)

    @cached_property
    def registry(self) -> Registry:
        """Model versions in the shared artifact store, with this host's verified cache."""
        return self.settings.registry()

    @cached_property
    def production(self) -> Production:
        """Which version is live, from the SQL store every host shares."""
        return Production(self.sessions, self.registry)

    def base_model(self, override: Path | None = None) -> Path:
        return override or self.settings.base_model or smollm2_gguf()

    def predictor(self, version: str | None = None, *, reasons: bool | None = None):
        """The served predictor of a version (default: production, else the newest), calibrated, with evidence."""
        from inference.serving import load_predictor

        info = self.registry.fetch(self.production.resolve(version).name)
        return load_predictor(info, self.task, threads=self.settings.threads,
                              reasons=self.settings.reasons if reasons is None else reasons)


def slack_client(settings: Settings) -> WebClient | None:
    """The Web API client, or None without a token or a channel (suggestions are then only stored)."""
    if not settings.slack_bot_token or not settings.triage_channel:
        return None
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    return WebClient(token=settings.slack_bot_token, base_url=base_url)
