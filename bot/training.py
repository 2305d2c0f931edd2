"""One training round shared by `tuesday train`, the demo and queued retrains: snapshot → train job → gate."""

from __future__ import annotations

from pathlib import Path

from bot.jobs import TRAIN_JOB, run_job
from bot.runtime import Runtime
from inference.errors import TuesdayError


class TrainingDataError(TuesdayError):
    """The labelled data or the training config given for a round cannot be used."""


def snapshot_for_training(rt: Runtime, data: Path | None = None, *, skip_conflicts: bool = False) -> Path:
    """A snapshot of the store (optionally without examples reviewers labelled differently), or of a labelled file."""
    from bot.importer import read_labelled
    from bot.store import snapshot_store
    from inference.snapshot import write_snapshot

    out = rt.settings.data_dir / "snapshots"
    if data is None:
        return snapshot_store(rt.sessions, rt.task, out, rt.settings.holdout_fraction, skip_conflicts=skip_conflicts)
    rows, errors = read_labelled(data, rt.task)
    if errors:
        raise TrainingDataError("\n".join([f"{data}: {len(errors)} bad rows"] + [f"  line {n}: {m}" for n, m in errors]))
    return write_snapshot(rows, out, rt.settings.holdout_fraction)


def load_config(path: Path | None) -> dict:
    """Training overrides from a YAML/JSON file as a plain dict; the trainer validates keys and values."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise TrainingDataError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise TrainingDataError(f"{path}: not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TrainingDataError(f"{path}: expected a mapping of training config keys")
    return data


def train_and_gate(rt: Runtime, *, base: Path | None = None, config: dict | None = None, data: Path | None = None,
                   promote: bool = True, by: str = "cli", progress: bool = True,
                   snapshot: Path | None = None) -> dict:
    """Snapshot → train job → promotion gate; returns the job summary plus the decision."""
    from bot.promotion import apply_gate

    snapshot = snapshot or snapshot_for_training(rt, data)
    settings = rt.settings
    config = {"families": settings.families, "max_wrong": settings.max_wrong, **(config or {})}
    summary = run_job(TRAIN_JOB, snapshot=str(snapshot), task_file=str(rt.task_path),
                      base=str(rt.base_model(base)), models_dir=str(settings.models_dir), config=config,
                      tokenizer_gguf=str(settings.tokenizer_gguf) if settings.tokenizer_gguf else None,
                      encoder_base=str(settings.encoder_model) if settings.encoder_model else None,
                      progress=progress, threads=settings.threads)
    if promote:
        decision = apply_gate(rt.registry, summary, by=by, min_gain=rt.settings.min_gain)
        summary["promoted"], summary["why"] = decision.promote, decision.why
    else:
        summary["promoted"], summary["why"] = False, "--no-promote"
    return summary
