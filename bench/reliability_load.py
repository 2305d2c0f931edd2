"""Signed webhooks at a steady rate, open loop: each request leaves at its scheduled time whatever the server does.

A closed-loop sender (send, wait, send) slows down with the server and hides its stalls; here
request i is due at i / rate seconds and its latency is counted from then, so a late sender or a
stalled server both show in the percentiles. Faults (kill Redis, restart PostgreSQL) run at
fixed offsets in a thread beside the load.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx
import numpy as np

from bot.intake import GENERIC_SIGNATURE, GENERIC_TIMESTAMP, generic_signature


@dataclass
class Attempt:
    """One HTTP request of a delivery: when it left (s after the start), how long it took, what came back."""

    sent_s: float
    ms: float
    status: str  # the HTTP status, or the transport error's name ("ConnectError", "ReadTimeout", ...)


@dataclass
class Delivery:
    """One ticket the helpdesk delivers: due at `due_s`, tried until acknowledged (or given up)."""

    ticket: str
    due_s: float
    attempts: list[Attempt] = field(default_factory=list)
    acked_ms: float | None = None  # from due to the 2xx, retries and back-off included

    @property
    def acked(self) -> bool:
        return self.acked_ms is not None


@dataclass(frozen=True)
class Backoff:
    """The sender's retries: exponential with jitter, the same ticket id each time, freshly signed."""

    first_s: float = 0.25
    cap_s: float = 4.0
    give_up_s: float = 300.0  # a helpdesk that keeps a ticket this long; none was given up in our runs

    def delay(self, tries: int) -> float:
        # Jitter spreads the retries of everyone refused in the same second over the next one.
        return min(self.cap_s, self.first_s * 2 ** tries) * random.uniform(0.5, 1.0)


def retryable(status: str) -> bool:
    """What a helpdesk sends again: any 5xx, 429, or no answer at all; a 4xx is final."""
    return not status.isdigit() or status == "429" or status.startswith("5")


@dataclass
class Fault:
    """Something done to the services at a fixed offset into the load (run in a thread)."""

    at_s: float
    name: str
    action: Callable[[], None]
    started_s: float | None = None
    done_s: float | None = None


@dataclass
class LoadRun:
    rate: float
    seconds: float
    deliveries: list[Delivery]
    faults: list[Fault]
    wall_s: float
    sender_cpu_s: float  # this process's CPU time: the sender shares the machine's cores with the server
    server_cpu_s: float | None = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GenericSender:
    """Tickets through POST /webhooks/generic, signed as the generic webhook expects."""

    path = "/webhooks/generic"

    def __init__(self, secret: str, texts: list[str]):
        self.secret, self.texts = secret, texts

    def request(self, ticket: str, n: int) -> tuple[bytes, dict[str, str]]:
        """Body and headers for one attempt (a new timestamp and signature each time)."""
        text = self.texts[n % len(self.texts)]
        body = json.dumps({"id": ticket, "subject": text[:60], "text": text}).encode()
        ts = str(int(time.time()))
        return body, {"Content-Type": "application/json", GENERIC_TIMESTAMP: ts,
                      GENERIC_SIGNATURE: generic_signature(self.secret, ts, body)}


async def _attempt(client: httpx.AsyncClient, sender: GenericSender, ticket: str, n: int, t0: float) -> Attempt:
    body, headers = sender.request(ticket, n)
    start = time.perf_counter()
    try:
        status = str((await client.post(sender.path, content=body, headers=headers)).status_code)
    except httpx.TransportError as exc:
        status = type(exc).__name__
    return Attempt(start - t0, (time.perf_counter() - start) * 1000, status)


async def _deliver(client, sender: GenericSender, delivery: Delivery, n: int, t0: float, backoff: Backoff | None):
    tries = 0
    while True:
        attempt = await _attempt(client, sender, delivery.ticket, n, t0)
        delivery.attempts.append(attempt)
        waited_s = attempt.sent_s + attempt.ms / 1000 - delivery.due_s
        if attempt.status.startswith("2"):
            delivery.acked_ms = waited_s * 1000
            return
        if backoff is None or not retryable(attempt.status) or waited_s > backoff.give_up_s:
            return
        await asyncio.sleep(backoff.delay(tries))
        tries += 1


async def _fault(fault: Fault, t0: float) -> None:
    await asyncio.sleep(max(0.0, t0 + fault.at_s - time.perf_counter()))
    fault.started_s = time.perf_counter() - t0
    await asyncio.get_running_loop().run_in_executor(None, fault.action)
    fault.done_s = time.perf_counter() - t0


async def _open_loop(url: str, sender: GenericSender, tickets: list[str], rate: float, backoff: Backoff | None,
                     faults: list[Fault], connections: int) -> list[Delivery]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        t0 = time.perf_counter()
        side = [asyncio.create_task(_fault(f, t0)) for f in faults]
        deliveries, tasks = [], []
        for n, ticket in enumerate(tickets):
            delivery = Delivery(ticket, n / rate)
            await asyncio.sleep(max(0.0, t0 + delivery.due_s - time.perf_counter()))
            deliveries.append(delivery)
            tasks.append(asyncio.create_task(_deliver(client, sender, delivery, n, t0, backoff)))
        await asyncio.gather(*tasks, *side)
    return deliveries


def run_load(url: str, sender: GenericSender, *, prefix: str, rate: float, seconds: float,
             backoff: Backoff | None = None, faults: list[Fault] = (), connections: int = 256,
             server_pid: int | None = None) -> LoadRun:
    """Send rate * seconds tickets named prefix-0, prefix-1, ... at a steady rate; returns every attempt."""
    tickets = [f"{prefix}-{n}" for n in range(int(rate * seconds))]
    server_before = cpu_seconds(server_pid) if server_pid else None
    start, cpu = time.perf_counter(), time.process_time()
    deliveries = asyncio.run(_open_loop(url, sender, tickets, rate, backoff, list(faults), connections))
    wall, sender_cpu = time.perf_counter() - start, time.process_time() - cpu
    server_cpu = cpu_seconds(server_pid) - server_before if server_pid else None
    return LoadRun(rate, seconds, deliveries, list(faults), wall, sender_cpu, server_cpu)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1),
            "max": round(float(max(values)), 1)}


def timeline(run: LoadRun) -> list[dict]:
    """Per second of due time: requests due, first-attempt ack p99 (ms) and the statuses of first attempts."""
    seconds: dict[int, list[tuple[float, str]]] = {}
    for d in run.deliveries:
        if d.attempts:
            a = d.attempts[0]
            seconds.setdefault(int(d.due_s), []).append(((a.sent_s - d.due_s) * 1000 + a.ms, a.status))
    return [{"second": t, "due": len(rows), "ack_p99_ms": _percentiles([ms for ms, _ in rows])["p99"],
             "statuses": dict(Counter(status for _, status in rows))} for t, rows in sorted(seconds.items())]


def summarize(run: LoadRun) -> dict:
    """Latency percentiles (ms), status counts and what the sender achieved."""
    firsts = [d.attempts[0] for d in run.deliveries if d.attempts]
    statuses = Counter(a.status for d in run.deliveries for a in d.attempts)
    last_sent = max((a.sent_s for a in firsts), default=0.0)
    return {
        "rate": run.rate, "seconds": run.seconds, "sent": len(run.deliveries),
        "achieved_rate": round(len(firsts) / last_sent, 1) if last_sent else None,
        # First attempts, timed from when each was due: the ack a helpdesk waits for.
        "ack_ms": _percentiles([(a.sent_s - d.due_s) * 1000 + a.ms for d, a in zip(run.deliveries, firsts)
                                if a.status.isdigit()]),
        # How late the sender itself was; a large value means the client, not the server, fell behind.
        "sender_lag_ms": _percentiles([(a.sent_s - d.due_s) * 1000 for d, a in zip(run.deliveries, firsts)]),
        "until_acked_ms": _percentiles([d.acked_ms for d in run.deliveries if d.acked]),
        "statuses": dict(sorted(statuses.items())),
        "attempts": sum(len(d.attempts) for d in run.deliveries),
        "retried": sum(1 for d in run.deliveries if len(d.attempts) > 1),
        "acked": sum(1 for d in run.deliveries if d.acked),
        "faults": [{"name": f.name, "at_s": f.at_s, "started_s": _round(f.started_s), "done_s": _round(f.done_s)}
                   for f in run.faults],
        "wall_s": round(run.wall_s, 1),
        # CPU cores busy on average: the sender (this process) and `tuesday serve`, out of os.cpu_count().
        "sender_cores": round(run.sender_cpu_s / run.wall_s, 2),
        "server_cores": None if run.server_cpu_s is None else round(run.server_cpu_s / run.wall_s, 2),
        "timeline": timeline(run),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
