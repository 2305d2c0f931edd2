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
from inference.task import Task, TaskSet, demo_task_path, load_tasks

SLACK_TIMEOUT_S = 10  # one Slack Web API call (slack_sdk's default is 30 s)


class Runtime:
    """Settings, store, registry and one task's view of them (the routing task unless `for_task` chose another)."""

    def __init__(self, settings: Settings, task_name: str | None = None, parent: Runtime | None = None):
        self.settings = settings
        self.task_name = task_name
        self._parent = parent  # a task's view shares its parent's store, registry and task file

    @cached_property
    def task_path(self) -> Path:
        return self._parent.task_path if self._parent else (self.settings.task_file or demo_task_path())

    @cached_property
    def tasks(self) -> TaskSet:
        """Every task of this deployment (a single-task file is a set of one)."""
        return self._parent.tasks if self._parent else load_tasks(self.task_path)

    @cached_property
    def task(self) -> Task:
        return self.tasks[self.task_name] if self.task_name else self.tasks.routing

    def for_task(self, name: str) -> Runtime:
        """This runtime seen from one task: the same settings, store and registry; that task's production."""
        task = self.tasks[name]  # an unknown name fails here, saying which tasks there are
        return Runtime(self.settings, task.name, parent=self._parent or self)

    def for_version(self, name: str) -> Runtime:
        """This runtime seen from the task a stored version was trained for (this one when its task is not here)."""
        task = self.registry.get(name).manifest.get("task")
        return self.for_task(task if task in self.tasks.names else self.tasks.routing_name)

    def each_task(self) -> list[Runtime]:
        """One runtime per task, the routing task first."""
        names = [self.tasks.routing_name] + [n for n in self.tasks.names if n != self.tasks.routing_name]
        return [self.for_task(n) for n in names]

    def tasks_named(self, name: str | None) -> list[Runtime]:
        """The named task's runtime, or (no name) one per task: what a command with an optional task covers."""
        return [self.for_task(name)] if name else self.each_task()

    @cached_property
    def sessions(self):
        if self._parent is not None:
            return self._parent.sessions
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return make_session_factory(self.settings.store_url, connect_timeout_s=self.settings.sql_timeout_s,
                                    statement_timeout_s=self.settings.sql_statement_timeout_s or None)

    @cached_property
    def registry(self) -> Registry:
        """Model versions in the shared artifact store, with this host's verified cache."""
        return self._parent.registry if self._parent is not None else self.settings.registry()

    @cached_property
    def production(self) -> Production:
        """Which version is live, from the SQL store every host shares."""
        others = frozenset(self.tasks.names) - {self.task.name}
        return Production(self.sessions, self.registry, self.task.name,
                          others if self.task.name == self.tasks.routing_name else None)

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
    return WebClient(token=settings.slack_bot_token, base_url=base_url, timeout=SLACK_TIMEOUT_S)
