"""Benchmark: Tuesday's model families against two baselines on the shared public datasets.

    python -m bench.compare --dataset banking77 --per-label 10
    python -m bench.compare --dataset support_tickets --per-label 50
    python -m bench.compare --dataset support_tickets --per-label 10 --field type
    python -m bench.compare --dataset banking77 --per-label full --encoder '{"epochs": 1}'
    python -m bench.compare --dataset banking77 --per-label 10 --families encoder,decoder --test-per-label 10

Rows, per run (seeded, the same rows for every method):
- train: k rows per label of the train split (or all of it);
- validation: the dataset's validation split (clinc150, banking77_oos, support_tickets);
  banking77 has none, so 5 rows per label are set aside from its train split before the train
  rows are drawn. Tuesday uses these rows as its holdout, split by text (inference.promise_rows):
  half choose (family, mix of its voices, label prior, temperature, far cut), the other half set
  the thresholds and nothing else; the baselines get their label prior, temperature and
  thresholds from the same halves by the same code (inference.calibration.calibrate);
- test: the whole test split (or --test-per-label rows per label), used once per method, never
  to choose anything.

Thresholds (inference.calibration): the abstain threshold promises at most 5 % wrong among the
suggestions shown, the hand-off threshold (sets with `oos`) at most 5 % of in-scope tickets
escalated, each with 90 % confidence from the validation rows, or says the rows are too few.
Reported on test: what each promised and what happened (coverage and wrong-when-shown;
hand-off recall and realised wrong escalations, a ticket being escalated when the predicted
label is `oos` or the confidence is below the threshold).

Skewed labels (inference.priors.VersionPrior, issue 6): every method's probabilities are moved by
p ∝ p · (target/train)^power, target = the label frequencies of the train + validation rows, train
= those of the train rows, the power chosen on the validation rows by log-loss after temperature
scaling (0 unless it pays): Tuesday's pipeline chooses it for its version, the baselines get it by
the same rule here. Each method's row reports accuracy as chosen and, under "label_prior", the power, the
losses it was chosen by and the accuracy and macro-F1 with the prior undone (power 0).

Label frequencies (inference.priors): the test split is also read as an unlabelled live stream;
EM re-estimates the label prior from each method's calibrated probabilities (starting from the
prior they carry: the train rows' moved by the method's own) and the columns "with prior" score
the re-weighted probabilities (labels are never read by it).

    python -m bench.compare --dataset support_tickets --per-label 10 --families none   # baselines only

Writes bench/out/compare-<dataset>[-<field>]-k<k>-s<seed>-<families>.json (metrics) and .npz
(each method's validation and test probabilities, read by bench.guarantee); docs/benchmarks.md
quotes them through bench.tables.
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
from inference.calibration import abstain_needs, apply_temperature, calibrate, expected_calibration_error
from inference.metrics import classification_report
from inference.promise_rows import split
from inference.priors import VersionPrior, adjust, choose_power, estimate_prior, total_variation
from inference.registry import Registry
from inference.serving import load_predictor
from inference.stacking import Mix
from inference.task import Task

OUT = Path(__file__).resolve().parent / "out"
HANDOFF = "oos"
MAX_WRONG = 0.05
# Fixed before any test number was seen; the decoder settings are the pipeline benchmark's.
DECODER = {"epochs": 1, "rank": 16, "alpha": 32, "learning_rate": 1e-3, "layers": 10, "batch_size": 8,
           "dropout": 0.1, "with_reasons": False}


def split_rows(dataset: str, per_label: str, seed: int, test_per_label: int, field: str = "label"):
    """(train, validation, test) rows; `field` names the column used as the label (support_tickets: type, priority)."""
    def relabel(rows: list[dict]) -> list[dict]:
        return rows if field == "label" else [{**r, "label": r[field]} for r in rows]

    train_all = relabel(load_split(dataset, "train"))
    if dataset == "banking77":
        validation = sample_per_label(train_all, 5, seed + 1)
        held = {r["id"] for r in validation}
        train_all = [r for r in train_all if r["id"] not in held]
    else:
        validation = relabel(load_split(dataset, "validation"))
    train = train_all if per_label == "full" else sample_per_label(train_all, int(per_label), seed)
    test = relabel(load_split(dataset, "test"))
    if test_per_label:
        test = sample_per_label(test, test_per_label, seed + 2)
    return train, validation, test


def gold_of(task: Task, rows: list[dict]) -> np.ndarray:
    index = {label: i for i, label in enumerate(task.label_names)}
    return np.array([index[r["label"]] for r in rows])


def fit_on_validation(task: Task, probs_val: np.ndarray, val: list[dict]) -> dict:
    """Temperature and thresholds (with what they promise) chosen on validation rows, as Tuesday's pipeline does."""
    gold = gold_of(task, val)
    handoff = task.label_names.index(HANDOFF) if task.handoff_label else None
    in_scope = gold != handoff if handoff is not None else None
    holdout = split(val, needs=abstain_needs(MAX_WRONG))  # rows that choose never set thresholds, as in the pipeline
    return calibrate(probs_val, gold, max_wrong=MAX_WRONG, in_scope=in_scope, handoff_index=handoff,
                     promise=np.array(holdout.promise), source=holdout.source).to_dict()


def _label_metrics(task: Task, probs: np.ndarray, test: list[dict]) -> dict:
    labels = task.label_names
    report = classification_report(task, [r["label"] for r in test], [labels[i] for i in probs.argmax(1)])
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


def scores(task: Task, probs_test: np.ndarray, test: list[dict], cal: dict, train_prior: np.ndarray) -> dict:
    """What one method's test distributions score, under the temperature and thresholds it chose on validation."""
    gold = gold_of(task, test)
    after = apply_temperature(probs_test, cal["temperature"])
    confidence, correct = after.max(1), probs_test.argmax(1) == gold
    shown = confidence >= cal["abstain_threshold"]
    out = {**_label_metrics(task, probs_test, test), "n_test": len(test), "calibration": cal,
           "ece_before": expected_calibration_error(probs_test.max(1), correct),
           "ece_after": expected_calibration_error(confidence, correct),
           "coverage": float(shown.mean()), "wrong_when_shown": float((~correct[shown]).mean()) if shown.any() else None}
    if task.handoff_label:
        handoff = task.label_names.index(HANDOFF)
        escalate = (probs_test.argmax(1) == handoff) | (confidence < cal["handoff_threshold"])
        oos = gold == handoff
        out.update(handoff_recall=float(escalate[oos].mean()), wrong_escalations=float(escalate[~oos].mean()),
                   in_scope_accuracy=float(correct[~oos].mean()))
    # The test split read as an unlabelled live stream: EM prior, then the re-weighted probabilities.
    prior = estimate_prior(after, train_prior)
    moved = adjust(after, train_prior, prior)
    out["with_prior"] = {**_label_metrics(task, moved, test), "shift": total_variation(prior, train_prior),
                         "ece": expected_calibration_error(moved.max(1), moved.argmax(1) == gold)}
    return out


def choose_label_prior(task: Task, probs_val: np.ndarray, val: list[dict], train: list[dict]) -> tuple[VersionPrior, dict]:
    """The baselines' label prior by the rule Tuesday's pipeline follows (trainer.label_prior): target = the
    train + validation rows' label frequencies, the power chosen on the validation rows that choose; and its losses."""
    prior = VersionPrior.from_rows(task.label_names, train, train + val,
                                   keep=(task.handoff_label,) if task.handoff_label else ())
    choosing = ~np.array(split(val, needs=abstain_needs(MAX_WRONG)).promise)  # as the pipeline: the rows that choose
    power, losses = choose_power(probs_val[choosing], gold_of(task, val)[choosing], prior, task.label_names)
    return VersionPrior(prior.train, prior.target, power), {str(p): round(loss, 4) for p, loss in losses.items()}


def prior_report(task: Task, prior: VersionPrior | None, undone_test: np.ndarray, test: list[dict],
                 losses: dict | None) -> dict:
    """The row's "prior": the power chosen (0: none), what it was chosen by, and the test scores without it."""
    return {"power": prior.power if prior is not None else 0.0, "losses": losses,
            "undone": _label_metrics(task, undone_test, test)}


def _baseline_probs(result, labels: list[str]) -> np.ndarray:
    """Reorder a baseline's columns to task order (a label absent from training gets 0)."""
    out = np.zeros((len(result.probabilities), len(labels)))
    for j, label in enumerate(result.classes):
        out[:, labels.index(label)] = result.probabilities[:, j]
    return out


def tuesday_probs(version, task: Task, family: str, rows: list[dict], threads: int):
    """Uncalibrated distributions (the version's label prior applied, as served), per-ticket latencies and that
    prior (None: none) of one family (decoder; encoder: see encoder_voices)."""
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
    return np.array(probs), ms, predictor.prior


def encoder_voices(version, task: Task, rows_by_split: dict[str, list[dict]], threads: int, timed: int = 300):
    """Each voice's probabilities on each split (for the served mix and the head alone), the mix, the
    version's label prior (None: none), and the served per-ticket latency (predict(), evidence off)
    on the first `timed` test rows."""
    predictor = load_predictor(version, task, family="encoder", calibrated=False, evidence=False, threads=threads,
                               every_voice=True)
    try:
        ms = [predictor.predict(row["text"]).latency_ms for row in rows_by_split["test"][:timed]]
        voices = {}
        for split, rows in rows_by_split.items():
            got: dict[str, list] = {}
            for row in rows:
                for name, probs in predictor.voices(row["text"], every=True)[1].items():
                    got.setdefault(name, []).append(probs)
            voices[split] = {name: np.array(v) for name, v in got.items()}
        return voices, predictor.mix, predictor.prior, ms
    finally:
        predictor.close()


def run(dataset: str, per_label: str, seed: int, families: list[str], threads: int, test_per_label: int,
        encoder: dict, field: str = "label") -> tuple[dict, dict]:
    from trainer.config import RunConfig
    from trainer.pipeline import build_version

    train, val, test = split_rows(dataset, per_label, seed, test_per_label, field)
    labels = sorted({r["label"] for r in train + val + test})
    task = Task(name=dataset, labels={label: "" for label in labels}, handoff_label=HANDOFF if HANDOFF in labels else None,
                description="messages from customers", list_labels=False)
    counts = np.array([sum(r["label"] == label for r in train) for label in labels], dtype=float)
    train_shares = dict(zip(labels, counts / counts.sum()))
    result = {"dataset": dataset, "field": field, "per_label": per_label, "seed": seed, "n_train": len(train),
              "n_validation": len(val), "n_test": len(test), "labels": len(labels), "label_names": labels, "threads": threads,
              "machine": platform.machine(), "families": families, "decoder_config": DECODER, "encoder_config": encoder,
              "test_majority": max(sum(r["label"] == label for r in test) for label in labels) / len(test),
              "methods": {}}
    saved = {"gold_val": gold_of(task, val), "gold_test": gold_of(task, test)}

    def record(name: str, probs_val: np.ndarray, probs_test: np.ndarray, cal: dict | None = None, *,
               prior: VersionPrior | None = None, **extra) -> None:
        # the EM starts from the prior the probabilities carry: the train rows' moved by the method's own
        carried = prior.carried(train_shares) if prior is not None else train_shares
        row = scores(task, probs_test, test, cal or fit_on_validation(task, probs_val, val),
                     np.array([carried[label] for label in labels]))
        row.update(extra)
        result["methods"][name] = row
        saved[f"{name}_val"], saved[f"{name}_test"] = probs_val, probs_test
        print(name, json.dumps({k: v for k, v in row.items() if k != "calibration"}), flush=True)

    for name, fit in (("tfidf_lr", tfidf_lr), ("minilm_lr", minilm_lr)):
        both = fit([r["text"] for r in train], [r["label"] for r in train], [r["text"] for r in val + test])
        probs = _baseline_probs(both, labels)
        prior, losses = choose_label_prior(task, probs[:len(val)], val, train)
        moved = prior.apply(probs, labels)
        record(name, moved[:len(val)], moved[len(val):], prior=prior, train_s=both.train_seconds,
               ms_per_ticket_batched=1000 * both.predict_seconds_per_text,
               label_prior=prior_report(task, prior, probs[len(val):], test, losses))

    if not families:  # baselines only
        return result, saved

    config = RunConfig.from_dict({"families": families, "encoder": encoder, "decoder": DECODER, "max_wrong": MAX_WRONG})
    started = time.perf_counter()
    version = build_version(Registry.local(OUT / "models"), task, _decoder_base(), train, val, config, threads=threads)
    result["build_s"] = time.perf_counter() - started
    result["chosen"], result["choice"] = version.manifest["family"], version.manifest["choice"]
    for family in families:
        part = version.manifest["families"][family]
        common = dict(train_s=part["timings"]["train_s"], version=version.name, training=part.get("training"))
        if family == "encoder":
            voices, mix, prior, ms = encoder_voices(version, task, {"val": val, "test": test}, threads)
            common.update(p50_ms=float(np.percentile(ms, 50)), p95_ms=float(np.percentile(ms, 95)), mix=part.get("mix"))
            own = {split: mix.combine(**voices[split]) for split in ("val", "test")}
            served = {split: probs if prior is None else prior.apply(probs, labels) for split, probs in own.items()}
            # as served: the mix, the label prior, and the temperature and thresholds the pipeline chose on validation
            record("encoder", served["val"], served["test"], part["calibration"], prior=prior,
                   label_prior=prior_report(task, prior, own["test"], test, (part.get("prior") or {}).get("losses")),
                   **common)
            if mix != Mix(k=mix.k, tau=mix.tau):  # the head alone, for comparison (its own validation fit, no prior)
                record("encoder_head", voices["val"]["head"], voices["test"]["head"], **common)
        else:
            probs_test, ms, prior = tuesday_probs(version, task, family, test, threads)
            own = probs_test if prior is None else prior.undo(probs_test, labels)
            record(family, np.zeros((0, len(labels))), probs_test, part["calibration"], prior=prior,
                   label_prior=prior_report(task, prior, own, test, (part.get("prior") or {}).get("losses")),
                   p50_ms=float(np.percentile(ms, 50)), p95_ms=float(np.percentile(ms, 95)), **common)
    return result, saved


def _decoder_base():
    from inference.base_models import smollm2_gguf

    return smollm2_gguf()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("banking77", "clinc150", "banking77_oos", "support_tickets"),
                        default="banking77")
    parser.add_argument("--field", default="label", help="the column used as the label (support_tickets: type, priority)")
    parser.add_argument("--per-label", default="10", help="train rows per label, or 'full'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", default="encoder",
                        help="encoder, decoder, encoder,decoder, or none (the baselines only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test-per-label", type=int, default=0, help="test on this many rows per label (0 = all)")
    parser.add_argument("--encoder", type=json.loads, default={}, help="JSON of EncoderConfig overrides")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip() and f.strip() != "none"]
    result, saved = run(args.dataset, args.per_label, args.seed, families, args.threads, args.test_per_label,
                        args.encoder, args.field)
    OUT.mkdir(parents=True, exist_ok=True)
    name = args.dataset + ("" if args.field == "label" else f"-{args.field}")
    tag = "" if not args.encoder else "-" + "-".join(f"{k}{v}" for k, v in sorted(args.encoder.items()))
    out = OUT / f"compare-{name}-k{args.per_label}-s{args.seed}-{'+'.join(families) or 'baselines'}{tag}.json"
    out.write_text(json.dumps(result, indent=2))
    np.savez_compressed(out.with_suffix(".npz"), **saved)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
