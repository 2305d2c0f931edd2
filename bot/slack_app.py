"""The Slack app (bolt): verifies every request's signature, then hands it to the listeners."""

from __future__ import annotations

import importlib
import importlib.util
import inspect

from slack_bolt import App
from slack_sdk import WebClient

from bot.feedback import FeedbackDesk
from bot.listeners import actions, events, shortcuts, views
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings

COMMANDS_MODULE = "bot.listeners.commands"


def web_client(settings: Settings) -> WebClient | None:
    """A Web API client for answering clicks, or None without a bot token."""
    if not settings.slack_bot_token:
        return None
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    return WebClient(token=settings.slack_bot_token, base_url=base_url)


def create_slack_app(runtime: Runtime, queues: Queues, client: WebClient) -> App:
    """The bolt App with every listener registered; request verification is on (signing secret, 5-minute window)."""
    # token_verification_enabled=False: no auth.test at start-up, so the web process starts (and
    # its webhooks work) while Slack is unreachable; bolt checks the token on the first request.
    app = App(client=client, signing_secret=runtime.settings.slack_signing_secret, token_verification_enabled=False)
    desk = FeedbackDesk(runtime, queues)
    actions.register(app, desk)
    views.register(app, desk)
    events.register(app, runtime, queues)
    shortcuts.register(app, runtime, queues)
    if importlib.util.find_spec(COMMANDS_MODULE) is not None:
        _register_commands(app, importlib.import_module(COMMANDS_MODULE),
                           {"runtime": runtime, "queues": queues, "client": client, "desk": desk})
    return app


def _register_commands(app: App, module, available: dict) -> None:
    # Slash commands live in their own module, written separately; its register(app, ...) gets
    # whichever of these dependencies it names, so neither side has to change with the other.
    params = list(inspect.signature(module.register).parameters)[1:]
    module.register(app, **{name: available[name] for name in params if name in available})
