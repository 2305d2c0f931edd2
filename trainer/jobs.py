"""Queued entry points of the trainer: JSON-safe arguments in, a JSON-safe summary out.

bot enqueues these by dotted path (e.g. "trainer.jobs.train_signed"), so the web process
never imports torch. A train job runs on the GPU node, which holds no SQL credentials and no
Slack token: it reads its snapshot and task from the artifact store by key, writes the
candidate there, and returns its numbers; the CPU side gates, promotes and reports. What it
trusts (keys, sha256s, license approvals) comes signed by the control side; `train_signed`
checks that before anything loads, and `train_candidate` itself is for in-process callers.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from inference.base_models import smollm2_gguf
from inference.evaluation import evaluate
from inference.job_signing import verify_job
from inference.pii import refuse_pii
from inference.registry import RESULT, REVIEW
from inference.serving import load_predictor
from inference.settings import NodeSettings
from inference.snapshot import download, read_snapshot
from inference.task import load_task
from trainer.config import RunConfig
from trainer.pipeline import HOLDOUT_ANSWERS, build_version


def _routing(manifest: dict, task) -> dict:
    """What a version's server cuts suggestions at (None: a version without calibration)."""
    cal = manifest.get("calibration") or {}
    return {"abstain": cal.get("abstain_threshold"), "handoff": cal.get("handoff_threshold"),
            "handoff_label": task.handoff_label, "far": cal.get("far_threshold") or 0.0,
            "far_hands_off": bool(cal.get("far_hands_off"))}


def review_sheet(version, task, holdout_rows: list[dict], production: dict | None) -> dict:
    """Every holdout ticket with its expected label and reviewer's reason, and both models' answers.

    production: {"version", "routing", "answers"} of the version compared with, or None. The bot
    side (bot.trail.review) routes each answer with these thresholds and decides pass or fail.
    """
    path = version.path / HOLDOUT_ANSWERS
    answers = json.loads(path.read_text(encoding="utf-8"))["rows"] if path.exists() else []
    theirs = production["answers"] if production else [None] * len(answers)
    return {"version": version.name, "family": version.manifest.get("family"),
            "routing": _routing(version.manifest, task),
            "production": None if production is None else {"version": production["version"],
                                                            "routing": production["routing"]},
            "rows": [{"id": row.get("id"), "text": row["text"], "expected": row["label"], "reason": row.get("reason"),
                      "candidate": {"label": ours["label"], "confidence": ours["confidence"],
                                    **({"similarity": ours["similarity"]} if ours.get("similarity") is not None else {})},
                      "production": other}
                     for row, ours, other in zip(holdout_rows, answers, theirs)]}


def train_signed(job_id: str, signed: dict, progress: bool = True) -> dict:
    """Queued train job (the GPU node): `train_candidate` on the arguments the control side signed for `job_id`.

    Checked before anything loads: JobSignatureError for a job that is unsigned, altered, signed for
    another job id or too old, or when this host has no key to check it (TUESDAY_JOB_VERIFY_KEY).
    """
    args = verify_job(signed, job_id, NodeSettings().job_verify_keys())
    return train_candidate(**args, progress=progress)


def train_candidate(snapshot_key: str, snapshot_sha256: str, task_key: str, task_sha256: str,
                    config: dict | None = None, production: str | None = None, base: str | None = None,
                    run_id: int | None = None, progress: bool = True, licenses: dict | None = None,
                    data_approval: int | None = None, shared_encoder: str | None = None) -> dict:
    """Train a candidate from a stored snapshot; score it and `production` on the same holdout.

    licenses: the approved license notes (base name -> note) from the SQL store; a base not in it
    is refused before anything loads (this host has no SQL, so the CPU side sends them).
    data_approval: the id of the data approval the snapshot was cut at, recorded in the manifest.
    shared_encoder: an encoder version (the routing task's production) whose encoder the candidate
    trains a head on and serves a copy of, so one encoder pass serves both (trainer.shared_encoder).
    """
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    settings = NodeSettings()  # this host's own: artifact store, base models, threads
    store, registry = settings.artifacts(), settings.registry()
    files = settings.model_cache_dir
    task = load_task(download(store, task_key, task_sha256, files))
    snapshot = download(store, snapshot_key, snapshot_sha256, files)
    try:
        train_rows, holdout_rows = read_snapshot(snapshot)
    finally:  # read whole: no copy of the rows stays on this host, whatever the run does next (`tuesday forget`)
        snapshot.unlink(missing_ok=True)
    refuse_pii(train_rows + holdout_rows)  # masked at the door; a leak stops the run before anything trains
    base_path = Path(base) if base else settings.base_model or smollm2_gguf()
    version = build_version(
        registry, task, base_path, train_rows, holdout_rows, RunConfig.from_dict(config or {}),
        encoder_base=settings.encoder_model, tokenizer_gguf=settings.tokenizer_gguf, progress=progress,
        threads=settings.threads, licenses=licenses or {},
        shared_encoder=registry.fetch(shared_encoder) if shared_encoder else None,
        extra={"snapshot": snapshot_key, "run": run_id, "data_approval": data_approval},
    )
    production_metrics, label_changes, compared = None, None, None
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
        compared = {"version": production, "routing": _routing(live.manifest, live_task),
                    "answers": [{"label": label, "confidence": round(max(probs), 4)} for label, probs in
                                zip(production_metrics["predictions"], production_metrics["probabilities"])]}
        for key in ("predictions", "probabilities", "per_label"):
            production_metrics.pop(key, None)
    # Written once, next to the version, so any host can render it (`tuesday review`, the web page).
    review_key = registry.add_paper(version.name, REVIEW, json.dumps(
        review_sheet(version, task, holdout_rows, compared), ensure_ascii=False).encode("utf-8"))
    metrics = json.loads((version.path / "metrics.json").read_text(encoding="utf-8"))
    manifest = version.manifest
    run_config = RunConfig.from_dict(config or {})
    family_config = run_config.encoder if manifest["family"] == "encoder" else run_config.decoder
    # What the job cost, priced by the CPU side (bot.monitor.measures): a GPU is held for the whole
    # job; on CPU, process_time counts every core torch and llama.cpp kept busy.
    cost = {"device": _device(family_config), "train_s": manifest["timings"].get("train_s"),
            "total_s": time.perf_counter() - started_wall, "cpu_s": time.process_time() - started_cpu}
    # The bucket holds the version now; a training host that kept every build would fill its disk.
    shutil.rmtree(version.path, ignore_errors=True)
    result = {"version": version.name, "metrics": metrics, "production": production,
            "production_metrics": production_metrics, "timings": manifest["timings"],
            "training": manifest["training"], "family": manifest["family"], "choice": manifest["choice"],
            "families": {name: {"metrics": part.get("metrics"), "calibration": part.get("calibration"),
                                "train_s": part["timings"].get("train_s")}
                         for name, part in manifest["families"].items()},
            "calibration": manifest["calibration"], "snapshot": snapshot_key, "run": run_id,
            "data_approval": data_approval, "review": review_key, "cost": cost,
            "label_changes": label_changes if label_changes and any(label_changes.values()) else None}
    # Create-only beside the version: the control side gates on this copy, so a result rewritten in
    # Redis (whoever can write there) cannot name another version or change the numbers.
    registry.add_paper(version.name, RESULT, json.dumps(result, sort_keys=True).encode("utf-8"))
    return result


def _device(config) -> str:
    """The device the run trained on ("cuda" or "cpu"), as the trainer picked it."""
    from trainer.lora import pick_device

    return pick_device(config).type
