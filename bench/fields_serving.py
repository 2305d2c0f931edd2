"""What serving 1, 2 and 3 fields per ticket costs: latency per ticket and resident memory of the suggest worker's
predictors, on support_tickets' queue, priority and type (one version per task, as a deployment has).

    python -m bench.fields_serving [--per-label 10] [--tickets 200] [--threads 2] [--encoder shared|own]

Trains one encoder version per field once (bench/out/fields-models; reused when present) with the
product's defaults, on `--per-label` training rows per label (a validation sample as its holdout).
queue is the routing task and tunes its encoder; with `--encoder shared` (the product's default,
TUESDAY_SHARED_ENCODER) priority and type train a head on queue's encoder (trainer.shared_encoder),
with `--encoder own` each tunes an encoder of its own. Each version's accuracy on `--accuracy-tickets`
test tickets is reported (what sharing costs a field).
Then, for k = 1, 2, 3, a fresh process loads the first k fields' served predictors exactly as the
suggest worker does (inference.serving.load_predictor with the process's embedder pool: encoder
GGUF via llama.cpp, opened once per distinct file, head, TF-IDF, evidence index) and predicts
every field of the first `--tickets` test tickets one after another, as one suggest job does. It
reports per-ticket wall time (p50, p95) and the process's resident memory before loading, after
loading and at its peak. Run it with nothing else on the cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.compare import OUT, split_rows

FIELDS = ("label", "priority", "type")  # support_tickets' queue is its `label` column
NAMES = {"label": "queue", "priority": "priority", "type": "type"}
MODELS = OUT / "fields-models"


def _rss_mib() -> tuple[float, float]:
    """(resident now, peak resident) of this process, in MiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def train(per_label: int, seed: int, encoder: str, accuracy_tickets: int) -> dict[str, dict]:
    """{field: {version, accuracy}} of one encoder version per field, trained once."""
    from inference.base_models import smollm2_gguf
    from inference.registry import Registry
    from inference.task import Task
    from trainer.config import RunConfig
    from trainer.pipeline import build_version

    registry = Registry.local(MODELS)
    index = MODELS / f"versions-k{per_label}-s{seed}-{encoder}.json"
    if index.exists():
        return json.loads(index.read_text())
    versions, routing = {}, None
    for field in FIELDS:
        train_rows, validation, test = split_rows("support_tickets", str(per_label), seed, 0, field)
        labels = sorted({r["label"] for r in train_rows})
        task = Task(name=NAMES[field], labels={label: "" for label in labels}, handoff_label=None)
        holdout = [r for r in validation if r["label"] in task.labels][: 20 * len(labels)]
        started = time.perf_counter()
        shared = registry.fetch(routing) if routing and encoder == "shared" else None
        version = build_version(registry, task, smollm2_gguf(), train_rows, holdout,
                                RunConfig.from_dict({"families": ["encoder"]}), progress=False, shared_encoder=shared)
        seconds = time.perf_counter() - started
        routing = routing or version.name  # queue, the first field, routes
        accuracy = _accuracy(registry, version.name, [r for r in test if r["label"] in task.labels][:accuracy_tickets])
        print(f"{NAMES[field]}: {version.name} on {len(train_rows)} rows in {seconds:.0f} s, accuracy {accuracy:.3f}",
              file=sys.stderr)
        versions[NAMES[field]] = {"version": version.name, "accuracy": accuracy, "train_s": seconds,
                                  "shared_encoder": shared.name if shared else None}
    index.write_text(json.dumps(versions))
    return versions


def _accuracy(registry, name: str, rows: list[dict]) -> float:
    from inference.serving import load_predictor
    from inference.task import load_task

    info = registry.fetch(name)
    predictor = load_predictor(info, load_task(info.path / "task.yaml"), evidence=False)
    try:
        return sum(predictor.predict(r["text"]).label == r["label"] for r in rows) / len(rows)
    finally:
        predictor.close()


def measure(versions: list[str], tickets: int, threads: int) -> dict:
    """In this process: load the versions' predictors and time every field of each ticket."""
    import numpy as np

    from bench.datasets import load_split
    from inference.embedders import EmbedderPool
    from inference.registry import Registry
    from inference.serving import load_predictor
    from inference.task import load_task

    registry = Registry.local(MODELS)
    rows = load_split("support_tickets", "test")[: tickets + 3]
    before = _rss_mib()[0]
    predictors, pool = [], EmbedderPool()  # the suggest worker's pool (bot.worker.predictors.EMBEDDERS)
    for name in versions:
        info = registry.fetch(name)
        predictors.append(load_predictor(info, load_task(info.path / "task.yaml"), threads=threads, embedders=pool))
    encoders = len(pool)
    loaded = _rss_mib()[0]
    try:
        for row in rows[:3]:  # warm up
            for predictor in predictors:
                predictor.predict(row["text"])
        ms = []
        for row in rows[3:]:
            started = time.perf_counter()
            for predictor in predictors:
                predictor.predict(row["text"])
            ms.append((time.perf_counter() - started) * 1000)
    finally:
        for predictor in predictors:
            predictor.close()
    now, peak = _rss_mib()
    return {"fields": len(versions), "versions": versions, "encoders": encoders, "tickets": len(ms), "threads": threads,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "rss_before_mib": before, "rss_loaded_mib": loaded, "rss_peak_mib": peak,
            "predictors_mib": loaded - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", choices=("shared", "own"), default="shared")
    parser.add_argument("--accuracy-tickets", type=int, default=1000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the child process: comma-separated versions
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure.split(","), args.tickets, args.threads)))
        return
    versions = train(args.per_label, args.seed, args.encoder, args.accuracy_tickets)
    order = [versions[NAMES[f]]["version"] for f in FIELDS]
    results = []
    for k in (1, 2, 3):  # a fresh process each: resident memory is the process's own
        out = subprocess.run([sys.executable, "-m", "bench.fields_serving", "--measure", ",".join(order[:k]),
                              "--tickets", str(args.tickets), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True, timeout=3600)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    one = results[0]
    for r in results:
        r["time_vs_one"] = r["p50_ms"] / one["p50_ms"]
        r["memory_vs_one"] = r["rss_peak_mib"] / one["rss_peak_mib"]
    path = OUT / f"fields-serving-k{args.per_label}-s{args.seed}-{args.encoder}.json"
    path.write_text(json.dumps({"fields": [NAMES[f] for f in FIELDS], "encoder": args.encoder, "versions": versions,
                                "results": results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
