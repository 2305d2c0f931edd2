"""How long the loop takes on this machine: 1,000 new labels to a promoted version, by the product's commands.

    python -m bench.loop [--rows 1000] [--dataset banking77]

In a fresh data folder (SQLite, local artifact store, default settings, so the families are
"auto": the encoder alone where no GPU is): a task with the dataset's labels, the built-in base
models approved, `rows` labelled rows of the dataset's train split imported as the team's
labels (the product's own hash split keeps some as the holdout), then `tuesday train` — snapshot,
train, export, quantize, evaluate, calibrate, gate, promote — timed as one wall-clock number,
with the version's own timings beside it. Writes bench/out/loop-<dataset>-<rows>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.compare import OUT
from bench.datasets import load_split, sample_per_label


def tuesday(*args: str, env: dict) -> str:
    command = Path(sys.executable).with_name("tuesday")  # the console script beside this interpreter
    done = subprocess.run([str(command), *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"tuesday {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="banking77")
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    train = load_split(args.dataset, "train")
    labels = sorted({r["label"] for r in train})
    per_label = -(-args.rows // len(labels))
    rows = sample_per_label(train, per_label, 0)[:args.rows]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        task = {"name": args.dataset, "description": "messages from customers", "list_labels": False,
                "labels": {label: "" for label in labels}}
        (folder / "task.yaml").write_text(yaml.safe_dump(task), encoding="utf-8")
        with open(folder / "rows.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({"id": r["id"], "text": r["text"], "label": r["label"]}) + "\n")
        env = {**os.environ, "TUESDAY_DATA_DIR": str(folder / "data"), "TUESDAY_TASK_FILE": str(folder / "task.yaml")}
        env.pop("TUESDAY_FAMILIES", None)
        for name in json.loads(tuesday("base", "--json", env=env)):
            tuesday("base", "approve", name["name"], "--by", "bench", env=env)
        tuesday("import", str(folder / "rows.jsonl"), env=env)
        started = time.perf_counter()
        summary = json.loads(tuesday("train", "--json", env=env))
        wall = time.perf_counter() - started
    result = {"dataset": args.dataset, "rows": len(rows), "wall_s": wall, "promoted": summary.get("promoted"),
              "why": summary.get("why"), "families": list(summary.get("families", {})),
              "n_holdout": (summary.get("metrics") or {}).get("n"),
              "timings": summary.get("timings"), "cpu_count": os.cpu_count()}
    print(json.dumps(result, indent=2))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"loop-{args.dataset}-{len(rows)}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
