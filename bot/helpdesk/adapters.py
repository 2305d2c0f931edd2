"""Helpdesk adapters: a reviewer's decision goes to the helpdesk the ticket came from, as a tag (or a custom
field) and an internal note; each task (field) of the deployment is written where TUESDAY_HELPDESK_FIELDS says."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import quote

import httpx

from bot.settings import Settings, field_map
from bot.store.feedback import Feedback
from bot.store.tickets import Suggestion, Ticket
from inference.errors import TuesdayError

TAG_PREFIX = "tuesday_"
DONE = {"accept": "accepted", "change": "changed to this label",
        "reject": "rejected the suggestion; corrected to this label", "handoff": "handed off to a human"}
# Answers that may succeed later: a timeout, a conflicting concurrent update, and credentials an
# admin can still fix while the write-back waits. Any other 4xx is the request itself being wrong.
RETRYABLE_4XX = {401, 403, 408, 409, 423, 429}


def _error_name(response) -> str:
    """': RecordInvalid' from Zendesk's {"error": "RecordInvalid", ...}, when it is a plain short name; else ''."""
    try:
        name = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {name}" if isinstance(name, str) and name.isascii() and name.isidentifier() and len(name) <= 64 else ""


class HelpdeskError(TuesdayError):
    """The helpdesk could not take a write-back now (unreachable, 5xx, 429): it is tried again later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds the helpdesk asked us to wait (Retry-After), if it said


class HelpdeskRefused(HelpdeskError):
    """The helpdesk refused the write-back for good (e.g. 404, 422): trying again cannot help."""


class HelpdeskAdapter(Protocol):
    """One helpdesk: how a decided label of a task is written back onto one of its tickets."""

    def write_back(self, ticket: Ticket, label: str, reason: str, task: str | None = None) -> None: ...


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_\-]+", "_", text.lower()).strip("_")


def label_tag(label: str, prefix: str = TAG_PREFIX) -> str:
    """The tag a label becomes: Zendesk tags are lower case and a space would split one into two."""
    return prefix + (_slug(label) or "label")


def field_target(fields: str, task: str | None, routing: str | None) -> tuple[str, str]:
    """("tag", prefix) or ("field", custom field id): where a task's label goes (TUESDAY_HELPDESK_FIELDS)."""
    mapped = field_map(fields).get(task or "")
    if mapped:
        return mapped
    return ("tag", TAG_PREFIX if task is None or task == routing else f"{TAG_PREFIX}{_slug(task)}_")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date); None when absent or unreadable.

    >>> parse_retry_after("2"), parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", datetime(2015, 10, 21, 7, 27,
    ...     tzinfo=timezone.utc))
    (2.0, 60.0)
    """
    value = (value or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class ZendeskAdapter:
    """Zendesk's Tickets API with an agent's API token (basic auth `<email>/token:<api_token>`)."""

    def __init__(self, subdomain_url: str, email: str, api_token: str, http: httpx.Client, *, fields: str = "",
                 routing: str | None = None):
        self.base = subdomain_url.rstrip("/")
        self.auth = httpx.BasicAuth(f"{email}/token", api_token)
        self.http = http
        self.fields, self.routing = fields, routing  # where each task's label goes; which task routes

    def write_back(self, ticket: Ticket, label: str, reason: str, task: str | None = None) -> None:
        """Write the label where its task goes (a tag, existing tags kept; or a custom field) and an internal note
        saying who decided and why."""
        if not ticket.external_id.isdigit():
            raise HelpdeskRefused(f"'{ticket.external_id}' is not a Zendesk ticket id")
        path = f"/api/v2/tickets/{ticket.external_id}"
        kind, value = field_target(self.fields, task, self.routing)
        if kind == "field":  # setting a field to the same value again is as harmless as adding a tag again
            self._put(f"{path}.json", {"ticket": {"custom_fields": [{"id": int(value), "value": label}]}})
        else:
            # PUT on .../tags adds to the ticket's tags; POST would replace them all. Adding is also
            # what makes a repeated attempt harmless for the tag.
            self._put(f"{path}/tags.json", {"tags": [label_tag(label, value)]})
        field = "label" if task is None or task == self.routing else task
        note = f"Tuesday triage {field}: {label}\n{reason}".strip()
        self._put(f"{path}.json", {"ticket": {"comment": {"body": note, "public": False}}})

    def _put(self, path: str, body: dict) -> None:
        try:
            response = self.http.put(self.base + path, json=body, auth=self.auth)
        except httpx.HTTPError as exc:
            raise HelpdeskError(f"Zendesk unreachable ({type(exc).__name__})") from exc
        if response.status_code < 300:
            return
        # Its error's name only: the body may quote the note it refused (an agent's reason), and this text is stored
        # (the outbox's last_error), logged and shown by `tuesday` (bot.error_ids: our messages quote no one's text).
        message = f"Zendesk answered {response.status_code} to PUT {path}" + _error_name(response)
        if response.status_code in (429, 503):
            raise HelpdeskError(message, parse_retry_after(response.headers.get("Retry-After")))
        if response.status_code >= 500 or response.status_code in RETRYABLE_4XX:
            raise HelpdeskError(message)
        raise HelpdeskRefused(message)


def writes_back(settings: Settings, source: str) -> bool:
    """Whether tickets from this source get their decided label written back."""
    return source == "zendesk" and bool(settings.zendesk_url)


def ticket_link(settings: Settings, source: str, external_id: str) -> str | None:
    """Where a person opens the ticket, built from its id (no URL is stored: one can carry a token).

    >>> ticket_link(Settings(zendesk_url="https://acme.zendesk.com"), "zendesk", "5158")
    'https://acme.zendesk.com/agent/tickets/5158'
    """
    if source == "zendesk" and settings.zendesk_url:
        return f"{settings.zendesk_url.rstrip('/')}/agent/tickets/{quote(external_id, safe='')}"
    if source == "generic" and settings.generic_ticket_url:
        return settings.generic_ticket_url.replace("{id}", quote(external_id, safe=""))
    if source == "slack" and ":" in external_id:  # bot.slack.listeners.payloads.SLACK_SOURCE, keyed "<channel>:<ts>"
        channel, ts = external_id.split(":", 1)
        return f"https://slack.com/archives/{quote(channel, safe='')}/p{quote(ts.replace('.', ''), safe='')}"
    return None


def adapter_for(settings: Settings, source: str, http: httpx.Client) -> HelpdeskAdapter | None:
    """The adapter for a ticket's source, or None when that helpdesk is not configured for write-back."""
    from inference.task import demo_task_path, load_tasks

    if writes_back(settings, source):
        tasks = load_tasks(settings.task_file or demo_task_path())
        unknown = sorted(set(field_map(settings.helpdesk_fields)) - set(tasks.names))
        if unknown:  # a mistyped task would silently land in a tag: an error an admin can fix, retried meanwhile
            raise HelpdeskError(f"TUESDAY_HELPDESK_FIELDS names {', '.join(unknown)}, not a task of this deployment "
                                f"({', '.join(tasks.names)})")
        routing = tasks.routing_name
        return ZendeskAdapter(settings.zendesk_url, settings.zendesk_email, settings.zendesk_api_token, http,
                              fields=settings.helpdesk_fields, routing=routing)
    return None


def decision_note(feedback: Feedback, suggestion: Suggestion) -> str:
    """The internal note's explanation: who decided what in Slack, against what the model said."""
    who = feedback.user_name or feedback.user_id
    suggested = (f"Tuesday suggested {suggestion.label} ({100 * suggestion.confidence:.0f}%, model "
                 f"{suggestion.model_version or 'unknown'})." if suggestion.label else "Tuesday was unsure.")
    lines = [f"{who} {DONE.get(feedback.action, feedback.action)} in Slack. {suggested}"]
    if feedback.why:
        lines.append(f"Why: {feedback.why}")
    return "\n".join(lines)
