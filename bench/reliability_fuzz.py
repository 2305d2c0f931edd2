"""Generated bad requests (hypothesis) against the three endpoints that take outside input; none may get a 5xx.

Bodies: random bytes, random JSON (deeply nested too), the endpoint's own shape with wrong
types, huge strings up to just past the size limit, form bodies. Every other request is signed
correctly, so the parsers behind the signature check are reached; the rest are unsigned, signed
with the wrong secret, stale, or carry unreadable signature headers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

import httpx

from bot import intake

MAX_BYTES = 256 * 1024  # TUESDAY_WEBHOOK_MAX_BYTES' default: huge bodies go up to just past it
SHAPES = {
    "/webhooks/generic": ("id", "text", "subject", "url", "requester"),
    "/webhooks/zendesk": ("type", "id", "detail", "ticket_id", "subject", "description", "url", "requester"),
    "/slack/events": ("type", "token", "team_id", "event", "challenge", "payload", "command", "text", "user_id"),
}
CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain", "application/octet-stream",
                 None)


@dataclass(frozen=True)
class Signer:
    """How one endpoint signs a body: header names and the signature and timestamp functions."""

    signature_header: str
    timestamp_header: str
    sign: Callable[[str, str, bytes], str]
    timestamp: Callable[[float], str]


def _unix(t: float) -> str:
    return str(int(t))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


SIGNERS = {
    "/webhooks/generic": Signer(intake.GENERIC_SIGNATURE, intake.GENERIC_TIMESTAMP, intake.generic_signature, _unix),
    "/webhooks/zendesk": Signer(intake.ZENDESK_SIGNATURE, intake.ZENDESK_TIMESTAMP, intake.zendesk_signature, _iso),
    "/slack/events": Signer(intake.SLACK_SIGNATURE, intake.SLACK_TIMESTAMP, intake.slack_signature, _unix),
}
WRONG_SIGNING = ("unsigned", "wrong-secret", "stale", "garbage-headers")


def strategies(endpoint: str):
    """The hypothesis strategy of (body, content type, wrong-signing mode) for one endpoint."""
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=64)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                          | st.dictionaries(st.text(max_size=16), inner, max_size=5), max_leaves=30)
    shaped = st.dictionaries(st.sampled_from(SHAPES[endpoint]), values, max_size=len(SHAPES[endpoint]))
    deep = st.tuples(st.integers(1, 100_000), st.sampled_from(["[", '{"a":', '{"text":['])).map(
        lambda t: (t[1] * t[0]).encode())
    huge = st.tuples(st.sampled_from(SHAPES[endpoint]), st.text(min_size=1, max_size=12),
                     st.integers(1_000, MAX_BYTES + 4_096)).map(
        lambda t: json.dumps({"id": "fuzz-huge", t[0]: (t[1] * (t[2] // len(t[1]) + 1))[: t[2]]}).encode())
    form = st.dictionaries(st.sampled_from(SHAPES[endpoint]) | st.text(max_size=12), st.text(max_size=200),
                           max_size=8).map(lambda d: urlencode(d).encode())
    slack_payload = shaped.map(lambda d: urlencode({"payload": json.dumps(d)}).encode())
    bodies = st.one_of(st.binary(max_size=4096), values.map(lambda v: json.dumps(v).encode()),
                       shaped.map(lambda d: json.dumps(d).encode()), deep, huge, form, slack_payload)
    return st.tuples(bodies, st.sampled_from(CONTENT_TYPES), st.sampled_from(WRONG_SIGNING))


def headers_for(signer: Signer, secret: str, body: bytes, content_type: str | None, mode: str) -> dict[str, str]:
    """Headers for one request: correctly signed (mode "signed") or one of WRONG_SIGNING."""
    now = time.time()
    headers = {"Content-Type": content_type} if content_type else {}
    if mode == "unsigned":
        return headers
    if mode == "garbage-headers":
        return {**headers, signer.signature_header: "v0=zz", signer.timestamp_header: "yesterday"}
    ts = signer.timestamp(now - 3600 if mode == "stale" else now)
    key = "not-the-secret" if mode == "wrong-secret" else secret
    return {**headers, signer.signature_header: signer.sign(key, ts, body), signer.timestamp_header: ts}


@dataclass
class FuzzResult:
    endpoint: str
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)  # 5xx or no answer, with the saved payload's path
    slowest_ms: float = 0.0

    def record(self, status: str, ms: float) -> None:
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.slowest_ms = max(self.slowest_ms, ms)

    def to_dict(self) -> dict:
        return {"endpoint": self.endpoint, "requests": self.requests, "statuses": dict(sorted(self.statuses.items())),
                "server_errors": len(self.failures), "slowest_ms": round(self.slowest_ms, 1),
                "failures": self.failures}


def _save(out: Path, endpoint: str, n: int, body: bytes, headers: dict, status: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"fuzz-{endpoint.strip('/').replace('/', '-')}-{n}"
    stem.with_suffix(".body").write_bytes(body)
    stem.with_suffix(".json").write_text(json.dumps({"endpoint": endpoint, "headers": headers, "status": status}))
    return str(stem.with_suffix(".body"))


def fuzz(url: str, endpoint: str, secret: str, *, count: int, out: Path) -> FuzzResult:
    """Send `count` generated requests to one endpoint; half signed correctly. Returns statuses and failures."""
    from hypothesis import HealthCheck, Phase, given, settings

    result, signer = FuzzResult(endpoint), SIGNERS[endpoint]
    client = httpx.Client(base_url=url, timeout=30.0)

    # Generate only: shrinking would re-send near-copies of a failure and skew the counts.
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategies(endpoint))
    def send(case):
        body, content_type, wrong = case
        mode = "signed" if result.requests % 2 == 0 else wrong
        headers = headers_for(signer, secret, body, content_type, mode)
        start = time.perf_counter()
        try:
            status = str(client.post(endpoint, content=body, headers=headers).status_code)
        except httpx.TransportError as exc:
            status = type(exc).__name__
        result.record(status, (time.perf_counter() - start) * 1000)
        if not status.isdigit() or status.startswith("5"):
            result.failures.append({"status": status, "mode": mode, "bytes": len(body),
                                    "saved": _save(out, endpoint, result.requests, body, headers, status)})

    try:
        send()
    finally:
        client.close()
    return result


def secrets_of(stack) -> dict[str, str]:
    """endpoint -> the secret its signatures use, from a running stack."""
    return {"/webhooks/generic": stack.generic_secret, "/webhooks/zendesk": stack.zendesk_secret,
            "/slack/events": stack.signing_secret}
