"""Queued entry points of the trainer: JSON-safe arguments in, a JSON-safe summary out.

bot enqueues these by dotted path (e.g. "trainer.jobs.train_candidate"), so the web process
never imports torch. A train job runs on the GPU node, which holds no SQL credentials and no
Slack token: it reads its snapshot and task from the artifact store by key, writes the
candidate there, and returns its numbers; the CPU side gates, promotes and reports.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from inference.base_models import smollm2_gguf
from inference.evaluation import evaluate
from inference.serving import load_predictor
from inference.settings import NodeSettings
from inference.snapshot import download, read_snapshot
from inference.task import load_task
from trainer.config import RunConfig
from trainer.pipeline import build_version


def train_candidate(snapshot_key: str, snapshot_sha256: str, task_key: str, task_sha256: str,
                    config: dict | None = None, production: str | None = None, base: str | None = None,
                    run_id: int | None = None, progress: bool = True) -> dict:
    """Train a candidate from a stored snapshot; score it and `production` on the same holdout."""
    settings = NodeSettings()  # this host's own: artifact store, base models, threads
    store, registry = settings.artifacts(), settings.registry()
    files = settings.model_cache_dir
    task = load_task(download(store, task_key, task_sha256, files))
    train_rows, holdout_rows = read_snapshot(download(store, snapshot_key, snapshot_sha256, files))
    base_path = Path(base) if base else settings.base_model or smollm2_gguf()
    version = build_version(
        registry, task, base_path, train_rows, holdout_rows, RunConfig.from_dict(config or {}),
        encoder_base=settings.encoder_model, tokenizer_gguf=settings.tokenizer_gguf, progress=progress,
        threads=settings.threads, extra={"snapshot": snapshot_key, "run": run_id},
    )
    production_metrics, label_changes = None, None
    if production is not None and holdout_rows:
        # production's stored metrics came from an older holdout; score it on this one, with the
        # labels it was trained on (the team may have changed the task since)
        live = registry.fetch(production)
        live_task = load_task(live.path / "task.yaml") if (live.path / "task.yaml").exists() else task
        label_changes = {"added": [l for l in task.labels if l not in live_task.labels],
                         "removed": [l for l in live_task.labels if l not in task.labels]}
        predictor = load_predictor(live, live_task, threads=settings.threads, reasons=False, evidence=False)
        try:
            production_metrics = evaluate(predictor, task, holdout_rows, progress=progress,
                                          desc=f"holdout ({production})", predictor_task=live_task)
        finally:
            predictor.close()
        for key in ("predictions", "probabilities", "per_label"):
            production_metrics.pop(key, None)
    metrics = json.loads((version.path / "metrics.json").read_text(encoding="utf-8"))
    manifest = version.manifest
    # The bucket holds the version now; a training host that kept every build would fill its disk.
    shutil.rmtree(version.path, ignore_errors=True)
    return {"version": version.name, "metrics": metrics, "production": production,
            "production_metrics": production_metrics, "timings": manifest["timings"],
            "training": manifest["training"], "family": manifest["family"], "choice": manifest["choice"],
            "families": {name: {"metrics": part.get("metrics"), "calibration": part.get("calibration"),
                                "train_s": part["timings"].get("train_s")}
                         for name, part in manifest["families"].items()},
            "calibration": manifest["calibration"], "snapshot": snapshot_key, "run": run_id,
            "label_changes": label_changes if label_changes and any(label_changes.values()) else None}
