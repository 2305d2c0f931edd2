"""Turn bench/out/compare-*.json into the Markdown tables and the plot quoted in docs/benchmarks.md.

    python -m bench.tables [--plot docs/accuracy-vs-examples.png]

Prints one table per dataset (every method at every size that was run) and draws accuracy
against training rows per label, one panel per dataset. Numbers are copied from the JSON, so
the document cannot drift from what was measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.compare import OUT

METHODS = {"tfidf_lr": "TF-IDF + LR", "minilm_lr": "MiniLM + LR", "encoder": "Tuesday encoder",
           "decoder": "Tuesday decoder"}
SIZES = ["10", "50", "full"]


def load() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(OUT.glob("compare-*.json"))]


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def table(runs: list[dict], dataset: str) -> str:
    runs = sorted((r for r in runs if r["dataset"] == dataset), key=lambda r: (SIZES.index(r["per_label"]), len(r["families"])))
    oos = any("handoff_recall" in m for r in runs for m in r["methods"].values())
    head = ["per label", "train rows", "test rows", "method", "accuracy", "macro-F1", "ECE before → after"]
    if oos:
        head += ["in-scope accuracy", "hand-off recall", "wrong escalations"]
    head += ["train time", "p50 latency"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        for key, m in r["methods"].items():
            if len(r["families"]) > 1 and key in ("tfidf_lr", "minilm_lr"):
                name = METHODS[key] + " (same test rows)"
            else:
                name = METHODS[key] + (" **(served)**" if key == r.get("chosen") and len(r["families"]) > 1 else "")
            cells = [r["per_label"], str(r["n_train"]), str(m["n_test"]), name, _pct(m["accuracy"]), _pct(m["macro_f1"]),
                     f"{m['ece_before']:.3f} → {m['ece_after']:.3f}"]
            if oos:
                cells += [_pct(m.get("in_scope_accuracy")), _pct(m.get("handoff_recall")), _pct(m.get("wrong_escalations"))]
            latency = f"{m['p50_ms']:.0f} ms" if "p50_ms" in m else f"{m['ms_per_ticket_batched']:.1f} ms (batched)"
            cells += [f"{m['train_s']:.0f} s", latency]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in runs})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        # encoder-only runs, so every method sees the whole test split
        single = {r["per_label"]: r for r in runs if r["dataset"] == dataset and r["families"] == ["encoder"]}
        sizes = [s for s in SIZES if s in single]
        for key in ("tfidf_lr", "minilm_lr", "encoder"):
            ax.plot(range(len(sizes)), [100 * single[s]["methods"][key]["accuracy"] for s in sizes], marker="o",
                    label=METHODS[key])
        ax.set_xticks(range(len(sizes)), [f"{s}\n({single[s]['n_train']} rows)" for s in sizes])
        ax.set_title(dataset)
        ax.set_xlabel("training rows per label")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, default=Path("docs/accuracy-vs-examples.png"))
    args = parser.parse_args()
    runs = load()
    for dataset in sorted({r["dataset"] for r in runs}):
        print(f"### {dataset}\n\n{table(runs, dataset)}\n")
    plot(runs, args.plot)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
