"""Requests at the door: size limit, signature, timestamp window, then (for webhooks) a ticket from the JSON.

Pure functions and named errors; bot/web.py turns the errors into HTTP statuses.

Zendesk signs ``base64(HMAC-SHA256(secret, timestamp + raw_body))`` and sends it in
``X-Zendesk-Webhook-Signature``, the ISO-8601 timestamp in
``X-Zendesk-Webhook-Signature-Timestamp``. Two bodies are understood:

- the ticket-created event of an event-subscribed webhook::

    {"type": "zen:event-type:ticket.created", "id": "<event id>",
     "detail": {"id": "123", "subject": "...", "description": "...", "requester_id": "456"}}

  (events of any other type are acknowledged and ignored);
- the JSON body of a trigger-connected webhook::

    {"ticket_id": "{{ticket.id}}", "subject": "{{ticket.title}}",
     "description": "{{ticket.description}}", "requester": "..."}

The generic webhook is for any other system. It signs
``"sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + raw_body))`` into ``X-Tuesday-Signature``
with the unix-seconds timestamp in ``X-Tuesday-Timestamp``, and posts::

    {"id": "string or number, unique per ticket", "text": "the message",
     "subject": "optional", "requester": "optional"}

A "url" field is ignored: a link can carry a token or an email, so none is stored; messages link
to a ticket by its id (bot.helpdesk.adapters.ticket_link).

Slack signs ``"v0=" + hex(HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw_body))`` into
``X-Slack-Signature``; /slack/events checks it here before anything parses the body.

docs/webhooks.md has the same schemas with examples in curl and Python.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import accumulate

from inference.errors import TuesdayError

ZENDESK_SIGNATURE = "X-Zendesk-Webhook-Signature"
ZENDESK_TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
GENERIC_SIGNATURE = "X-Tuesday-Signature"
GENERIC_TIMESTAMP = "X-Tuesday-Timestamp"
SLACK_SIGNATURE = "X-Slack-Signature"
SLACK_TIMESTAMP = "X-Slack-Request-Timestamp"
SLACK_TOLERANCE_S = 300  # Slack's own five minutes (bolt checks the same window again)
ZENDESK_TICKET_CREATED = "zen:event-type:ticket.created"
MAX_ID_CHARS = 255  # the store's external_id column
MAX_JSON_DEPTH = 64  # a ticket body nests three or four levels


class IntakeError(TuesdayError):
    """A webhook delivery is refused."""


class NotConfigured(IntakeError):
    """No secret is set for this webhook, so no delivery can be verified."""


class BadSignature(IntakeError):
    """The signature or its timestamp header is missing, unreadable or wrong."""


class StaleRequest(IntakeError):
    """The signed timestamp is outside the tolerance window (a replay, or a clock far off)."""


class TooLarge(IntakeError):
    """The body is larger than the configured limit."""


class BadPayload(IntakeError):
    """The body is not JSON."""


class InvalidTicket(IntakeError):
    """The JSON lacks a required field or has one of the wrong type."""


class Busy(IntakeError):
    """As many tickets as TUESDAY_MASKING_IN_FLIGHT are being masked already: the sender retries shortly."""


@dataclass(frozen=True)
class IncomingTicket:
    """A ticket as a webhook describes it, before masking and storing."""

    source: str
    external_id: str
    text: str
    subject: str = ""
    requester: str | None = None


# -- size --------------------------------------------------------------------------------------

def check_declared_size(content_length: str | None, max_bytes: int) -> None:
    """Refuse early on the Content-Length header, before reading a byte of the body."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise BadPayload("Content-Length is not a number") from None
    if declared > max_bytes:
        raise TooLarge(f"body of {declared} bytes is over the limit of {max_bytes}")


def check_size(body: bytes, max_bytes: int) -> None:
    """Refuse on the bytes actually received (a chunked body declares no length)."""
    if len(body) > max_bytes:
        raise TooLarge(f"body is over the limit of {max_bytes} bytes")


# -- signatures --------------------------------------------------------------------------------

def _check_window(signed_at: float, now: float, tolerance_s: float) -> None:
    if abs(now - signed_at) > tolerance_s:
        raise StaleRequest(f"timestamp is {abs(now - signed_at):.0f} s from now (tolerance {tolerance_s:.0f} s)")


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value Zendesk puts in X-Zendesk-Webhook-Signature."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def parse_zendesk_timestamp(value: str) -> float:
    """Unix seconds of an ISO-8601 timestamp such as 2026-11-30T08:00:00Z (no zone means UTC)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadSignature(f"unreadable {ZENDESK_TIMESTAMP}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def verify_zendesk(secret: str, signature: str | None, timestamp: str | None, body: bytes, *,
                   now: float, tolerance_s: float) -> None:
    """Raise unless the body was signed with the secret within tolerance_s of now."""
    if not secret:
        raise NotConfigured("the Zendesk webhook secret is not set")
    if not signature or not timestamp:
        raise BadSignature(f"missing {ZENDESK_SIGNATURE} or {ZENDESK_TIMESTAMP}")
    if not hmac.compare_digest(zendesk_signature(secret, timestamp, body).encode(), signature.strip().encode()):
        raise BadSignature("signature does not match")
    _check_window(parse_zendesk_timestamp(timestamp), now, tolerance_s)


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value expected in X-Tuesday-Signature."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_generic(secret: str, signature: str | None, timestamp: str | None, body: bytes, *,
                   now: float, tolerance_s: float) -> None:
    """Raise unless the body was signed with the secret within tolerance_s of now."""
    if not secret:
        raise NotConfigured("the generic webhook secret is not set")
    if not signature or not timestamp:
        raise BadSignature(f"missing {GENERIC_SIGNATURE} or {GENERIC_TIMESTAMP}")
    if not hmac.compare_digest(generic_signature(secret, timestamp, body).encode(), signature.strip().encode()):
        raise BadSignature("signature does not match")
    try:
        signed_at = float(int(timestamp.strip()))
    except ValueError:
        raise BadSignature(f"{GENERIC_TIMESTAMP} must be unix seconds") from None
    _check_window(signed_at, now, tolerance_s)


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value Slack puts in X-Slack-Signature: v0= and the hex HMAC-SHA256 of "v0:<timestamp>:<body>"."""
    mac = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return "v0=" + mac.hexdigest()


def verify_slack(secret: str, signature: str | None, timestamp: str | None, body: bytes, *,
                 now: float, tolerance_s: float = SLACK_TOLERANCE_S) -> None:
    """Raise unless Slack signed the body with the app's signing secret within tolerance_s of now."""
    if not secret:
        raise NotConfigured("the Slack signing secret is not set")
    if not signature or not timestamp:
        raise BadSignature(f"missing {SLACK_SIGNATURE} or {SLACK_TIMESTAMP}")
    # Compared as bytes: a header that is not ASCII is a wrong signature, not an error.
    if not hmac.compare_digest(slack_signature(secret, timestamp, body).encode(), signature.strip().encode()):
        raise BadSignature("signature does not match")
    try:
        signed_at = float(int(timestamp.strip()))
    except ValueError:
        raise BadSignature(f"{SLACK_TIMESTAMP} must be unix seconds") from None
    _check_window(signed_at, now, tolerance_s)


# -- payloads ----------------------------------------------------------------------------------

# JSON strings (closed or running to the end), skipped when counting brackets; possessive, so one pass.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.?)*+"?', re.DOTALL)
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))


def json_depth(body: bytes) -> int:
    """How deeply the body's arrays and objects nest, in linear time and without recursion.

    >>> json_depth(b'{"a": [1, {"b": "[[["}]}')
    3
    """
    steps = _JSON_STRING.sub(b"", body).translate(_BRACKETS, _NOT_BRACKETS)
    # Each bracket is now the signed byte +1 or -1; the running sum is the depth.
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def _json_object(body: bytes) -> dict:
    # json.loads recurses once per level: a deep enough body raises RecursionError (or, with a
    # raised recursion limit, overflows the C stack), so the depth is checked first.
    if json_depth(body) > MAX_JSON_DEPTH:
        raise BadPayload(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadPayload("body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidTicket("expected a JSON object")
    return data


def _id(value, field: str) -> str:
    # Helpdesks send ids as numbers or strings; bool is an int in Python but never an id.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidTicket(f"'{field}' is required (a string or a number)")
    text = str(value).strip()
    if not text or len(text) > MAX_ID_CHARS:
        raise InvalidTicket(f"'{field}' must be 1 to {MAX_ID_CHARS} characters")
    return text


def _text(data: dict, field: str) -> str:
    value = data.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidTicket(f"'{field}' must be a string")
    return value.strip()


def _requester(data: dict, field: str) -> str | None:
    value = data.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidTicket(f"'{field}' must be a string or a number")
    return str(value)


def _ticket(source: str, external_id: str, subject: str, text: str, requester: str | None,
            text_field: str) -> IncomingTicket:
    # A ticket with only a subject is still worth triaging; one with neither is not a ticket.
    if not text and not subject:
        raise InvalidTicket(f"'{text_field}' (or 'subject') is required and must not be empty")
    return IncomingTicket(source, external_id, text or subject, subject, requester)


def parse_zendesk(body: bytes) -> IncomingTicket | None:
    """A ticket from a Zendesk ticket-created event or trigger body; None for other event types."""
    data = _json_object(body)
    if "type" in data:
        if data["type"] != ZENDESK_TICKET_CREATED:
            return None  # subscribed to more events than we use: acknowledge, do nothing
        detail = data.get("detail")
        if not isinstance(detail, dict):
            raise InvalidTicket("'detail' must be an object")
        return _ticket("zendesk", _id(detail.get("id"), "detail.id"), _text(detail, "subject"),
                       _text(detail, "description"), _requester(detail, "requester_id"),
                       "detail.description")
    if "ticket_id" not in data:
        raise InvalidTicket(f"expected a {ZENDESK_TICKET_CREATED} event or a trigger body with 'ticket_id'")
    return _ticket("zendesk", _id(data.get("ticket_id"), "ticket_id"), _text(data, "subject"),
                   _text(data, "description"), _requester(data, "requester"), "description")


def parse_generic(body: bytes) -> IncomingTicket:
    """A ticket from the generic webhook's JSON (see the module docstring)."""
    data = _json_object(body)
    return _ticket("generic", _id(data.get("id"), "id"), _text(data, "subject"), _text(data, "text"),
                   _requester(data, "requester"), "text")
