"""What the measures cost: 100,000 tickets, their suggestions and 50,000 clicks in PostgreSQL.

    python -m bench.monitor_load [--tickets 100000] [--clicks 50000] [--repeat 5] [--json] [--keep]

Creates a fresh database (tuesday_bench_monitor on the local PostgreSQL, user postgres), brings it to
the schema's head, fills it by COPY with tickets spread over 30 days (one suggestion each, two model
versions, realistic labels, routings, latencies and evidence), clicks on about half of them (a tenth
clicked twice), then times each measure of bot.monitor.measures and, through the FastAPI app,
GET /metrics and the four dashboard pages. Prints the Markdown table quoted in docs/monitoring.md,
with the load average before and after (other work on the machine shows there). Drops the database
at the end unless --keep.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

DB = "tuesday_bench_monitor"
SERVER = dict(host="127.0.0.1", port=5432, user="postgres")
URL = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DB}"
DAYS = 30
LABEL_WEIGHTS = {"claim_status": 30, "new_claim": 15, "document_request": 15, "billing_dispute": 15,
                 "policy_change": 12, "agent_escalation": 6, "hand_off": 7}
WORDS = {
    "claim_status": "claim adjuster payment status update inspection settlement estimate repair",
    "new_claim": "accident collision damage report windshield storm flooded stolen towed",
    "document_request": "document form certificate proof declaration copy signed upload letter",
    "billing_dispute": "charge invoice refund premium autopay overcharged billed twice statement",
    "policy_change": "driver vehicle address coverage renew cancel deductible endorsement",
    "agent_escalation": "supervisor complaint rude unacceptable manager ignored waiting escalate",
    "hand_off": "lawyer attorney lawsuit fraud injured threat court subpoena",
}
COMMON = "hello please my the policy number account help thanks regarding today week car home".split()
NEW_TERMS = "quantumpay homeshield zerofee".split()  # appear in the last week only: drift's new terms


def create_database() -> None:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", **SERVER)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB}")
    conn.close()


def drop_database() -> None:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", **SERVER)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    conn.close()


def _copy(cur, table: str, columns: list[str], rows) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(["\\N" if v is None else v for v in row])
    buffer.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)


def fill(n_tickets: int, n_clicks: int, now: datetime, seed: int = 7) -> dict:
    """Tickets, suggestions and clicks by COPY; returns what was written."""
    import psycopg2

    rng = random.Random(seed)
    labels, weights = list(LABEL_WEIGHTS), list(LABEL_WEIGHTS.values())
    start = now - timedelta(days=DAYS)
    switch_at = now - timedelta(days=DAYS // 2)
    tickets, suggestions, shown_of = [], [], {}
    for i in range(1, n_tickets + 1):
        at = start + timedelta(seconds=(i - rng.random()) * DAYS * 86400 / n_tickets)
        truth = rng.choices(labels, weights)[0]
        words = rng.choices(WORDS[truth].split(), k=8) + rng.choices(COMMON, k=14)
        drifted = at > now - timedelta(days=7) and rng.random() < 0.1
        if drifted:
            words += rng.choices(NEW_TERMS, k=2)
        rng.shuffle(words)
        text = " ".join(words)
        tickets.append((i, "bench", f"T{i}", " ".join(words[:4]), text, None, None, at.isoformat()))
        predicted = truth if rng.random() < 0.85 else rng.choices(labels, weights)[0]
        confidence = rng.betavariate(8, 2)
        r = rng.random()
        routing, shown = (("unsure", None) if r < 0.12 else ("out_of_scope", "hand_off") if r < 0.18
                          else ("suggested", predicted))
        similarity = round(min(0.99, rng.gauss(0.55 if drifted else 0.76, 0.07)), 4)
        evidence = json.dumps([{"id": f"feedback:ticket-{rng.randrange(1, 5000)}", "text": " ".join(
            rng.choices(WORDS[predicted].split() + COMMON, k=12)), "label": predicted, "reason": "",
            "similarity": round(similarity - k * 0.02, 4)} for k in range(3)])
        latency = rng.lognormvariate(5.7, 0.45)  # median about 300 ms
        version = "v1" if at < switch_at else "v2"
        suggestions.append((i, i, shown, round(confidence, 4), json.dumps({predicted: round(confidence, 4)}), "",
                            version, round(latency, 1), "C_TRIAGE", f"{at.timestamp():.6f}", at.isoformat(),
                            routing, evidence, (at + timedelta(seconds=2)).isoformat(),
                            round(latency * 1.7, 1), predicted, similarity))
        shown_of[i] = (shown, truth, version, at)
    # clicks: the first on about n_clicks / 1.1 suggestions, a second on a tenth of those, later
    clicked = rng.sample(range(1, n_tickets + 1), min(n_tickets, int(n_clicks / 1.1)))
    firsts, seconds_rows = [], []
    for sid in clicked:
        shown, truth, version, at = shown_of[sid]
        wait = rng.lognormvariate(5.2, 1.0)  # median about 3 minutes
        when = at + timedelta(seconds=2 + wait)
        if shown is None:
            action, label = "change", truth
        elif shown == truth:
            action, label = ("accept", shown) if rng.random() < 0.93 else ("change", rng.choice(labels))
        elif truth == "hand_off":
            action, label = "handoff", truth
        else:
            action, label = rng.choice(["change", "change", "reject"]), truth
        firsts.append((sid, sid, f"U{rng.randrange(40)}", "", action, label, None, version, when.isoformat(), False))
        if len(seconds_rows) < n_clicks - len(clicked):
            later = when + timedelta(minutes=rng.randrange(5, 600))
            seconds_rows.append((sid, sid, f"U{rng.randrange(40)}", "", "change", truth, None, version,
                                 later.isoformat(), False))
    conn = psycopg2.connect(dbname=DB, **SERVER)
    with conn, conn.cursor() as cur:
        _copy(cur, "tickets", ["id", "source", "external_id", "subject", "text", "url", "requester", "created_at"],
              tickets)
        _copy(cur, "suggestions", ["id", "ticket_id", "label", "confidence", "probabilities", "reason", "model_version",
                                   "latency_ms", "slack_channel", "slack_ts", "created_at", "routing", "evidence",
                                   "posted_at", "cpu_ms", "predicted_label", "nearest_similarity"], suggestions)
        columns = ["suggestion_id", "ticket_id", "user_id", "user_name", "action", "label", "why", "model_version",
                   "created_at", "conflict"]
        _copy(cur, "feedback", columns, firsts)
        _copy(cur, "feedback", columns, seconds_rows)
        for table in ("tickets", "suggestions", "feedback"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    conn.autocommit = True
    with conn.cursor() as cur:
        # What autovacuum does to a table that has been live a while: statistics, and the visibility
        # map that lets a window's measures read the covering index alone.
        cur.execute("VACUUM ANALYZE")
    conn.close()
    return {"tickets": len(tickets), "suggestions": len(suggestions), "clicks": len(firsts) + len(seconds_rows)}


def versions(runtime) -> None:
    """v1 and v2 in the registry (their papers only: metrics and the drift reference), v2 in production."""
    vocabulary = {w: 10 for words in WORDS.values() for w in words.split()} | {w: 50 for w in COMMON}
    for accuracy in (0.86, 0.9):
        staging = runtime.registry.stage()
        metrics = {"accuracy": accuracy, "macro_f1": accuracy - 0.04, "handoff_recall": 0.95}
        (staging / "metrics.json").write_text(json.dumps(metrics))
        (staging / "drift.json").write_text(json.dumps({
            "holdout_similarity": {"n": 400, "p05": 0.63, "p50": 0.77, "min": 0.5},
            "training_labels": {label: w * 10 for label, w in LABEL_WEIGHTS.items()}, "n_train": 1000,
            "vocabulary": vocabulary}))
        info = runtime.registry.commit(staging, {"family": "encoder", "metrics": metrics})
        runtime.production.switch(info.name, by="bench", reason="bench")


def timed(call, repeat: int) -> dict:
    """First call (cold: registry reads, plans), then the median and max of `repeat` more, in ms."""
    t = time.perf_counter()
    call()
    first = (time.perf_counter() - t) * 1000
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        runs.append((time.perf_counter() - t) * 1000)
    return {"first_ms": round(first, 1), "median_ms": round(statistics.median(runs), 1),
            "max_ms": round(max(runs), 1)}


def measure(runtime, repeat: int) -> list[tuple[str, dict]]:
    from bot.monitor import measures

    week = measures.window(7)
    month = measures.window(30)
    found = [
        ("overview(7 days)", timed(lambda: measures.overview(runtime, *week), repeat)),
        ("overview(30 days)", timed(lambda: measures.overview(runtime, *month), repeat)),
        ("per_label(7 days)", timed(lambda: measures.per_label(runtime, *week), repeat)),
        ("timeline(30 days, by day)", timed(lambda: measures.timeline(runtime, *month), repeat)),
        ("versions()", timed(lambda: measures.versions(runtime), repeat)),
        ("drift(7 days)", timed(lambda: measures.drift(runtime, *week), repeat)),
        ("measures_for_metrics() (all time)", timed(lambda: measures.measures_for_metrics(runtime), repeat)),
    ]
    return found + http(runtime, repeat)


def http(runtime, repeat: int) -> list[tuple[str, dict]]:
    """GET /metrics and the dashboard pages through the app (in process, no network)."""
    from urllib.parse import urlsplit

    from fastapi.testclient import TestClient

    from bot.monitor.pages import dashboard_link
    from bot.queues import Queues
    from bot.web.app import create_app

    queues = Queues.from_settings(runtime.settings)
    client = TestClient(create_app(runtime, queues))

    def get(path: str):
        def call():
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
        return call

    found = [("GET /metrics", timed(get("/metrics"), repeat))]
    for page in ("overview", "labels", "drift", "versions"):
        for days in (7, 30):
            parts = urlsplit(dashboard_link(runtime, page, days))
            found.append((f"GET {parts.path} ({days} days)", timed(get(f"{parts.path}?{parts.query}"), repeat)))
    queues.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--clicks", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    from bot.runtime import Runtime
    from bot.settings import Settings

    load_before = os.getloadavg()
    now = datetime.now(timezone.utc)
    create_database()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(database_url=URL, data_dir=Path(tmp), link_secret="bench-secret",
                                public_url="http://tuesday.bench", redis_url="redis://127.0.0.1:6379/1")
            runtime = Runtime(settings)
            runtime.sessions  # schema at head
            t = time.perf_counter()
            written = fill(args.tickets, args.clicks, now)
            fill_s = time.perf_counter() - t
            versions(runtime)
            try:
                results = measure(runtime, args.repeat)
            finally:
                runtime.sessions.kw["bind"].dispose()
    finally:
        if not args.keep:
            drop_database()
    load_after = os.getloadavg()
    report = {"written": written, "fill_s": round(fill_s, 1), "repeat": args.repeat,
              "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
              "results": {name: numbers for name, numbers in results}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{written['tickets']:,} tickets, {written['suggestions']:,} suggestions, {written['clicks']:,} clicks "
          f"(filled in {fill_s:.0f} s); load average before {load_before[0]:.2f}, after {load_after[0]:.2f}\n")
    print(f"| call | first (ms) | median of {args.repeat} (ms) | max (ms) |")
    print("|---|---:|---:|---:|")
    for name, n in results:
        print(f"| {name} | {n['first_ms']:.0f} | {n['median_ms']:.0f} | {n['max_ms']:.0f} |")


if __name__ == "__main__":
    main()
