"""Benchmark: do Tuesday's promises hold where tickets come from, and does it warn when they cannot?

    python -m bench.promises --dataset clinc150 --per-label 10
    python -m bench.promises --dataset banking77_oos --per-label 10 --foreign clinc150
    python -m bench.promises --dataset banking77_oos --per-label full --tag=-epochs1 --foreign clinc150

Reads the version bench.compare built (bench/out/compare-<set>-k<k>-s<seed>-encoder.json and
.npz: the encoder's served mix on validation and test, before temperature) and embeds the
validation and test rows with the version's evidence encoder, as serving does, for each ticket's
nearest-neighbour similarity to the training rows.

1. The far rule (issue 21, item 4): the version's calibration as the pipeline stored it (far rule
   on: its cut from the validation rows that choose) against the same code with the far rule off,
   both at the same 5 % wrong-escalation target from the same promise rows; scored on test:
   hand-off recall, realised wrong escalations, answered and wrong among answered.
2. Shifted live traffic (item 8): the test split read as a live stream in a seeded random order,
   then the in-scope test tickets mixed with a share of another set's tickets (--foreign; every one
   of them is out of scope for this task). For each stream: the promises' realised rates, and the
   exchangeability check (bot.monitor.promise) run after every ticket: after how many live tickets
   it first says the promise is not valid now.

Writes bench/out/promises-<set>-k<k>-s<seed>.json.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.compare import HANDOFF, MAX_WRONG, OUT, split_rows
from bench.datasets import load_split
from inference.calibration import abstain_needs, apply_temperature, calibrate
from inference.drift import top_similarities
from inference.encoder_predictor import LlamaEmbedder
from inference.evidence import EvidenceIndex
from inference.promise_rows import split
from inference.registry import Registry


def similarities(info, texts: list[str], threads: int) -> np.ndarray:
    """Each text's nearest training row's similarity, as serving records it."""
    ev = info.manifest["evidence"]
    embedder = LlamaEmbedder(info.path / ev["embedder"], max_length=ev["max_length"], max_chunks=ev.get("max_chunks", 1),
                             n_threads=threads)
    try:
        index = EvidenceIndex.load(info.path)
        return np.array(top_similarities(index, embedder.embed(texts)))
    finally:
        embedder.close()


def outcome(cal: dict, probs: np.ndarray, gold: np.ndarray, sims: np.ndarray, handoff: int | None) -> dict:
    """What the version's thresholds do on rows: answered, wrong among answered, hand-off recall, wrong escalations."""
    conf = apply_temperature(probs, cal["temperature"]).max(1)
    predicted = probs.argmax(1)
    far = sims < (cal.get("far_threshold") or 0.0)
    escalate = far | (conf < cal["handoff_threshold"]) | (predicted == handoff if handoff is not None else False)
    shown = (conf >= cal["abstain_threshold"]) & ~escalate
    correct = predicted == gold
    out = {"n": int(len(gold)), "answered": float(shown.mean()),
           "wrong_when_shown": float((~correct[shown]).mean()) if shown.any() else None,
           "far": float(far.mean())}
    if handoff is not None:
        oos = gold == handoff
        out.update(handoff_recall=float(escalate[oos].mean()) if oos.any() else None,
                   wrong_escalations=float(escalate[~oos].mean()) if (~oos).any() else None,
                   far_catches=float(far[oos].mean()) if oos.any() else None, oos_share=float(oos.mean()))
    return out


def first_warning(below: np.ndarray) -> int | None:
    """After how many live tickets the exchangeability check first fails (None: never): the check as the
    upkeep runs it, on the newest WINDOW_TICKETS tickets, here after every ticket."""
    from bot.monitor.promise import WINDOW_TICKETS, is_shifted

    counts = np.concatenate([[0], np.cumsum(below)])
    for n in range(1, len(below) + 1):
        start = max(0, n - WINDOW_TICKETS)
        if is_shifted(int(counts[n] - counts[start]), n - start):
            return n
    return None


def run(dataset: str, per_label: str, seed: int, foreign: str | None, threads: int, tag: str = "") -> dict:
    found = OUT / f"compare-{dataset}-k{per_label}-s{seed}-encoder{tag}.json"
    if not found.exists():
        encoder = " --encoder '{...}'" if tag else ""  # the tag names the run's EncoderConfig overrides
        raise SystemExit(f"no {found.name}: run `python -m bench.compare --dataset {dataset} --per-label {per_label} "
                         f"--seed {seed}{encoder}` first")
    meta = json.loads(found.read_text())
    data = np.load(found.with_suffix(".npz"))
    info = Registry.local(OUT / "models").get(meta["methods"]["encoder"]["version"])
    _, val, test = split_rows(dataset, per_label, seed, 0)
    names = meta["label_names"]
    handoff = names.index(HANDOFF) if HANDOFF in names else None
    probs_val, probs_test = data["encoder_val"], data["encoder_test"]
    gold_val, gold_test = data["gold_val"], data["gold_test"]
    sims_val = similarities(info, [r["text"] for r in val], threads)
    sims_test = similarities(info, [r["text"] for r in test], threads)
    served = info.manifest["families"]["encoder"]["calibration"]
    holdout = split(val, needs=abstain_needs(MAX_WRONG))
    in_scope = gold_val != handoff if handoff is not None else None
    common = dict(max_wrong=MAX_WRONG, in_scope=in_scope, handoff_index=handoff, promise=np.array(holdout.promise),
                  source=holdout.source)
    far_off = calibrate(probs_val, gold_val, **common).to_dict()
    far_on = calibrate(probs_val, gold_val, similarity=sims_val, **common).to_dict()
    result = {"dataset": dataset, "per_label": per_label, "seed": seed, "version": info.name,
              "choose_n": holdout.choose_n, "promise_n": holdout.promise_n,
              "served_far_threshold": served.get("far_threshold"), "p05": float(np.quantile(sims_val, 0.05)),
              "calibration": {"far_on": far_on, "far_off": far_off},
              "test": {"far_on": outcome(far_on, probs_test, gold_test, sims_test, handoff),
                       "far_off": outcome(far_off, probs_test, gold_test, sims_test, handoff)}}
    ref = json.loads((info.path / "drift.json").read_text())["holdout_similarity"]["p05"]
    result["reference_p05"] = ref
    rng = np.random.default_rng(seed)
    streams = {"test as it comes": rng.permutation(len(test))}
    if handoff is not None:
        streams["test, in scope only"] = rng.permutation(np.flatnonzero(gold_test != handoff))
    result["streams"] = {}
    for name, order in streams.items():
        result["streams"][name] = {**outcome(far_on, probs_test[order], gold_test[order], sims_test[order], handoff),
                                   "below_p05": float((sims_test[order] < ref).mean()),
                                   "warned_after": first_warning(sims_test[order] < ref)}
    if foreign and handoff is not None:
        foreign_rows = load_split(foreign, "test")
        pick = np.random.default_rng(seed + 5).permutation(len(foreign_rows))[:1000]
        foreign_texts = [foreign_rows[i]["text"] for i in pick]
        from inference.serving import load_predictor
        from inference.task import Task

        task = Task(name=dataset, labels={label: "" for label in names}, handoff_label=HANDOFF, description="",
                    list_labels=False)
        predictor = load_predictor(info, task, family="encoder", calibrated=False, evidence=False, threads=threads)
        try:
            got = [predictor.predict(t).probabilities for t in foreign_texts]
            foreign_probs = np.array([[p[label] for label in names] for p in got])
        finally:
            predictor.close()
        foreign_sims = similarities(info, foreign_texts, threads)
        inside = np.flatnonzero(gold_test != handoff)
        for share in (0.1, 0.3):
            k = int(round(share / (1 - share) * len(inside)))
            k = min(k, len(foreign_texts))
            probs = np.concatenate([probs_test[inside], foreign_probs[:k]])
            gold = np.concatenate([gold_test[inside], np.full(k, handoff)])
            sims = np.concatenate([sims_test[inside], foreign_sims[:k]])
            order = rng.permutation(len(gold))
            result["streams"][f"in scope + {100 * share:.0f} % {foreign}"] = {
                **outcome(far_on, probs[order], gold[order], sims[order], handoff),
                "below_p05": float((sims[order] < ref).mean()),
                "warned_after": first_warning(sims[order] < ref)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="clinc150")
    parser.add_argument("--per-label", default="10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--foreign", default=None, help="another set whose test tickets are mixed in as out of scope")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="", help="the bench.compare run's --encoder tag, e.g. -epochs1 for a full split")
    args = parser.parse_args()
    result = run(args.dataset, args.per_label, args.seed, args.foreign, args.threads, args.tag)
    out = OUT / f"promises-{args.dataset}-k{args.per_label}-s{args.seed}{args.tag}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["test"], indent=2))
    print(json.dumps(result["streams"], indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
