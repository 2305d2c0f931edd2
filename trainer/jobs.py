"""Queued entry points of the trainer: JSON-safe arguments in, a JSON-safe summary out.

bot enqueues these by dotted path (e.g. "trainer.jobs.train_snapshot"), so the
web process never imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from inference.evaluation import evaluate
from inference.registry import Registry
from inference.serving import load_predictor
from inference.snapshot import read_snapshot
from inference.task import load_task
from trainer.config import RunConfig
from trainer.pipeline import build_version


def train_snapshot(snapshot: str, task_file: str, base: str, models_dir: str, config: dict | None = None,
                   tokenizer_gguf: str | None = None, progress: bool = True, threads: int = 2,
                   encoder_base: str | None = None) -> dict:
    """Train a candidate from a snapshot and score it and production on the same holdout."""
    task = load_task(task_file)
    train_rows, holdout_rows = read_snapshot(snapshot)
    registry = Registry(models_dir)
    version = build_version(
        registry, task, Path(base), train_rows, holdout_rows, RunConfig.from_dict(config or {}),
        encoder_base=Path(encoder_base) if encoder_base else None,
        tokenizer_gguf=Path(tokenizer_gguf) if tokenizer_gguf else None, progress=progress, threads=threads,
        extra={"snapshot": Path(snapshot).name},
    )
    production = registry.production()
    production_metrics = None
    if production is not None and holdout_rows:
        # production's stored metrics came from an older holdout; score it on this one
        predictor = load_predictor(production, task, threads=threads, reasons=False, evidence=False)
        try:
            production_metrics = evaluate(predictor, task, holdout_rows, progress=progress, desc=f"holdout ({production.name})")
        finally:
            predictor.close()
        for key in ("predictions", "probabilities", "per_label"):
            production_metrics.pop(key, None)
    metrics = json.loads((version.path / "metrics.json").read_text(encoding="utf-8"))
    manifest = version.manifest
    return {"version": version.name, "metrics": metrics, "production": production.name if production else None,
            "production_metrics": production_metrics, "timings": manifest["timings"],
            "training": manifest["training"], "family": manifest["family"], "choice": manifest["choice"],
            "families": {name: {"metrics": part.get("metrics"), "calibration": part.get("calibration"),
                                "train_s": part["timings"].get("train_s")}
                         for name, part in manifest["families"].items()},
            "calibration": manifest["calibration"]}
