"""Accuracy on the tickets longer than one encoder window, from bench.compare's saved probabilities.

    python -m bench.long_tickets [--dataset support_tickets]

For every saved run of the dataset, each method's test accuracy on tickets that fit one window
of 128 tokens and on those that do not (counted with the encoder's own tokenizer), so runs that
differ only in how the encoder reads a long ticket (max_chunks) can be compared on the tickets
where it matters. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.compare import OUT, split_rows
from bench.tables import METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="support_tickets")
    parser.add_argument("--window", type=int, default=128)
    args = parser.parse_args()
    from inference.base_models import minilm_dir
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    lines = ["| per label | encoder config | method | all | ≤ 1 window | > 1 window |", "|---|---|---|---|---|---|"]
    lengths = None
    for path in sorted(OUT.glob(f"compare-{args.dataset}-k*.json")):
        meta = json.loads(path.read_text())
        if meta.get("field", "label") != "label":
            continue
        data = np.load(path.with_suffix(".npz"))
        if lengths is None:
            test = split_rows(meta["dataset"], meta["per_label"], meta["seed"], 0)[2]
            lengths = np.array([len(tokenizer(r["text"])["input_ids"]) for r in test])
        long = lengths > args.window
        gold = data["gold_test"]
        for method in meta["methods"]:
            right = data[f"{method}_test"].argmax(1) == gold
            config = ", ".join(f"{k} {v}" for k, v in sorted(meta["encoder_config"].items())) or "defaults"
            lines.append(f"| {meta['per_label']} | {config} | {METHODS[method]} | {100 * right.mean():.1f} % | "
                         f"{100 * right[~long].mean():.1f} % | {100 * right[long].mean():.1f} % |")
    print("\n".join(lines))
    if lengths is not None:
        print(f"\n{int((lengths > args.window).sum())} of {len(lengths)} test tickets are longer than {args.window} "
              f"tokens (longest {int(lengths.max())}).")


if __name__ == "__main__":
    main()
