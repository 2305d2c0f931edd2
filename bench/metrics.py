"""What a Prometheus scrape of GET /metrics costs at a million rows, with and without the aggregate cache.

    python -m bench.metrics --rows 1000000 [--store sqlite|postgresql] [--scrapes 50] [--before-scrapes 20] [--json]

Fills a fresh store (a SQLite file in a temporary folder, or the database tuesday_bench_metrics on the
local PostgreSQL, user postgres) with ROWS tickets, one suggestion each (two versions, realistic
labels, routings and latencies) and one click on each of CLICK_SHARE of them, by bulk inserts
(executemany in one transaction on SQLite, COPY on PostgreSQL); then times GET /metrics through the
FastAPI app (in process, with the bearer token):

- before: TUESDAY_METRICS_CACHE_S=0, every scrape computes the store's aggregates (the first is cold);
- after: the default cache (30 s). The first scrape of a process waits at most TUESDAY_METRICS_WAIT_S
  (2 s) and answers without the store's series if they are not ready; then warm scrapes, and scrapes
  while a refresh runs in the background (they answer the last values at once).

Prints a Markdown table (docs/monitoring.md quotes it) with the load average before and after: other
work on the machine shows there.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.monitor_load import _copy  # COPY of rows into PostgreSQL, shared with the monitoring bench

PG_DB = "tuesday_bench_metrics"
PG_SERVER = dict(host="127.0.0.1", port=5432, user="postgres")
REDIS_URL = "redis://127.0.0.1:6379/11"
TOKEN = "bench-metrics-token"
DAYS = 60
CLICK_SHARE = 0.6  # the share of suggestions someone clicked
LABELS = {"claim_status": 30, "new_claim": 15, "document_request": 15, "billing_dispute": 15, "policy_change": 12,
          "agent_escalation": 6, "hand_off": 7}
ACTIONS = (("accept", 80), ("change", 14), ("reject", 4), ("handoff", 2))

TICKET_COLUMNS = ["id", "source", "external_id", "subject", "text", "created_at"]
SUGGESTION_COLUMNS = ["id", "ticket_id", "task", "label", "confidence", "probabilities", "reason", "model_version",
                      "latency_ms", "created_at", "routing", "evidence", "posted_at", "cpu_ms", "predicted_label",
                      "nearest_similarity", "first_action", "first_label", "first_click_at"]
FEEDBACK_COLUMNS = ["suggestion_id", "ticket_id", "task", "user_id", "user_name", "action", "label", "why",
                    "model_version", "created_at", "conflict"]


def rows(n: int, task: str, now: datetime, seed: int = 11):
    """(tickets, suggestions, clicks) as tuples in the column orders above; timestamps naive UTC strings."""
    rng = random.Random(seed)
    labels, weights = list(LABELS), list(LABELS.values())
    actions, action_weights = [a for a, _ in ACTIONS], [w for _, w in ACTIONS]
    start = (now - timedelta(days=DAYS)).replace(tzinfo=None)
    step = DAYS * 86400 / n
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    tickets, suggestions, clicks = [], [], []
    shown_pick = rng.choices(labels, weights, k=n)
    for i in range(1, n + 1):
        at = start + timedelta(seconds=i * step)
        stamp = at.strftime(fmt)
        tickets.append((i, "bench", f"B{i}", "", "a ticket about a claim", stamp))
        predicted = shown_pick[i - 1]
        r = rng.random()
        routing, shown = ("unsure", None) if r < 0.1 else ("out_of_scope", "hand_off") if r < 0.15 \
            else ("suggested", predicted)
        version = "v1" if i < n // 2 else "v2"
        posted = at + timedelta(seconds=2)
        first_action = first_label = first_at = None
        if rng.random() < CLICK_SHARE:
            action = rng.choices(actions, action_weights)[0] if shown else "change"
            first_label = shown if action == "accept" else rng.choice(labels)
            first_action, first_at = action, (posted + timedelta(seconds=rng.lognormvariate(5, 1))).strftime(fmt)
            clicks.append((i, i, task, f"U{i % 40}", "", action, first_label, None, version, first_at, False))
        suggestions.append((i, i, task, shown, 0.9, "{}", "", version, round(rng.lognormvariate(5.7, 0.45), 1),
                            stamp, routing, "[]", posted.strftime(fmt), 120.0, predicted,
                            round(rng.gauss(0.75, 0.08), 4), first_action, first_label, first_at))
    return tickets, suggestions, clicks


def fill_sqlite(engine, tickets, suggestions, clicks) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for table, columns, data in (("tickets", TICKET_COLUMNS, tickets), ("suggestions", SUGGESTION_COLUMNS, suggestions),
                                     ("feedback", FEEDBACK_COLUMNS, clicks)):
            cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                            data)
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def fill_postgresql(tickets, suggestions, clicks) -> None:
    import psycopg2

    conn = psycopg2.connect(dbname=PG_DB, **PG_SERVER)
    with conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        _copy(cur, "tickets", TICKET_COLUMNS, tickets)
        _copy(cur, "suggestions", SUGGESTION_COLUMNS, suggestions)
        _copy(cur, "feedback", FEEDBACK_COLUMNS, clicks)
        for table in ("tickets", "suggestions", "feedback"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")  # what autovacuum does to a table that has been live a while
    conn.close()


def _pg_admin(statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG_SERVER)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def versions(runtime) -> None:
    """v1 and v2 in the registry (papers only: metrics and a drift reference), v2 in production."""
    for accuracy in (0.86, 0.9):
        staging = runtime.registry.stage()
        metrics = {"accuracy": accuracy, "macro_f1": accuracy - 0.04, "handoff_recall": 0.95}
        (staging / "metrics.json").write_text(json.dumps(metrics))
        (staging / "drift.json").write_text(json.dumps({
            "holdout_similarity": {"n": 400, "p05": 0.63, "p50": 0.77, "min": 0.5},
            "training_labels": {label: w * 10 for label, w in LABELS.items()}, "n_train": 1000, "vocabulary": {}}))
        info = runtime.registry.commit(staging, {"family": "encoder", "metrics": metrics})
        runtime.production.switch(info.name, by="bench", reason="bench")


def timings(call, n: int) -> dict:
    """p50, p95 and max of n calls, in ms."""
    found = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        found.append((time.perf_counter() - t) * 1000)
    found.sort()
    return {"n": n, "p50_ms": round(statistics.median(found), 2),
            "p95_ms": round(found[min(n - 1, int(round(0.95 * (n - 1))))], 2), "max_ms": round(found[-1], 2)}


def scrape_numbers(runtime, queues, scrapes: int, before_scrapes: int) -> dict:
    from fastapi.testclient import TestClient

    from bot.settings import Settings
    from bot.web.app import create_app
    from bot.runtime import Runtime

    def client(**settings):
        rt = Runtime(Settings(**{**runtime.settings.model_dump(), **settings}))
        return TestClient(create_app(rt, queues)), rt

    headers = {"Authorization": f"Bearer {TOKEN}"}

    def getter(web):
        def get():
            response = web.get("/metrics", headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"GET /metrics: {response.status_code}")
            return response.text
        return get

    out: dict = {}
    web, _ = client(metrics_cache_s=0)
    get = getter(web)
    t = time.perf_counter()
    get()
    out["before_cold_ms"] = round((time.perf_counter() - t) * 1000, 1)
    out["before"] = timings(get, before_scrapes)

    web, _ = client(metrics_cache_s=30)
    collector = web.app.state.metrics_collector
    get = getter(web)
    t = time.perf_counter()
    first = get()
    out["after_cold_ms"] = round((time.perf_counter() - t) * 1000, 1)
    out["after_cold_had_aggregates"] = "tuesday_suggestions_total" in first
    if not collector.wait_idle(600):
        raise RuntimeError("the first computation did not end in 10 minutes")
    out["compute_s"] = round(collector.snapshot.took_s, 2)
    out["after_warm"] = timings(get, scrapes)
    # Scrapes while a refresh reads the tables: the last values, at once.
    collector.refresh_started()
    during = timings(get, scrapes)
    out["refresh_still_running"] = not collector.wait_idle(0)
    collector.wait_idle(600)
    out["after_during_refresh"] = during
    return out


def run(n: int, store: str, scrapes: int, before_scrapes: int) -> dict:
    from bot.queues import Queues
    from bot.runtime import Runtime
    from bot.settings import Settings

    now = datetime.now(timezone.utc)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if store == "postgresql":
            _pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            _pg_admin(f"CREATE DATABASE {PG_DB}")
            url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{PG_DB}"
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        try:
            settings = Settings(database_url=url, data_dir=Path(tmp), redis_url=REDIS_URL, metrics_token=TOKEN)
            runtime = Runtime(settings)
            runtime.sessions  # the schema at head
            t = time.perf_counter()
            tickets, suggestions, clicks = rows(n, runtime.task.name, now)
            generate_s = time.perf_counter() - t
            t = time.perf_counter()
            if store == "postgresql":
                fill_postgresql(tickets, suggestions, clicks)
            else:
                fill_sqlite(runtime.sessions.kw["bind"], tickets, suggestions, clicks)
            fill_s = time.perf_counter() - t
            written = {"tickets": len(tickets), "suggestions": len(suggestions), "clicks": len(clicks)}
            del tickets, suggestions, clicks
            versions(runtime)
            queues = Queues.from_settings(settings)
            try:
                numbers = scrape_numbers(runtime, queues, scrapes, before_scrapes)
            finally:
                queues.close()
                runtime.sessions.kw["bind"].dispose()
        finally:
            if store == "postgresql":
                _pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
    return {"store": store, "written": written, "generate_s": round(generate_s, 1), "fill_s": round(fill_s, 1),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(), **numbers}


def table(report: dict) -> str:
    w = report["written"]
    lines = [f"{report['store']}: {w['tickets']:,} tickets, {w['suggestions']:,} suggestions, {w['clicks']:,} clicks "
             f"(filled in {report['fill_s']:.0f} s); the aggregates took {report['compute_s']:.2f} s to compute; "
             f"load average before {report['load_before'][0]:.2f}, after {report['load_after'][0]:.2f} "
             f"({report['cpus']} CPUs)", "",
             "| GET /metrics | first scrape (ms) | p50 (ms) | p95 (ms) | max (ms) | scrapes |", "|---|---:|---:|---:|---:|---:|"]
    b, a, d = report["before"], report["after_warm"], report["after_during_refresh"]
    lines.append(f"| before: aggregates at every scrape (TUESDAY_METRICS_CACHE_S=0) | {report['before_cold_ms']:.0f} | "
                 f"{b['p50_ms']:.0f} | {b['p95_ms']:.0f} | {b['max_ms']:.0f} | {b['n']} |")
    cold = f"{report['after_cold_ms']:.0f}" + ("" if report["after_cold_had_aggregates"] else " (queue series only)")
    lines.append(f"| after: cached 30 s, warm | {cold} | {a['p50_ms']:.1f} | {a['p95_ms']:.1f} | {a['max_ms']:.1f} | "
                 f"{a['n']} |")
    lines.append(f"| after: while a refresh runs in the background | – | {d['p50_ms']:.1f} | {d['p95_ms']:.1f} | "
                 f"{d['max_ms']:.1f} | {d['n']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="tickets (one suggestion each)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--scrapes", type=int, default=50, help="warm scrapes timed with the cache")
    parser.add_argument("--before-scrapes", type=int, default=20, help="scrapes timed without the cache")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    report = run(args.rows, args.store, args.scrapes, args.before_scrapes)
    print(json.dumps(report, indent=2) if args.json else table(report))


if __name__ == "__main__":
    main()
