"""The "Approve promotion" button on a retrain report whose candidate waits for sign-off (managers only)."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.lifecycle.reports import APPROVE, report_message
from bot.lifecycle.signoff import SignOffRefused, approve
from bot.slack.listeners.payloads import message_of, reviewer
from bot.slack.roles import MANAGER, check_role
from bot.store.runs import PASSED, get_run
from inference.errors import TuesdayError

log = logging.getLogger(__name__)


def _tell(client: WebClient, channel: str | None, user_id: str, text: str) -> None:
    if channel and user_id:
        client.chat_postEphemeral(channel=channel, user=user_id, text=text)


def approve_promotion(ack: Ack, body: dict, action: dict, client: WebClient, runtime, queues) -> None:
    """Check the clicker is a manager, sign the candidate off, then show the outcome on the report."""
    ack()
    user = reviewer(body).user_id
    channel, ts = message_of(body)
    value = str(action.get("value") or "")
    if not value.isdigit():
        _tell(client, channel, user, ":warning: This button does not name a retrain run.")
        return
    try:
        check_role(MANAGER, client, runtime.settings, user)
        approve(runtime, int(value), by=f"slack:{user}", queues=queues)
    except SlackApiError as exc:
        log.warning("approve promotion: Slack said %s", exc.response.get("error"))
        _tell(client, channel, user, ":warning: Could not check your user groups with Slack; nothing changed.")
        return
    except TuesdayError as exc:
        _tell(client, channel, user, f":no_entry: Not approved: {exc}")
        if not isinstance(exc, SignOffRefused):
            return
    # The message shows what the run is now: promoted and by whom, or closed because production moved.
    run = get_run(runtime.sessions, int(value))
    if run is not None and run.status != PASSED and channel and ts:
        client.chat_update(channel=channel, ts=ts, **report_message(runtime, run.to_dict(), update=True))


def register(app: App, runtime, queues) -> None:
    app.action(APPROVE)(lambda ack, body, action, client: approve_promotion(ack, body, action, client, runtime,
                                                                            queues))
