"""How fast the door acks realistic tickets: a fresh `tuesday serve` pinned to one core, the sender to the other.

    python -m bench.door [--requests 300] [--rates 100,300 --seconds 15] [--workers 1] [--server-cores 0]
                         [--redis redis://127.0.0.1:6379/14]

Starts `tuesday serve` on a free port with a fresh data folder (SQLite) and the given Redis, pinned with
`taskset -c 0` (its `--workers` processes share that core; `--server-cores 0,1` lets them use both, the
sender's too), and sends support_tickets test texts (median ~430 characters) as signed generic webhooks
from this process, pinned to core 1. Bodies are signed before each run, so the sender's work per request
is one HTTP call. Redis is wherever it runs (not pinned): each ticket costs it one job.

- one at a time: `--requests` tickets, each sent when the last was acked (the first request included:
  the PII detector is built before the server answers);
- open loop, for each of `--rates`: that many requests a second for `--seconds` (each sent when due, 64
  sender threads), ack time and time from when it was due; statuses counted (503 = the masking bound said
  come back); then a pause until the server's queue of work is empty.

Writes bench/out/door-w<workers>-c<cores>.json. Run it with nothing else on the cores.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.compare import OUT
from bench.datasets import load_split

SECRET = "bench-door-secret"


def _pin(cores: str) -> list[str]:
    return ["taskset", "-c", cores] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def _signed(ticket_id: str, text: str) -> tuple[bytes, dict]:
    body = json.dumps({"id": ticket_id, "text": text}).encode()
    ts = str(int(time.time()))
    sig = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Tuesday-Signature": sig, "X-Tuesday-Timestamp": ts}


def _post(http: httpx.Client, ticket_id: str, text: str) -> int:
    body, headers = _signed(ticket_id, text)
    return http.post("/webhooks/generic", content=body, headers=headers).status_code


def _quantiles(ms: list[float]) -> dict:
    q = statistics.quantiles(ms, n=100)
    return {"p50": round(q[49], 1), "p95": round(q[94], 1), "p99": round(q[98], 1), "max": round(max(ms), 1)}


def one_at_a_time(http: httpx.Client, texts: list[str]) -> dict:
    ms, statuses = [], {}
    for i, text in enumerate(texts):
        started = time.perf_counter()
        status = _post(http, f"seq-{i}", text)
        ms.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
    return {"requests": len(ms), "first_ms": round(ms[0], 1), "ack_ms": _quantiles(ms), "statuses": statuses}


def open_loop(http: httpx.Client, texts: list[str], rate: int, seconds: float) -> dict:
    n, lock = int(rate * seconds), threading.Lock()
    acks, late, statuses = [], [], {}
    requests = [_signed(f"open-{rate}-{i}", texts[i % len(texts)]) for i in range(n)]
    start = time.perf_counter() + 0.5

    def send(i: int) -> None:
        due = start + i / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        sent = time.perf_counter()
        body, headers = requests[i]
        status = http.post("/webhooks/generic", content=body, headers=headers).status_code
        done = time.perf_counter()
        with lock:
            acks.append((done - sent) * 1000)
            late.append((done - due) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(send, range(n)))
    return {"rate": rate, "requests": n, "ack_ms": _quantiles(acks), "from_due_ms": _quantiles(late),
            "statuses": statuses, "wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rates", default="100,300", help="open-loop rates, requests a second, comma-separated")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server-cores", default="0", help="cores the server may use (taskset -c)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    texts = [r["text"] for r in load_split("support_tickets", "test")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(tempfile.mkdtemp(prefix="tuesday-door-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TUESDAY_")}, "TUESDAY_DATA_DIR": str(root),
           "TUESDAY_REDIS_URL": args.redis, "TUESDAY_GENERIC_WEBHOOK_SECRET": SECRET}
    exe = str(Path(sys.executable).parent / "tuesday")
    server = subprocess.Popen([*_pin(args.server_cores), exe, "serve", "--port", str(port), "--workers", str(args.workers)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if _pin("1"):
        os.sched_setaffinity(0, {1})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          limits=httpx.Limits(max_connections=128)) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if http.get("/livez", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("tuesday serve did not start")
                    time.sleep(0.2)
            result = {"workers": args.workers, "server_cores": args.server_cores,
                      "median_chars": sorted(map(len, texts))[len(texts) // 2],
                      "one_at_a_time": one_at_a_time(http, texts[:args.requests]), "open_loop": []}
            for rate in [int(r) for r in args.rates.split(",")]:
                result["open_loop"].append(open_loop(http, texts, rate, args.seconds))
                time.sleep(3)  # what was accepted late is done before the next rate starts
            result["load_average"] = os.getloadavg()[0]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"door-w{args.workers}-c{args.server_cores.replace(',', '')}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
