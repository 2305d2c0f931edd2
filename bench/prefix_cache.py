"""Benchmark: what reusing the KV cache of the fixed instruction prefix saves per ticket (decoder family).

    python -m bench.prefix_cache [--tickets 100] [--threads 2]

Scores the same tickets with the base SmolLM2-135M GGUF twice per task — once decoding every
prompt from scratch, once keeping the cached prefix the previous ticket shared — and reports
p50/p95 latency. The label scores must not change (checked). Tasks: the demo task (7 labels
listed in the prompt with descriptions) and banking77 (77 labels, not listed).
Writes bench/out/prefix-cache.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.datasets import load_split, sample_per_label
from inference.base_models import smollm2_gguf
from inference.llama_predictor import LlamaPredictor
from inference.task import Task, demo_examples_path, demo_task_path, load_task

OUT = Path(__file__).resolve().parent / "out"


def measure(task: Task, texts: list[str], threads: int) -> dict:
    result = {}
    probs = {}
    for reuse in (False, True):
        predictor = LlamaPredictor(smollm2_gguf(), task, reasons=False, n_threads=threads, reuse_prefix=reuse)
        try:
            predictor.predict(texts[0])  # warm-up
            ms, out = [], []
            for text in texts:
                suggestion = predictor.predict(text)
                ms.append(suggestion.latency_ms)
                out.append([suggestion.probabilities[label] for label in task.label_names])
            n_prompt = int(np.median([len(predictor.prompt_tokens(t)) for t in texts]))
        finally:
            predictor.close()
        probs[reuse] = np.array(out)
        result["reuse" if reuse else "no_reuse"] = {"p50_ms": float(np.percentile(ms, 50)),
                                                    "p95_ms": float(np.percentile(ms, 95))}
    result["median_prompt_tokens"] = n_prompt
    result["max_probability_difference"] = float(np.abs(probs[True] - probs[False]).max())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    demo = load_task(demo_task_path())
    demo_texts = [json.loads(line)["text"] for line in demo_examples_path().read_text().splitlines()][:args.tickets]
    bank_rows = sample_per_label(load_split("banking77", "test"), 2, 0)[:args.tickets]
    bank = Task(name="banking77", labels={label: "" for label in sorted({r["label"] for r in load_split("banking77", "train")})},
                handoff_label=None, description="messages from customers", list_labels=False)
    result = {"tickets": args.tickets, "threads": args.threads,
              "demo (7 labels listed)": measure(demo, demo_texts, args.threads),
              "banking77 (77 labels, not listed)": measure(bank, [r["text"] for r in bank_rows], args.threads)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "prefix-cache.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
