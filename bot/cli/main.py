"""The `tuesday` command group: import, train, eval, predict, models, demo; the other groups are added from their modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bot.lifecycle.training import load_config, train_and_gate
from bot.report import metrics_table, models_table, suggestion_card
from bot.runtime import Runtime
from bot.settings import Settings
from inference.calibration import expected_calibration_error
from inference.errors import TuesdayError


def _emit(as_json: bool, data, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


TASK_HELP = "Only this task (a name from the task file); default: every task."


class _Group(click.Group):
    """Translate Tuesday's own errors into a clean message and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TuesdayError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder [env TUESDAY_DATA_DIR, default .tuesday].")
@click.option("--task", "task_file", type=click.Path(path_type=Path), help="Task YAML [env TUESDAY_TASK_FILE, default: demo task].")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, task_file: Path | None) -> None:
    """Tuesday: a triage assistant that learns your team's labels from your team's clicks."""
    overrides = {k: v for k, v in {"data_dir": data_dir, "task_file": task_file}.items() if v is not None}
    settings = Settings(**overrides)
    if overrides:
        from bot.cli.serve import export_options

        export_options(settings)  # train jobs run in this process read TUESDAY_* too
    ctx.obj = Runtime(settings)


@main.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--source", default="import", show_default=True, help="Namespace of the rows' ids (dedupe key).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def import_cmd(rt: Runtime, file: Path, source: str, as_json: bool) -> None:
    """Load labelled examples (JSONL or CSV: text, label, optional reason, optional id)."""
    from bot.store.importer import import_file

    report = import_file(file, rt.tasks, rt.sessions, source=source)
    per_task = (" (" + ", ".join(f"{name} {report.by_task.get(name, 0)}" for name in rt.tasks.names) + ")"
                if len(rt.tasks) > 1 else "")
    lines = [f"added {report.added}{per_task}, already present {report.duplicates}, refused {len(report.errors)}"
             + (f", forgotten on request {report.forgotten}" if report.forgotten else "")]
    lines += [f"  line {n}: {msg}" for n, msg in report.errors]
    _emit(as_json, report.to_dict(), "\n".join(lines))
    if report.errors:
        sys.exit(1)


@main.command()
@click.option("--base", type=click.Path(path_type=Path), help="Base model: GGUF file or HF folder [env TUESDAY_BASE_MODEL].")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML/JSON of training config overrides.")
@click.option("--data", type=click.Path(path_type=Path), help="Train on this labelled file instead of the store.")
@click.option("--no-promote", is_flag=True, help="Keep the new version a candidate even if it passes the gate.")
@click.option("--task", "task_name", help=TASK_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def train(rt: Runtime, base: Path | None, config_file: Path | None, data: Path | None, no_promote: bool,
          task_name: str | None, as_json: bool) -> None:
    """Train a new model version of each task (or of one), then promote it if it beats that task's production."""
    summaries, texts = [], []
    for scoped in rt.tasks_named(task_name):
        summary = train_and_gate(scoped, base=base, config=load_config(config_file), data=data,
                                 promote=not no_promote, progress=not as_json)
        verdict = ("promoted to production" if summary["promoted"] else
                   f"gate passed; awaiting sign-off: tuesday promote {summary['version']} --by NAME"
                   if summary.get("awaiting_signoff") else
                   f"gate passed; in shadow until agents label {rt.settings.shadow_min_tickets} of its live tickets "
                   "(tuesday shadow)" if summary.get("awaiting_shadow") else "kept as candidate")
        label = f"{scoped.task.name} " if len(rt.tasks) > 1 else ""
        texts.append(f"{label}{summary['version']}: {verdict} ({summary['why']})\n"
                     + metrics_table(scoped.task, {summary["version"]: summary["metrics"]}))
        summaries.append({"task": scoped.task.name, **summary})
    _emit(as_json, summaries[0] if len(summaries) == 1 else summaries, "\n\n".join(texts))


def version_scopes(rt: Runtime, task_name: str | None, version: str | None) -> list[Runtime]:
    """A named version's task, else the named task, else every task."""
    return [rt.for_version(version)] if version else rt.tasks_named(task_name)


@main.command("eval")
@click.option("--version", help="Model version (default: production, else newest).")
@click.option("--task", "task_name", help=TASK_HELP)
@click.option("--data", type=click.Path(path_type=Path), help="Labelled file to score (default: the store's holdout).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def eval_cmd(rt: Runtime, version: str | None, task_name: str | None, data: Path | None, as_json: bool) -> None:
    """Score a version of each task and print accuracy, macro-F1, per-label precision/recall, hand-off recall."""
    results, texts = [], []
    for scoped in version_scopes(rt, task_name, version):
        metrics = _evaluate(scoped, version, data, as_json)
        results.append(metrics)
        head = f"{scoped.task.name}:\n" if len(rt.tasks) > 1 else ""
        texts.append(head + metrics_table(scoped.task, {metrics["version"]: metrics})
                     + f"\nexpected calibration error (served confidence): {metrics['ece']:.3f}")
    _emit(as_json, results[0] if len(results) == 1 else results, "\n\n".join(texts))


def _evaluate(rt: Runtime, version: str | None, data: Path | None, quiet: bool) -> dict:
    from bot.store.importer import read_labelled
    from bot.trail.curation import holdout_rows
    from inference.evaluation import evaluate

    if data is not None:
        rows, errors = read_labelled(data, rt.task)
        if errors:
            raise click.ClickException(f"{data}: line {errors[0][0]}: {errors[0][1]} ({len(errors)} bad rows)")
    else:
        rows = holdout_rows(rt.sessions, rt.task, rt.settings.holdout_fraction,
                            approval_required=rt.settings.data_approval)
    if not rows:
        raise click.ClickException(f"nothing to evaluate for {rt.task.name}: import labelled examples "
                                   "or pass --data FILE")
    predictor = rt.predictor(version, reasons=False)
    try:
        metrics = evaluate(predictor, rt.task, rows, progress=not quiet)
    finally:
        predictor.close()
    probabilities = metrics.pop("probabilities")
    correct = [p == r["label"] for p, r in zip(metrics.pop("predictions"), rows)]
    metrics["ece"] = expected_calibration_error([max(p) for p in probabilities], correct)
    metrics["version"] = predictor.version
    metrics["task"] = rt.task.name
    return metrics


@main.command()
@click.argument("text")
@click.option("--version", help="Model version (default: each task's production, else its newest).")
@click.option("--task", "task_name", help=TASK_HELP)
@click.option("--no-reason", is_flag=True, help="Skip the generated reason (faster).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def predict(rt: Runtime, text: str, version: str | None, task_name: str | None, no_reason: bool, as_json: bool) -> None:
    """Suggest every field (each task's label) for one message."""
    from inference.pii import mask_pii

    masked = mask_pii(text)
    fields, cards = {}, []
    for scoped in version_scopes(rt, task_name, version):
        predictor = scoped.predictor(version, reasons=False if no_reason else None)
        try:
            suggestion = predictor.predict(masked)
        finally:
            predictor.close()
        routing = routed(rt, suggestion)
        fields[scoped.task.name] = {**suggestion.to_dict(), "routing": routing}
        card = suggestion_card(suggestion, masked, routing)
        cards.append(f"[{scoped.task.name}]\n{card}" if len(rt.tasks) > 1 else card)
    _emit(as_json, next(iter(fields.values())) if len(fields) == 1 else {"fields": fields}, "\n\n".join(cards))


def routed(rt: Runtime, suggestion) -> dict:
    """What the worker would do with the suggestion: {routing, shown, why}, by its version's thresholds."""
    from bot.store.tickets import OUT_OF_SCOPE, SUGGESTED, route
    from bot.worker.predictors import served_thresholds

    cut = served_thresholds(rt, rt.registry.get(suggestion.model_version))
    similarity = suggestion.evidence[0].get("similarity") if suggestion.evidence else None
    kind, shown = route(suggestion.label, suggestion.confidence, threshold=cut.abstain, handoff_threshold=cut.handoff,
                        handoff_label=cut.handoff_label, similarity=similarity, far=cut.far,
                        far_hands_off=cut.far_hands_off)
    if cut.far and similarity is not None and similarity < cut.far:
        why = f"unlike every labelled ticket (nearest similarity {similarity:.2f} < {cut.far:.2f})"
    elif kind == OUT_OF_SCOPE:
        why = f"confidence below the hand-off threshold {100 * cut.handoff:.0f}%"
    elif kind == SUGGESTED:
        why = f"confidence at or above {100 * cut.abstain:.0f}%"
    else:
        why = f"confidence below {100 * cut.abstain:.0f}%: asks for a label"
    return {"routing": kind, "shown": shown, "why": why}


@main.command()
@click.option("--task", "task_name", help=TASK_HELP)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models(rt: Runtime, task_name: str | None, as_json: bool) -> None:
    """List each task's model versions with their status and holdout metrics."""
    data, texts = [], []
    for scoped in rt.tasks_named(task_name):
        versions = [rt.registry.get(n) for n in scoped.production.names()]
        statuses = scoped.production.statuses()
        data += [{"task": scoped.task.name, "version": v.name, "status": statuses.get(v.name),
                  "created_at": v.manifest.get("created_at"), "metrics": v.metrics,
                  "base": v.manifest.get("license", {}).get("model")} for v in versions]
        table = models_table(versions, statuses)
        texts.append(f"{scoped.task.name}:\n{table}" if len(rt.tasks) > 1 else table)
    _emit(as_json, data, "\n\n".join(texts))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON at the end.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Training config overrides for the demo run.")
@click.option("--online", is_flag=True, help="Run the Slack loop against local stand-ins (needs a production model).")
@click.option("--hosts", is_flag=True, help="Run web, CPU and GPU hosts as separate processes sharing only Redis, "
              "SQL and S3 (needs TUESDAY_DATABASE_URL, TUESDAY_REDIS_URL and an s3:// TUESDAY_ARTIFACTS_URL).")
@click.pass_obj
def demo(rt: Runtime, as_json: bool, config_file: Path | None, online: bool, hosts: bool) -> None:
    """Import the demo task, train, export, quantize and show before/after on the holdout.

    With --online: webhook tickets → Slack suggestions → scripted clicks → /tuesday retrain → report.
    With --hosts: the same loop across three hosts, in folders under the data folder's hosts/.
    """
    if hosts:
        from bot.demo.hosts import run_hosts_demo

        summary = run_hosts_demo(rt, root=rt.settings.data_dir.resolve() / "hosts", config_file=config_file)
        if as_json:
            click.echo(json.dumps(summary, indent=2, default=str))
        return
    if online:
        from bot.demo.online import run_online_demo

        summary = run_online_demo(rt, retrain_config=config_file)
        if as_json:
            click.echo(json.dumps(summary, indent=2))
        return
    from bot.demo.pipeline import run_demo

    run_demo(rt, config_file=config_file, as_json=as_json)


from bot.cli.db import db  # noqa: E402
from bot.cli.serve import serve, socket, worker  # noqa: E402  (their own module keeps this one short)

main.add_command(serve)
main.add_command(socket)
main.add_command(worker)
main.add_command(db)

from bot.cli.admin import pause, resume, retrain, rollback, status  # noqa: E402

main.add_command(status)
main.add_command(retrain)
main.add_command(rollback)
main.add_command(pause)
main.add_command(resume)

from bot.cli.data import data  # noqa: E402

main.add_command(data)

from bot.cli.trail import audit, base, forget, release_notes  # noqa: E402

main.add_command(base)
main.add_command(audit)
main.add_command(forget)
main.add_command(release_notes)

from bot.cli.health import health  # noqa: E402

main.add_command(health)

from bot.cli.dashboard import dashboard  # noqa: E402

main.add_command(dashboard)

from bot.cli.review import card, promote, review  # noqa: E402

main.add_command(review)
main.add_command(promote)
main.add_command(card)

from bot.cli.shadow import shadow  # noqa: E402

main.add_command(shadow)

from bot.cli.tickets import tickets  # noqa: E402

main.add_command(tickets)

from bot.cli.labellers import labellers_cmd  # noqa: E402

main.add_command(labellers_cmd, "labellers")

from bot.cli.links import links  # noqa: E402

main.add_command(links)
