"""Do the thresholds keep their promise on small holdouts? Repeated draws on real data.

    python -m bench.guarantee [--sizes 100,300] [--draws 200]

Reads the validation and test probabilities bench.compare saved (bench/out/compare-*.npz). For
each method and holdout size n, draws n validation rows at random (many times), chooses the
temperature on half of them and sets the thresholds on the other half, as the pipeline does
(inference.calibration.calibrate with a promise mask), and scores them on the whole test split:
the share of draws whose realised test rate broke the 5 % target. With a 90 % promise that share
should stay near or below 10 %. Beside it: the same n rows doing both jobs (the rule before issue
21), and the hand-off rule before the guarantee (the floor(5 % · n)-th in-scope confidence, no bound).
"""

from __future__ import annotations

import argparse
import json
import numpy as np

from bench.compare import HANDOFF, MAX_WRONG, OUT
from inference.calibration import apply_temperature, calibrate


def old_handoff(confidence: np.ndarray, in_scope: np.ndarray, max_wrong: float) -> float:
    """The hand-off rule before the guarantee: the floor(max_wrong * n)-th in-scope confidence."""
    conf = np.sort(confidence[in_scope])
    allowed = int(np.floor(max_wrong * len(conf)))
    return float(conf[min(allowed, len(conf) - 1)]) if len(conf) else 0.0


def simulate(val: np.ndarray, gold_val: np.ndarray, test: np.ndarray, gold_test: np.ndarray, handoff: int | None,
             n: int, draws: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    broke = {"abstain": 0, "handoff": 0, "abstain_reused": 0, "handoff_reused": 0, "handoff_old": 0}
    promised = {"abstain": 0, "handoff": 0, "abstain_reused": 0, "handoff_reused": 0}
    realised = {key: [] for key in ("abstain", "handoff", "abstain_reused", "handoff_reused", "handoff_old", "coverage")}
    correct, ins = test.argmax(1) == gold_test, gold_test != handoff
    for _ in range(draws):
        pick = rng.choice(len(val), size=min(n, len(val)), replace=False)
        in_scope = gold_val[pick] != handoff if handoff is not None else None
        promise = rng.random(len(pick)) < 0.5
        for suffix, mask in (("", promise), ("_reused", None)):
            cal = calibrate(val[pick], gold_val[pick], max_wrong=MAX_WRONG, in_scope=in_scope, handoff_index=handoff,
                            promise=mask)
            conf = apply_temperature(test, cal.temperature).max(1)
            shown = conf >= cal.abstain_threshold
            wrong = float((~correct[shown]).mean()) if shown.any() else 0.0
            realised["abstain" + suffix].append(wrong)
            if not suffix:
                realised["coverage"].append(float(shown.mean()))
            if cal.abstain_guaranteed:
                promised["abstain" + suffix] += 1
                broke["abstain" + suffix] += wrong > MAX_WRONG
            if handoff is not None:
                escalate = (test.argmax(1) == handoff) | (conf < cal.handoff_threshold)
                rate = float(escalate[ins].mean())
                realised["handoff" + suffix].append(rate)
                if cal.handoff_guaranteed:
                    promised["handoff" + suffix] += 1
                    broke["handoff" + suffix] += rate > MAX_WRONG
        if handoff is not None:
            cal = calibrate(val[pick], gold_val[pick], max_wrong=MAX_WRONG, in_scope=in_scope, handoff_index=handoff)
            conf = apply_temperature(test, cal.temperature).max(1)
            calibrated_val = apply_temperature(val[pick], cal.temperature)
            score = np.where(calibrated_val.argmax(1) == handoff, 0.0, calibrated_val.max(1))
            old = (test.argmax(1) == handoff) | (conf < old_handoff(score, in_scope, MAX_WRONG))
            realised["handoff_old"].append(float(old[ins].mean()))
            broke["handoff_old"] += float(old[ins].mean()) > MAX_WRONG
    out = {"n": n, "draws": draws, "promised": promised, "broke": broke,
           "abstain_coverage_mean": float(np.mean(realised["coverage"]))}
    for key, values in realised.items():
        if values and key != "coverage":
            out[f"{key}_realised_mean"] = float(np.mean(values))
            out[f"{key}_realised_p90"] = float(np.percentile(values, 90))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300")
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    results = []
    for path in sorted(OUT.glob("compare-*.npz")):
        meta = json.loads(path.with_suffix(".json").read_text())
        data = np.load(path)
        names = meta["label_names"]
        handoff = names.index(HANDOFF) if HANDOFF in names else None
        for method in meta["methods"]:
            if f"{method}_val" not in data or len(data[f"{method}_val"]) == 0:
                continue
            for n in (int(s) for s in args.sizes.split(",")):
                row = simulate(data[f"{method}_val"], data["gold_val"], data[f"{method}_test"], data["gold_test"],
                               handoff, n, args.draws)
                row.update(dataset=meta["dataset"], field=meta.get("field", "label"), per_label=meta["per_label"],
                           method=method, encoder_config=meta["encoder_config"])
                results.append(row)
                print(json.dumps(row), flush=True)
    out = OUT / "guarantee.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
