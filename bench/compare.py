"""Benchmark: Tuesday's model families against two baselines on the shared public datasets.

    python -m bench.compare --dataset banking77 --per-label 10
    python -m bench.compare --dataset clinc150 --per-label 50 --families encoder
    python -m bench.compare --dataset banking77 --per-label full --families encoder
    python -m bench.compare --dataset banking77 --per-label 10 --families encoder,decoder --test-per-label 10

Rows, per run (seeded, the same rows for every method):
- train: k rows per label of the train split (or all of it);
- validation: the dataset's validation split (clinc150, banking77_oos); banking77 has none, so
  5 rows per label are set aside from its train split before the train rows are drawn. Tuesday
  uses these rows as its holdout (gate between families, temperature, thresholds); the
  baselines get their temperature and hand-off threshold from them too;
- test: the whole test split (or --test-per-label rows per label, where CPU time does not allow
  the whole split), used once per method, never to choose anything.

Hand-off: on clinc150 and banking77_oos the `oos` label is the task's hand-off label. A ticket
is escalated when the predicted label is `oos` or the confidence is below a threshold chosen on
validation so that at most 5 % of in-scope validation tickets are escalated; reported: the
share of out-of-scope test tickets escalated (hand-off recall) and the share of in-scope test
tickets escalated (wrong escalations).

Writes bench/out/compare-<dataset>-k<k>-s<seed>-<families>.json; docs/benchmarks.md quotes them.
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
from inference.calibration import apply_temperature, expected_calibration_error, fit_temperature, handoff_threshold
from inference.metrics import classification_report
from inference.registry import Registry
from inference.serving import load_predictor
from inference.task import Task

OUT = Path(__file__).resolve().parent / "out"
HANDOFF = "oos"
MAX_WRONG = 0.05
# Fixed before any test number was seen; the decoder settings are the pipeline benchmark's.
DECODER = {"epochs": 1, "rank": 16, "alpha": 32, "learning_rate": 1e-3, "layers": 10, "batch_size": 8,
           "dropout": 0.1, "with_reasons": False}


def split_rows(dataset: str, per_label: str, seed: int, test_per_label: int) -> tuple[list, list, list]:
    train_all = load_split(dataset, "train")
    if dataset == "banking77":
        validation = sample_per_label(train_all, 5, seed + 1)
        held = {r["id"] for r in validation}
        train_all = [r for r in train_all if r["id"] not in held]
    else:
        validation = load_split(dataset, "validation")
    train = train_all if per_label == "full" else sample_per_label(train_all, int(per_label), seed)
    test = load_split(dataset, "test")
    if test_per_label:
        test = sample_per_label(test, test_per_label, seed + 2)
    return train, validation, test


def fit_on_validation(task: Task, probs_val: np.ndarray, val: list[dict]) -> tuple[float, float | None]:
    """(temperature, hand-off threshold) chosen on validation rows, as Tuesday's pipeline chooses them."""
    index = {label: i for i, label in enumerate(task.label_names)}
    gold = np.array([index[r["label"]] for r in val])
    temperature = fit_temperature(probs_val, gold)
    if not task.handoff_label:
        return temperature, None
    return temperature, handoff_threshold(apply_temperature(probs_val, temperature).max(1), gold != index[HANDOFF], MAX_WRONG)


def scores(task: Task, probs_test: np.ndarray, test: list[dict], temperature: float, threshold: float | None) -> dict:
    """Accuracy, macro-F1, calibration and hand-off numbers of one method's test distributions."""
    labels = task.label_names
    index = {label: i for i, label in enumerate(labels)}
    gold = np.array([index[r["label"]] for r in test])
    predicted = [labels[i] for i in probs_test.argmax(1)]
    report = classification_report(task, [r["label"] for r in test], predicted)
    after = apply_temperature(probs_test, temperature)
    correct = probs_test.argmax(1) == gold
    out = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "n_test": len(test),
           "temperature": temperature,
           "ece_before": expected_calibration_error(probs_test.max(1), correct),
           "ece_after": expected_calibration_error(after.max(1), correct)}
    if threshold is not None:
        escalate = (probs_test.argmax(1) == index[HANDOFF]) | (after.max(1) < threshold)
        oos = gold == index[HANDOFF]
        out.update(handoff_threshold=threshold, handoff_recall=float(escalate[oos].mean()),
                   wrong_escalations=float(escalate[~oos].mean()),
                   in_scope_accuracy=float(correct[~oos].mean()))
    return out


def _baseline_probs(result, labels: list[str]) -> np.ndarray:
    """Reorder a baseline's columns to task order (a label absent from training gets 0)."""
    out = np.zeros((len(result.probabilities), len(labels)))
    for j, label in enumerate(result.classes):
        out[:, labels.index(label)] = result.probabilities[:, j]
    return out


def tuesday_probs(version, task: Task, family: str, rows: list[dict], threads: int) -> tuple[np.ndarray, list]:
    """Uncalibrated distributions and per-ticket latencies of one family's served GGUF."""
    predictor = load_predictor(version, task, family=family, calibrated=False, evidence=False, reasons=False,
                               threads=threads)
    probs, ms = [], []
    try:
        for row in rows:
            suggestion = predictor.predict(row["text"])
            probs.append([suggestion.probabilities[label] for label in task.label_names])
            ms.append(suggestion.latency_ms)
    finally:
        predictor.close()
    return np.array(probs), ms


def run(dataset: str, per_label: str, seed: int, families: list[str], threads: int, test_per_label: int,
        encoder: dict) -> dict:
    from trainer.config import RunConfig
    from trainer.pipeline import build_version

    train, val, test = split_rows(dataset, per_label, seed, test_per_label)
    labels = sorted({r["label"] for r in train + val + test})
    task = Task(name=dataset, labels={label: "" for label in labels}, handoff_label=HANDOFF if HANDOFF in labels else None,
                description="messages from customers", list_labels=False)
    result = {"dataset": dataset, "per_label": per_label, "seed": seed, "n_train": len(train), "n_validation": len(val),
              "n_test": len(test), "labels": len(labels), "threads": threads, "machine": platform.machine(),
              "families": families, "decoder_config": DECODER, "encoder_config": encoder, "methods": {}}

    for name, fit in (("tfidf_lr", tfidf_lr), ("minilm_lr", minilm_lr)):
        texts = [r["text"] for r in train]
        both = fit(texts, [r["label"] for r in train], [r["text"] for r in val + test])
        probs = _baseline_probs(both, labels)
        row = scores(task, probs[len(val):], test, *fit_on_validation(task, probs[:len(val)], val))
        row.update(train_s=both.train_seconds, ms_per_ticket_batched=1000 * both.predict_seconds_per_text)
        result["methods"][name] = row
        print(name, json.dumps(row), flush=True)

    config = RunConfig.from_dict({"families": families, "encoder": encoder, "decoder": DECODER, "max_wrong": MAX_WRONG})
    started = time.perf_counter()
    version = build_version(Registry.local(OUT / "models"), task, _decoder_base(), train, val, config, threads=threads)
    result["build_s"] = time.perf_counter() - started
    result["chosen"], result["choice"] = version.manifest["family"], version.manifest["choice"]
    for family in families:
        part = version.manifest["families"][family]
        # temperature and hand-off threshold as the pipeline chose them on the validation rows
        cal = part["calibration"]
        probs_test, ms = tuesday_probs(version, task, family, test, threads)
        row = scores(task, probs_test, test, cal["temperature"], cal["handoff_threshold"] if task.handoff_label else None)
        row.update(train_s=part["timings"]["train_s"], p50_ms=float(np.percentile(ms, 50)),
                   p95_ms=float(np.percentile(ms, 95)), version=version.name, training=part.get("training"),
                   holdout_calibration=part.get("calibration"))
        result["methods"][family] = row
        print(family, json.dumps(row), flush=True)
    return result


def _decoder_base():
    from inference.base_models import smollm2_gguf

    return smollm2_gguf()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("banking77", "clinc150", "banking77_oos"), default="banking77")
    parser.add_argument("--per-label", default="10", help="train rows per label, or 'full'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", default="encoder", help="encoder, decoder or encoder,decoder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test-per-label", type=int, default=0, help="test on this many rows per label (0 = all)")
    parser.add_argument("--encoder", type=json.loads, default={}, help="JSON of EncoderConfig overrides")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    result = run(args.dataset, args.per_label, args.seed, families, args.threads, args.test_per_label, args.encoder)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"compare-{args.dataset}-k{args.per_label}-s{args.seed}-{'+'.join(families)}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
