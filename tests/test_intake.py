"""Webhook verification and parsing, as pure functions: signatures built the way each sender builds them."""

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone

import pytest

from bot import intake

SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
NOW = datetime(2026, 11, 30, 8, 0, 0, tzinfo=timezone.utc).timestamp()
TS = "2026-11-30T08:00:00Z"


def zendesk_sign(secret: str, timestamp: str, body: bytes) -> str:
    """What Zendesk sends: base64(HMAC-SHA256(secret, timestamp + body)), written independently of bot/."""
    return base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()


def generic_sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


EVENT = {
    "type": "zen:event-type:ticket.created", "id": "cbe4028c-7239-495d-b020-f22348516046",
    "account_id": 12345, "subject": "zen:ticket:5158", "time": "2026-11-30T07:59:59.5Z",
    "detail": {"id": "5158", "subject": "Where is my claim?", "description": "Filed last week, claim 4471. Any news?",
               "requester_id": "8447388090494", "status": "NEW", "tags": []},
}


def test_zendesk_signature_matches_zendesks_recipe():
    body = json.dumps(EVENT).encode()
    assert intake.zendesk_signature(SECRET, TS, body) == zendesk_sign(SECRET, TS, body)
    intake.verify_zendesk(SECRET, zendesk_sign(SECRET, TS, body), TS, body, now=NOW, tolerance_s=300)


@pytest.mark.parametrize("change", ["secret", "body", "timestamp", "missing"])
def test_zendesk_bad_signatures_are_refused(change):
    body = json.dumps(EVENT).encode()
    signature = zendesk_sign("other secret" if change == "secret" else SECRET, TS, body)
    if change == "body":
        body = body.replace(b"5158", b"5159")
    ts = "2026-11-30T08:00:01Z" if change == "timestamp" else TS
    with pytest.raises(intake.BadSignature):
        intake.verify_zendesk(SECRET, None if change == "missing" else signature, ts, body, now=NOW, tolerance_s=300)


@pytest.mark.parametrize("offset, stale", [(-301, True), (301, True), (86400, True), (-299, False), (299, False)])
def test_zendesk_timestamp_window(offset, stale):
    body = b"{}"
    verify = lambda: intake.verify_zendesk(SECRET, zendesk_sign(SECRET, TS, body), TS, body,  # noqa: E731
                                           now=NOW + offset, tolerance_s=300)
    if stale:
        with pytest.raises(intake.StaleRequest):
            verify()
    else:
        verify()


def test_zendesk_unreadable_timestamp_and_missing_secret():
    body = b"{}"
    with pytest.raises(intake.BadSignature):
        intake.verify_zendesk(SECRET, zendesk_sign(SECRET, "yesterday", body), "yesterday", body,
                              now=NOW, tolerance_s=300)
    with pytest.raises(intake.NotConfigured):
        intake.verify_zendesk("", zendesk_sign("", TS, body), TS, body, now=NOW, tolerance_s=300)


def test_generic_signature_and_window():
    body = b'{"id": 1, "text": "hi"}'
    ts = str(int(NOW))
    assert intake.generic_signature(SECRET, ts, body) == generic_sign(SECRET, ts, body)
    intake.verify_generic(SECRET, generic_sign(SECRET, ts, body), ts, body, now=NOW + 299, tolerance_s=300)
    with pytest.raises(intake.StaleRequest):
        intake.verify_generic(SECRET, generic_sign(SECRET, ts, body), ts, body, now=NOW + 301, tolerance_s=300)
    with pytest.raises(intake.BadSignature):
        intake.verify_generic(SECRET, generic_sign(SECRET, ts, body + b" "), ts, body, now=NOW, tolerance_s=300)
    with pytest.raises(intake.BadSignature):  # signed, but not unix seconds
        intake.verify_generic(SECRET, generic_sign(SECRET, TS, body), TS, body, now=NOW, tolerance_s=300)
    with pytest.raises(intake.BadSignature):
        intake.verify_generic(SECRET, None, ts, body, now=NOW, tolerance_s=300)
    with pytest.raises(intake.NotConfigured):
        intake.verify_generic("", "sha256=00", ts, body, now=NOW, tolerance_s=300)


def test_sizes():
    intake.check_declared_size(None, 100)
    intake.check_declared_size("100", 100)
    intake.check_size(b"x" * 100, 100)
    with pytest.raises(intake.TooLarge):
        intake.check_declared_size("101", 100)
    with pytest.raises(intake.TooLarge):
        intake.check_size(b"x" * 101, 100)
    with pytest.raises(intake.BadPayload):
        intake.check_declared_size("lots", 100)


def test_parse_zendesk_event_and_trigger_bodies():
    ticket = intake.parse_zendesk(json.dumps(EVENT).encode())
    assert ticket == intake.IncomingTicket("zendesk", "5158", "Filed last week, claim 4471. Any news?",
                                           "Where is my claim?", "8447388090494")
    trigger = {"ticket_id": 5158, "subject": "Where is my claim?", "description": "Any news?",
               "url": "https://acme.zendesk.com/agent/tickets/5158", "requester": "j.doe@example.com"}
    ticket = intake.parse_zendesk(json.dumps(trigger).encode())
    assert (ticket.external_id, ticket.requester) == ("5158", "j.doe@example.com")
    assert not hasattr(ticket, "url")  # a link can carry a token: messages build one from the id
    # a ticket with a subject only is still triaged, on its subject
    assert intake.parse_zendesk(b'{"ticket_id": "9", "subject": "Cancel my policy"}').text == "Cancel my policy"


def test_other_zendesk_events_are_ignored():
    assert intake.parse_zendesk(json.dumps({**EVENT, "type": "zen:event-type:ticket.comment_added"}).encode()) is None


@pytest.mark.parametrize("body, error", [
    (b"not json", intake.BadPayload),
    (b"\xff\xfe", intake.BadPayload),
    (b"[1, 2]", intake.InvalidTicket),
    (b'{"subject": "no id"}', intake.InvalidTicket),
    (b'{"ticket_id": "", "description": "empty id"}', intake.InvalidTicket),
    (b'{"ticket_id": true, "description": "bool id"}', intake.InvalidTicket),
    (b'{"ticket_id": "1", "description": "", "subject": ""}', intake.InvalidTicket),
    (b'{"ticket_id": "1", "description": 5}', intake.InvalidTicket),
    (b'{"type": "zen:event-type:ticket.created", "detail": "5158"}', intake.InvalidTicket),
    (b'{"type": "zen:event-type:ticket.created", "detail": {"subject": "no id"}}', intake.InvalidTicket),
])
def test_malformed_zendesk_bodies(body, error):
    with pytest.raises(error):
        intake.parse_zendesk(body)


def test_parse_generic():
    ticket = intake.parse_generic(b'{"id": 42, "text": "  my card was charged twice  ", "url": "https://x.test/42"}')
    assert ticket == intake.IncomingTicket("generic", "42", "my card was charged twice", "", None)  # url ignored
    with pytest.raises(intake.InvalidTicket):
        intake.parse_generic(b'{"id": 42}')
    with pytest.raises(intake.InvalidTicket):
        intake.parse_generic(json.dumps({"id": "x" * 256, "text": "long id"}).encode())
    with pytest.raises(intake.BadPayload):
        intake.parse_generic(b"{'id': 1}")


def test_messages_link_a_ticket_by_its_id_and_the_settings():
    from bot.helpdesk.adapters import ticket_link
    from bot.settings import Settings

    settings = Settings(zendesk_url="https://acme.zendesk.com/", generic_ticket_url="https://desk.example/t/{id}")
    assert ticket_link(settings, "zendesk", "5158") == "https://acme.zendesk.com/agent/tickets/5158"
    assert ticket_link(settings, "generic", "a/b 7") == "https://desk.example/t/a%2Fb%207"
    assert ticket_link(settings, "slack", "C0INTAKE:1764489700.000200") == (
        "https://slack.com/archives/C0INTAKE/p1764489700000200")
    assert ticket_link(Settings(), "zendesk", "5158") is None and ticket_link(Settings(), "generic", "7") is None
