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
           "encoder_head": "Tuesday encoder, head alone", "decoder": "Tuesday decoder"}
SIZES = ["10", "50", "full"]


def load() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(OUT.glob("compare-*.json"))]


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _promise(cal: dict, kind: str) -> str:
    """What a threshold promised on validation: '≤ 5 % (90 %)', or 'none (needs N)'."""
    if cal.get(f"{kind}_guaranteed") is None:
        return "not recorded"
    if cal[f"{kind}_guaranteed"]:
        return f"≤ {100 * cal['max_wrong']:.0f} % ({100 * cal['confidence']:.0f} %)"
    needs, rows = cal.get(f"{kind}_needs"), cal["holdout_n"] if kind == "abstain" else cal["holdout_in_scope"]
    return f"none (holdout {rows} < {needs})" if needs and rows < needs else "none (no cut meets it)"


def _name(run: dict, key: str) -> str:
    tag = ", " + ", ".join(f"{k} {v}" for k, v in sorted(run["encoder_config"].items())) \
        if run["encoder_config"] and key.startswith("encoder") else ""
    return METHODS[key] + tag


def table(runs: list[dict], dataset: str) -> str:
    runs = sorted((r for r in runs if f"{r['dataset']}{'' if r.get('field', 'label') == 'label' else '/' + r['field']}"
                   == dataset), key=lambda r: (SIZES.index(r["per_label"]), json.dumps(r["encoder_config"])))
    oos = any("handoff_recall" in m for r in runs for m in r["methods"].values())
    head = ["per label", "train rows", "method", "accuracy", "macro-F1", "label prior: power (accuracy without)",
            "ECE after", "with live prior (shift)", "abstain promise", "answered / wrong"]
    if oos:
        head += ["hand-off promise", "hand-off recall", "wrong escalations"]
    head += ["train time", "p50 latency"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        for key, m in r["methods"].items():
            cal, live = m["calibration"], m["with_prior"]
            lp = m.get("label_prior")
            prior = f"{lp['power']:g} ({_pct(lp['undone']['accuracy'])})" if lp and lp.get("power") else "0" if lp else "–"
            cells = [r["per_label"], str(r["n_train"]), _name(r, key), _pct(m["accuracy"]), _pct(m["macro_f1"]), prior,
                     f"{m['ece_after']:.3f}", f"{_pct(live['accuracy'])} ({live['shift']:.2f})",
                     _promise(cal, "abstain"), f"{_pct(m['coverage'])} / {_pct(m['wrong_when_shown'])}"]
            if oos:
                cells += [_promise(cal, "handoff"), _pct(m.get("handoff_recall")), _pct(m.get("wrong_escalations"))]
            latency = f"{m['p50_ms']:.0f} ms" if "p50_ms" in m else f"{m['ms_per_ticket_batched']:.1f} ms (batched)"
            cells += [f"{m['train_s']:.0f} s", latency]
            lines.append("| " + " | ".join(cells) + " |")
    sets = {(r["per_label"], r["n_validation"], r["n_test"], r["test_majority"], _rows_note(r)) for r in runs}
    notes = "; ".join(f"{k} per label: {v} validation rows{rows}, {t} test rows (largest label {100 * mj:.0f} %)"
                      for k, v, t, mj, rows in sorted(sets, key=lambda x: SIZES.index(x[0])))
    return "\n".join(lines) + f"\n\n{notes}."


def _rows_note(run: dict) -> str:
    """' (n choose, m promise)': which validation rows chose and which set the thresholds (Tuesday's split)."""
    cal = next((m["calibration"] for m in run["methods"].values() if m["calibration"].get("choose_n")), None)
    return f" ({cal['choose_n']} choose, {cal['holdout_n']} promise)" if cal else ""


def guarantee_table(rows: list[dict]) -> str:
    """bench.guarantee's draws: how often each threshold broke the 5 % target on test, by holdout size."""
    head = ["set", "per label", "method", "holdout", "abstain promised", "abstain broke", "answered (mean)",
            "hand-off promised", "hand-off broke", "same rows chose: abstain broke", "same rows chose: hand-off broke",
            "old hand-off rule broke"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        d = r["draws"]
        handoff = "handoff_realised_mean" in r
        if r.get("encoder_config") or r["method"] == "encoder_head" or not (handoff or r["promised"]["abstain"]):
            continue  # the default runs, and only rows where something was promised
        cells = [r["dataset"] + ("" if r["field"] == "label" else "/" + r["field"]), r["per_label"],
                 METHODS[r["method"]], str(r["n"]),
                 f"{r['promised']['abstain']}/{d}", f"{r['broke']['abstain']}/{r['promised']['abstain']}",
                 _pct(r["abstain_coverage_mean"]),
                 f"{r['promised']['handoff']}/{d}" if handoff else "–",
                 f"{r['broke']['handoff']}/{r['promised']['handoff']}" if handoff else "–",
                 f"{r['broke'].get('abstain_reused', 0)}/{r['promised'].get('abstain_reused', 0)}",
                 f"{r['broke'].get('handoff_reused', 0)}/{r['promised'].get('handoff_reused', 0)}" if handoff else "–",
                 f"{r['broke']['handoff_old']}/{d}" if handoff else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held_table(runs: list[dict]) -> str:
    """Each promise made on validation against the realised rate on test (held: at most the target)."""
    lines = ["| set | method | hand-off promise → realised wrong escalations | abstain promise → realised wrong among shown |",
             "|---|---|---|---|"]

    def cell(promised: bool, realised, target: float) -> str:
        if not promised:
            return "none made" + ("" if realised is None else f" ({_pct(realised)})")
        return f"≤ {100 * target:.0f} % → {_pct(realised)} ({'held' if realised <= target else '**broke**'})"

    for r in sorted(runs, key=lambda r: (r["dataset"], r["per_label"])):
        if r.get("field", "label") != "label" or set(r["encoder_config"]) - {"epochs"}:
            continue  # the full splits' declared `epochs: 1` stays in; trials of other settings do not
        for key, m in r["methods"].items():
            cal = m["calibration"]
            handoff = cell(cal["handoff_guaranteed"], m.get("wrong_escalations"), cal["max_wrong"]) \
                if "wrong_escalations" in m else "–"
            abstain = cell(cal["abstain_guaranteed"], m.get("wrong_when_shown"), cal["max_wrong"])
            lines.append(f"| {r['dataset']} {r['per_label']} | {_name(r, key)} | {handoff} | {abstain} |")
    return "\n".join(lines)


def far_table(promises: list[dict]) -> str:
    """bench.promises: the far rule on and off on the same version and promise rows, scored on test."""
    lines = ["| set | far rule | far cut | hand-off recall | wrong escalations | out-of-scope caught by the far rule alone |",
             "|---|---|---|---|---|---|"]
    for p in promises:
        for key, name in (("far_off", "off"), ("far_on", "on")):
            t, cal = p["test"][key], p["calibration"][key]
            cut = f"{cal['far_threshold']:.3f}" + ("" if cal.get("far_hands_off") or not cal["far_threshold"]
                                                   else " (asks)")
            lines.append(f"| {p['dataset']} {p['per_label']} | {name} | {cut if cal['far_threshold'] else '–'} | "
                         f"{_pct(t['handoff_recall'])} | {_pct(t['wrong_escalations'])} | "
                         f"{_pct(t['far_catches']) if cal['far_threshold'] else '–'} |")
    return "\n".join(lines)


def shift_table(promises: list[dict]) -> str:
    """bench.promises: live streams against the holdout, the check's first warning and the realised rates."""
    lines = ["| holdout → live stream | tickets | below the holdout's p05 | warned after | wrong among shown | "
             "wrong escalations |", "|---|---|---|---|---|---|"]
    for p in promises:
        for name, s in p["streams"].items():
            warned = "–" if s["warned_after"] is None else f"{s['warned_after']} tickets"
            lines.append(f"| {p['dataset']} validation → {name} | {s['n']} | {_pct(s['below_p05'])} | {warned} | "
                         f"{_pct(s['wrong_when_shown'])} | {_pct(s.get('wrong_escalations'))} |")
    return "\n".join(lines)


def seeds_table(runs: list[dict]) -> str:
    """Accuracy per training draw (seed) where one set and size was run with more than one seed, and the mean."""
    groups: dict = {}
    for r in runs:
        if not r["encoder_config"]:
            name = r["dataset"] + ("" if r.get("field", "label") == "label" else "/" + r["field"])
            groups.setdefault((name, r["per_label"]), []).append(r)
    lines = ["| set | per label | method | accuracy by seed | mean |", "|---|---|---|---|---|"]
    for (name, per_label), group in sorted(groups.items()):
        if len(group) < 2:
            continue
        group.sort(key=lambda r: r["seed"])
        for key in group[0]["methods"]:
            accs = [r["methods"][key]["accuracy"] for r in group if key in r["methods"]]
            by_seed = ", ".join(f"{r['seed']}: {_pct(r['methods'][key]['accuracy'])}" for r in group if key in r["methods"])
            lines.append(f"| {name} | {per_label} | {METHODS[key]} | {by_seed} | {_pct(sum(accs) / len(accs))} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def datasets(runs: list[dict]) -> list[str]:
    return sorted({r["dataset"] + ("" if r.get("field", "label") == "label" else "/" + r["field"]) for r in runs})


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in runs if r.get("field", "label") == "label"})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        # encoder-only runs, so every method sees the whole test split
        single = {r["per_label"]: r for r in runs if r["dataset"] == dataset and r["families"] == ["encoder"]
                  and r.get("field", "label") == "label" and not r["encoder_config"]}
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
    every = load()
    runs = [r for r in every if r["seed"] == 0]  # the tables are seed 0's; other draws only in the seeds table
    for dataset in datasets(runs):
        print(f"### {dataset}\n\n{table(runs, dataset)}\n")
    print(f"### Did the promises hold?\n\n{held_table(runs)}\n")
    if seeds_table(every):
        print(f"### Other training draws\n\n{seeds_table(every)}\n")
    promises = [json.loads(p.read_text()) for p in sorted(OUT.glob("promises-*.json"))]
    if promises:
        print(f"### The far rule\n\n{far_table(promises)}\n\n### Shifted live traffic\n\n{shift_table(promises)}\n")
    if (OUT / "guarantee.json").exists():
        print(f"### Promises on small holdouts\n\n{guarantee_table(json.loads((OUT / 'guarantee.json').read_text()))}\n")
    plot(runs, args.plot)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
