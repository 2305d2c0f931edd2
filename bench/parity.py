"""Parity of a trained version: llama.cpp (f16 and served quantization) against the merged model.

    python -m bench.parity MODELS_DIR VERSION [--task FILE] [--data FILE] [--limit N]

Reports the largest next-token logit difference and argmax agreement on identical token ids
(f16), and label agreement of the served GGUF with the merged fp32 transformers model.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from inference.hf_predictor import TransformersPredictor
from inference.llama_predictor import LlamaPredictor
from inference.registry import Registry
from inference.splits import in_holdout
from inference.task import demo_examples_path, demo_task_path, load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models_dir")
    parser.add_argument("version")
    parser.add_argument("--task", default=str(demo_task_path()))
    parser.add_argument("--data", default=str(demo_examples_path()), help="labelled JSONL; its holdout rows are used")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from peft import PeftModel

    from trainer.lora import load_base, merge_adapter

    torch.set_num_threads(args.threads)
    task = load_task(args.task)
    version = Registry.local(args.models_dir).fetch_all(args.version)
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    rows = [r for r in rows if in_holdout(r["text"])][: args.limit or None]
    base, tokenizer = load_base(version.manifest["base"])
    reference = TransformersPredictor(merge_adapter(PeftModel.from_pretrained(base, version.path / "adapter")),
                                      tokenizer, task)
    f16 = LlamaPredictor(version.gguf("f16"), task, reasons=False, n_threads=args.threads)
    served = LlamaPredictor(version.gguf(), task, reasons=False, n_threads=args.threads)
    max_diff, argmax_same, label_same, served_ms, torch_ms = 0.0, 0, 0, [], []
    for row in rows:
        ids = reference.prompt_tokens(row["text"])
        a, b = f16.logits(ids), reference.logits(ids)
        max_diff = max(max_diff, float(np.abs(a - b).max()))
        argmax_same += int(a.argmax() == b.argmax())
        s, r = served.predict(row["text"]), reference.predict(row["text"])
        label_same += s.label == r.label
        served_ms.append(s.latency_ms)
        torch_ms.append(r.latency_ms)
    result = {"version": version.name, "rows": len(rows), "served": version.manifest["serve"],
              "f16_max_logit_diff": max_diff, "f16_argmax_agreement": argmax_same / len(rows),
              "served_label_agreement": label_same / len(rows),
              "served_ms_p50": float(np.percentile(served_ms, 50)), "transformers_ms_p50": float(np.percentile(torch_ms, 50))}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
