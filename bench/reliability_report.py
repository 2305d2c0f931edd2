"""The tables and JSON of bench.reliability: what each scenario was measured on and what it measured."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

# Where the figures go; a smoke run (tests/test_reliability_smoke.py) points it elsewhere so real ones stay.
OUT = Path(os.environ.get("TUESDAY_BENCH_OUT") or Path(__file__).resolve().parent / "out")
GOAL_P99_MS = 50.0


def machine(args, model: str) -> dict:
    """What a scenario was measured on, including what else was running (the load average at its start)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    smoke = args.tiny or args.seconds < 60 or args.fuzz_count < 1000
    return {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(), "cpu": cpu,
            "load_average": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "commit": commit, "postgres": args.postgres, "model": model, "kind": "smoke run" if smoke else "full run"}


def measured_line(on: dict) -> str:
    """The "Measured on" line of docs/reliability.md."""
    return (f"Measured on: {on['at'][:16].replace('T', ' ')} UTC, {on['cpus']} × {on['cpu']}, load average "
            f"{on['load_average'][0]} at the start, commit {on['commit']}, {on['model']}, {on['postgres']} "
            f"PostgreSQL ({on['kind']}).")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value) if value else "–"
    return "–" if value is None else str(value)


def table(rows: list[dict], columns: dict[str, str]) -> str:
    """A Markdown table of rows, one column per (header: dotted key) in columns."""
    def get(row, key):
        for part in key.split("."):
            row = row.get(part) if isinstance(row, dict) else None
        return row

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(get(row, key)) for key in columns.values()) + " |" for row in rows]
    return "\n".join(lines)


DELIVERY = {"sent": "sent", "acked": "acked", "stored": "stored", "lost": "lost", "unsuggested": "unsuggested",
            "posted twice": "posted_twice"}
FAULT = {"rate": "rate", "ack p50 ms": "ack_ms.p50", "ack p99 ms": "ack_ms.p99", "until acked max ms": "until_acked_ms.max",
         "statuses": "statuses", "retried": "retried", **DELIVERY, "drain s": "drain_s",
         "exited during load": "exited_during_load"}
COLUMNS = {
    "load": {"rate": "rate", "achieved": "achieved_rate", "ack p50 ms": "ack_ms.p50", "p95": "ack_ms.p95",
             "p99": "ack_ms.p99", "max": "ack_ms.max", "sender lag p99 ms": "sender_lag_ms.p99",
             "sender cores": "sender_cores", "server cores": "server_cores",
             "statuses": "statuses", "sent": "sent", "stored": "stored", "lost": "lost",
             f"p99 ≤ {GOAL_P99_MS:g} ms": "goal_met"},
    "redis-restart": FAULT, "postgres-restart": FAULT,
    "kill-suggest": {**DELIVERY, "killed job": "killed_job", "its Slack posts": "killed_ticket_posts",
                     "it was posted after s": "watched_posted_after_s", "drain s": "drain_s",
                     "children left running": "orphaned_children"},
    "kill-train": {"killed mid-training": "killed_while_training", "run": "killed_run_status",
                   "failed after s": "failed_after_s", "production before → after": "production_change",
                   "next retrain": "next_run_status", "next retrain s": "next_run_s",
                   "children left running": "orphaned_children"},
    "fuzz": {"endpoint": "endpoint", "requests": "requests", "statuses": "statuses", "≥ 500 or no answer": "server_errors",
             "slowest ms": "slowest_ms"},
}


def rows_of(name: str, result: dict) -> list[dict]:
    if name == "load":
        return result["runs"]
    if name == "fuzz":
        return result["endpoints"]
    if name == "kill-train":
        return [{**result, "production_change": f"{result['production_before']} → {result['production_after_kill']}"}]
    return [result]


def report(name: str, result: dict, measured_on: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"reliability-{name}.json"
    path.write_text(json.dumps({"scenario": name, "measured_on": measured_on, **result}, indent=2))
    how = f" {result['pinning'].capitalize()}; bodies: {result['bodies']}." if "pinning" in result else ""
    print(f"\n### {name}\n\n{measured_line(measured_on)}{how}\n\n{table(rows_of(name, result), COLUMNS[name])}\n\n"
          f"wrote {path}", flush=True)
