"""Served latency per ticket of a benchmark version, alone on the machine, by ticket length.

    python -m bench.latency --version v1 --dataset support_tickets [--tickets 500] [--threads 2]

Loads the version from bench/out/models as the suggest worker does (its mix, evidence on) and
times predict() on the first N test tickets of the dataset, one at a time; reports p50/p95 over
all of them and over those longer than one window. Run it with nothing else on the cores.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.compare import OUT
from bench.datasets import load_split
from inference.registry import Registry
from inference.serving import load_predictor
from inference.task import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--dataset", default="support_tickets")
    parser.add_argument("--tickets", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    version = Registry.local(OUT / "models").get(args.version)
    task = load_task(version.path / "task.yaml")
    rows = load_split(args.dataset, "test")[:args.tickets]
    predictor = load_predictor(version, task, threads=args.threads)
    try:
        windows = [len(predictor.embedder.chunks(r["text"])) for r in rows]
        predictor.predict(rows[0]["text"])  # warm up
        ms = [predictor.predict(r["text"]).latency_ms for r in rows]
    finally:
        predictor.close()
    ms, windows = np.array(ms), np.array(windows)
    long = windows > 1
    result = {"version": args.version, "dataset": args.dataset, "tickets": len(rows), "threads": args.threads,
              "mix": version.manifest["families"]["encoder"].get("mix"),
              "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
              "longer_than_one_window": int(long.sum()),
              "long_p50_ms": float(np.percentile(ms[long], 50)) if long.any() else None,
              "long_p95_ms": float(np.percentile(ms[long], 95)) if long.any() else None,
              "max_windows": int(windows.max())}
    print(json.dumps(result, indent=2))
    (OUT / f"latency-{args.dataset}-{args.version}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
