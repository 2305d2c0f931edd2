"""Benchmark: Tuesday's decoder pipeline against two baselines on banking77, k examples per label.

    python -m bench.banking77 [--per-label 10] [--seed 0] [--config FILE] [--latency-tickets 50]

Trains on k rows per label of the train split, evaluates the served Q8_0 GGUF on the whole
test split, and fits TF-IDF + LR and MiniLM + LR on the same rows. Writes bench/out/*.json;
docs/benchmarks.md is written by hand from those numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from bench.baselines import minilm_lr, tfidf_lr
from bench.datasets import load_split, sample_per_label
from inference.base_models import smollm2_gguf
from inference.evaluation import evaluate
from inference.llama_predictor import LlamaPredictor
from inference.metrics import classification_report
from inference.registry import Registry
from inference.task import Task

OUT = Path(__file__).resolve().parent / "out"
# Measured-then-fixed defaults; no tuning on the test split.
DEFAULT_CONFIG = {"epochs": 3, "rank": 16, "alpha": 32, "learning_rate": 1e-3, "layers": 10, "batch_size": 8,
                  "dropout": 0.1, "with_reasons": False}


def _percentiles(ms: list[float]) -> dict:
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))}


def run(per_label: int, seed: int, config: dict, latency_tickets: int, threads: int, list_labels: bool) -> dict:
    from trainer.config import TrainConfig
    from trainer.pipeline import build_version

    train = sample_per_label(load_split("banking77", "train"), per_label, seed)
    test = load_split("banking77", "test")
    labels = sorted({r["label"] for r in train})
    # 77 label names would make every prompt ~700 tokens (2 s per training example on CPU);
    # without the list an example is ~50 tokens and the adapter learns the names.
    task = Task(name="banking77", labels={label: "" for label in labels}, handoff_label=None,
                description="questions from customers of a digital bank", list_labels=list_labels)
    result = {"dataset": "banking77", "per_label": per_label, "seed": seed, "n_train": len(train),
              "n_test": len(test), "config": config, "list_labels": list_labels, "threads": threads, "machine": platform.processor() or platform.machine()}

    gold = [r["label"] for r in test]
    for name, fit in (("tfidf_lr", tfidf_lr), ("minilm_lr", minilm_lr)):
        baseline = fit([r["text"] for r in train], [r["label"] for r in train], [r["text"] for r in test])
        report = classification_report(task, gold, baseline.predictions)
        result[name] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                        "train_s": baseline.train_seconds, "ms_per_ticket": 1000 * baseline.predict_seconds_per_text}
        print(name, json.dumps(result[name]), flush=True)

    registry = Registry.local(OUT / "models")
    # a small validation set from the rest of the train split (never the test split) for the version's metrics
    taken = {r["id"] for r in train}
    holdout = sample_per_label([r for r in load_split("banking77", "train") if r["id"] not in taken], 2, seed + 1)
    version = build_version(registry, task, smollm2_gguf(), train, holdout, TrainConfig.from_dict(config))
    print("trained", version.name, json.dumps(version.manifest["training"]), flush=True)

    predictor = LlamaPredictor(version.gguf(), task, version=version.name, reasons=False, n_threads=threads)
    started = time.perf_counter()
    metrics = evaluate(predictor, task, test, desc="test (Q8_0)")
    eval_s = time.perf_counter() - started
    predictor.close()
    result["decoder_q8_0"] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                              "train_s": version.manifest["timings"]["train_s"],
                              "latency_ms": metrics["latency_ms"], "eval_s": eval_s,
                              "version": version.name, "training": version.manifest["training"]}
    result["decoder_latency_vs_transformers"] = latency_against_transformers(
        version, task, test[:latency_tickets], threads)
    return result


def latency_against_transformers(version, task: Task, rows: list[dict], threads: int) -> dict:
    """Per-ticket latency of the served GGUF and of the merged fp32 model, same tickets, same threads."""
    import torch
    from peft import PeftModel

    from inference.hf_predictor import TransformersPredictor
    from trainer.lora import load_base, merge_adapter

    torch.set_num_threads(threads)
    base, tokenizer = load_base(version.manifest["base"])
    merged = merge_adapter(PeftModel.from_pretrained(base, version.path / "adapter"))
    reference = TransformersPredictor(merged, tokenizer, task)
    served = LlamaPredictor(version.gguf(), task, reasons=False, n_threads=threads)
    gguf_ms, torch_ms, agree = [], [], 0
    for row in rows:
        a, b = served.predict(row["text"]), reference.predict(row["text"])
        gguf_ms.append(a.latency_ms)
        torch_ms.append(b.latency_ms)
        agree += a.label == b.label
    served.close()
    return {"tickets": len(rows), "gguf_q8_0_ms": _percentiles(gguf_ms), "transformers_fp32_ms": _percentiles(torch_ms),
            "label_agreement": agree / len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, help="JSON file of TrainConfig overrides")
    parser.add_argument("--latency-tickets", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--list-labels", action="store_true", help="name all labels in the prompt (slow)")
    args = parser.parse_args()
    config = {**DEFAULT_CONFIG, **(json.loads(args.config.read_text()) if args.config else {})}
    result = run(args.per_label, args.seed, config, args.latency_tickets, args.threads, args.list_labels)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"banking77-k{args.per_label}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
