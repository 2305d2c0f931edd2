"""Write-back: a reviewer's decision goes to the helpdesk the ticket came from, as a tag and an internal note."""

from __future__ import annotations

import logging
import re
from typing import Protocol

import httpx

from bot.settings import Settings
from bot.store import Feedback, Suggestion, Ticket, make_session_factory
from inference.errors import TuesdayError

log = logging.getLogger(__name__)

WRITE_BACK_JOB = "bot.helpdesk.write_back_job"
TAG_PREFIX = "tuesday_"
DONE = {"accept": "accepted", "change": "changed to this label",
        "reject": "rejected the suggestion; corrected to this label", "handoff": "handed off to a human"}


class HelpdeskError(TuesdayError):
    """The helpdesk refused a write-back or could not be reached (the queued job fails and is retried)."""


class HelpdeskAdapter(Protocol):
    """One helpdesk: how a decided label is written back onto one of its tickets."""

    def write_back(self, ticket: Ticket, label: str, reason: str) -> None: ...


def label_tag(label: str) -> str:
    """The tag a label becomes: Zendesk tags are lower case and a space would split one into two."""
    return TAG_PREFIX + (re.sub(r"[^a-z0-9_\-]+", "_", label.lower()).strip("_") or "label")


class ZendeskAdapter:
    """Zendesk's Tickets API with an agent's API token (basic auth `<email>/token:<api_token>`)."""

    def __init__(self, subdomain_url: str, email: str, api_token: str, http: httpx.Client):
        self.base = subdomain_url.rstrip("/")
        self.auth = httpx.BasicAuth(f"{email}/token", api_token)
        self.http = http

    def write_back(self, ticket: Ticket, label: str, reason: str) -> None:
        """Add the label's tag (existing tags stay) and an internal note saying who decided and why."""
        if not ticket.external_id.isdigit():
            raise HelpdeskError(f"'{ticket.external_id}' is not a Zendesk ticket id")
        path = f"/api/v2/tickets/{ticket.external_id}"
        # PUT on .../tags adds to the ticket's tags; POST would replace them all.
        self._put(f"{path}/tags.json", {"tags": [label_tag(label)]})
        note = f"Tuesday triage label: {label}\n{reason}".strip()
        self._put(f"{path}.json", {"ticket": {"comment": {"body": note, "public": False}}})

    def _put(self, path: str, body: dict) -> None:
        try:
            response = self.http.put(self.base + path, json=body, auth=self.auth)
        except httpx.HTTPError as exc:
            raise HelpdeskError(f"Zendesk unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise HelpdeskError(f"Zendesk answered {response.status_code} to PUT {path}: {response.text[:200]}")


def adapter_for(settings: Settings, source: str, http: httpx.Client) -> HelpdeskAdapter | None:
    """The adapter for a ticket's source, or None when that helpdesk is not configured for write-back."""
    if source == "zendesk" and settings.zendesk_url:
        return ZendeskAdapter(settings.zendesk_url, settings.zendesk_email, settings.zendesk_api_token, http)
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


def write_back_job(feedback_id: int) -> dict:
    """Queued job: write one feedback row's label back to its ticket's helpdesk; returns a JSON-safe summary."""
    settings = Settings()
    sessions = make_session_factory(settings.store_url)
    try:
        with sessions() as session:
            feedback = session.get(Feedback, int(feedback_id))
            if feedback is None:
                raise HelpdeskError(f"no feedback {feedback_id} in the store")
            ticket = session.get(Ticket, feedback.ticket_id)
            suggestion = session.get(Suggestion, feedback.suggestion_id)
    finally:
        sessions.kw["bind"].dispose()  # a worker runs many jobs; leave no pooled connection behind
    summary = {"feedback_id": feedback.id, "ticket_id": ticket.id, "label": feedback.label, "written": False}
    with httpx.Client(timeout=15) as http:
        adapter = adapter_for(settings, ticket.source, http)
        if adapter is None:
            return {**summary, "why": f"no write-back configured for {ticket.source} tickets"}
        adapter.write_back(ticket, feedback.label, decision_note(feedback, suggestion))
    log.info("feedback %s: wrote %s back to %s ticket %s", feedback.id, feedback.label, ticket.source,
             ticket.external_id)
    return {**summary, "written": True}
