"""The Slack app (bolt): every request verified (bot.web.app, then bolt again), parsed, handed to the listeners."""

from __future__ import annotations

import logging

from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from bot.error_ids import logged
from bot.intake import BadPayload
from bot.queues import Queues
from bot.runtime import SLACK_TIMEOUT_S, Runtime
from bot.settings import Settings
from bot.slack.feedback import FeedbackDesk
from bot.slack.listeners import actions, commands, events, shortcuts, signoff, views

log = logging.getLogger(__name__)


def web_client(settings: Settings) -> WebClient | None:
    """A Web API client for answering clicks, or None without a bot token."""
    if not settings.slack_bot_token:
        return None
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    return WebClient(token=settings.slack_bot_token, base_url=base_url, timeout=SLACK_TIMEOUT_S)


# Fields bolt and the listeners read as objects without checking; any other type would fail inside
# bolt, after the ack was due, as a 500.
OBJECT_FIELDS = ("event", "view", "message", "channel", "user", "team", "container")


def _shape_problem(body: dict) -> str | None:
    """Why a parsed body cannot be one of Slack's payloads, or None."""
    for key in OBJECT_FIELDS:
        if body.get(key) is not None and not isinstance(body[key], dict):
            return f"'{key}' must be an object"
    for key in ("event", "view"):  # bolt routes on their type before any listener runs
        if key in body and not isinstance((body[key] or {}).get("type"), str):
            return f"'{key}.type' must be a string"
    actions = body.get("actions")
    if actions is not None and not (isinstance(actions, list) and all(isinstance(a, dict) for a in actions)):
        return "'actions' must be a list of objects"
    kind = body.get("type")
    if kind == "block_actions" and not (actions and all(isinstance(a.get("action_id"), str) for a in actions)):
        return "a block_actions payload needs actions, each with an 'action_id'"
    if kind in ("view_submission", "view_closed") and not isinstance(body.get("view"), dict):
        return f"a {kind} payload needs a 'view'"
    if "command" in body and not body.get("user_id"):
        return "a slash command needs 'user_id'"
    return None


def slack_request(body: bytes, headers, query: str = "") -> BoltRequest:
    """A verified body as bolt's request; BadPayload (400) when it is not the JSON or form data Slack sends."""
    try:
        # Bolt parses in the constructor and reads fields of what it parsed (enterprise,
        # authorizations, ...): any of these means the body is not a Slack payload.
        request = BoltRequest(body=body.decode("utf-8"), query=query, headers=dict(headers))
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError, LookupError, RecursionError):
        raise BadPayload("body is not a Slack payload (JSON or form data)") from None
    if not isinstance(request.body, dict):
        raise BadPayload("body is not a Slack payload (expected an object)")
    problem = _shape_problem(request.body)
    if problem:
        raise BadPayload(f"body is not a Slack payload: {problem}")
    return request


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
    signoff.register(app, runtime, queues)
    commands.register(app, runtime, queues)

    @app.error
    def listener_failed(error: Exception) -> None:
        # bolt's default logs the error's message and traceback; a click's or a message's error can quote a ticket.
        logged(log, error, "slack listener", level=logging.ERROR)

    return app
