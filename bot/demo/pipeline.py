"""`tuesday demo`: the whole model pipeline on the built-in insurance task, in one terminal."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import click

from bot.lifecycle.training import load_config, train_and_gate
from bot.report import metrics_table, suggestion_card
from bot.runtime import Runtime
from bot.store.importer import import_file
from bot.trail.bases import approve_built_ins
from bot.trail.curation import holdout_rows
from inference.calibration import promise_lines
from inference.evaluation import evaluate
from inference.llama_predictor import LlamaPredictor
from inference.task import demo_examples_path

DEMO_CONFIG = Path(str(resources.files("inference") / "demo" / "train.yaml"))  # the demo's training config


def _step(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


def pick_examples(rows: list[dict], n: int = 3) -> list[dict]:
    """n holdout rows with different gold labels, in a stable order."""
    picked, labels = [], set()
    for row in sorted(rows, key=lambda r: r["id"]):
        if row["label"] not in labels:
            picked.append(row)
            labels.add(row["label"])
        if len(picked) == n:
            break
    return picked


def _train_field(rt: Runtime, config: dict) -> dict:
    """Train, gate and show one more field's task (its own version, holdout and promise)."""
    from bot.lifecycle.training import shared_encoder

    task = rt.task
    shared = shared_encoder(rt)
    how = (f"a head on {shared}'s encoder (one encoder pass serves both fields)" if shared
           else "its own adapter")
    _step(f"field {task.name!r}: training {how} on the examples labelled for it")
    summary = train_and_gate(rt, config=config, by="tuesday demo")
    click.echo(f"{task.name} {summary['version']}: {'promoted to production' if summary['promoted'] else 'kept as candidate'} "
               f"({summary['why']})")
    click.echo(metrics_table(task, {summary["version"]: summary["metrics"]}))
    return {"version": summary["version"], "promoted": summary["promoted"], "why": summary["why"],
            "metrics": {k: v for k, v in summary["metrics"].items() if k not in ("predictions", "probabilities")}}


def run_demo(rt: Runtime, *, config_file: Path | None = None, as_json: bool = False) -> dict:
    started = time.perf_counter()
    task = rt.task
    _step(f"task {task.name!r}: {len(task.labels)} labels, hand-off label {task.handoff_label!r}"
          + "".join(f"; task {t.name!r}: {len(t.labels)} labels" for t in rt.tasks if t.name != task.name))
    report = import_file(demo_examples_path(), rt.tasks, rt.sessions, source="demo")
    per_task = ", ".join(f"{name} {n}" for name, n in report.by_task.items()) if len(rt.tasks) > 1 else ""
    click.echo(f"imported demo examples into {rt.settings.store_url}: "
               f"added {report.added}{f' ({per_task})' if per_task else ''}, already present {report.duplicates}, "
               f"refused {len(report.errors)}")
    holdout = holdout_rows(rt.sessions, task, rt.settings.holdout_fraction, approval_required=rt.settings.data_approval)

    base = rt.base_model()
    columns = {}
    if base.suffix == ".gguf":
        _step(f"zero-shot base model {base.name} on the holdout ({len(holdout)} rows)")
        predictor = LlamaPredictor(base, task, version="base", reasons=False, n_threads=rt.settings.threads)
        try:
            columns["base (zero-shot)"] = evaluate(predictor, task, holdout, desc="base")
        finally:
            predictor.close()

    approved = approve_built_ins(rt.sessions, by="tuesday demo")
    if approved:
        click.echo(f"approved the built-in license notes of {', '.join(approved)} as 'tuesday demo' (Apache-2.0; "
                   "in a deployment an admin reviews them: `tuesday base show NAME`, `tuesday base approve NAME --by`)")
    _step("training a LoRA adapter, merging, exporting GGUF, quantizing, evaluating")
    config = load_config(config_file or DEMO_CONFIG)
    summary = train_and_gate(rt, config=config, by="tuesday demo")
    version = rt.registry.fetch(summary["version"], [f"metrics-{f}.json" for f in summary["families"]])
    for family in version.manifest["families"]:
        columns[f"{version.name} {family}"] = json.loads((version.path / f"metrics-{family}.json").read_text())
    click.echo(f"{version.name} serves the {version.manifest['family']} family ({version.manifest['choice']})")
    click.echo(f"{version.name}: {'promoted to production' if summary['promoted'] else 'kept as candidate'} "
               f"({summary['why']})")
    cal = version.manifest.get("calibration") or {}
    if cal:
        click.echo(f"calibration on the holdout: temperature {cal['temperature']:.2f}, ECE {cal['ece_before']:.3f} → "
                   f"{cal['ece_after']:.3f}; suggests a label on {100 * cal['coverage']:.0f}% of holdout tickets, "
                   f"{100 * cal['wrong_when_shown']:.1f}% of those wrong")
    for line in promise_lines(cal):
        click.echo(line)

    _step("before / after on the holdout")
    click.echo(metrics_table(task, columns))

    fields = {scoped.task.name: _train_field(scoped, config) for scoped in rt.each_task()[1:]}

    _step("three suggestions as an agent would see them" + (", every field" if fields else ""))
    examples = []
    predictor = rt.predictor(version.name, reasons=True)
    others = {name: rt.for_task(name).predictor(f["version"], reasons=False) for name, f in fields.items()}
    try:
        for row in pick_examples(holdout):
            suggestion = predictor.predict(row["text"])
            lines = [suggestion_card(suggestion, row["text"]), f"  agent's label: {row['label']}"]
            example = {"text": row["text"], "gold": row["label"], **suggestion.to_dict(), "fields": {}}
            for name, other in others.items():
                field = other.predict(row["text"])
                lines.append(f"  {name}: {field.label} ({100 * field.confidence:.0f}%) by {field.model_version}")
                example["fields"][name] = field.to_dict()
            click.echo("\n".join(lines) + "\n")
            examples.append(example)
    finally:
        predictor.close()
        for other in others.values():
            other.close()

    t = summary["timings"]
    total = time.perf_counter() - started
    for family, part in version.manifest["families"].items():
        ft = part["timings"]
        click.echo(f"{family}: train {ft['train_s']:.0f} s, export+quantize {ft['export_s']:.0f} s, "
                   f"holdout eval {ft['eval_s']:.0f} s")
    click.echo(f"demo total {total:.0f} s")
    result = {"version": version.name, "promoted": summary["promoted"], "why": summary["why"],
              "family": version.manifest["family"], "choice": version.manifest["choice"], "calibration": cal,
              "metrics": {k: {kk: vv for kk, vv in v.items() if kk not in ("predictions", "probabilities")}
                          for k, v in columns.items()},
              "examples": examples, "timings": {**t, "demo_total_s": total}, "fields": fields}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    return result
