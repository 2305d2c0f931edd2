"""Rows + task + base + config in, a committed model version out.

train -> merge -> GGUF f16 -> quantize -> evaluate the served file on the holdout.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from inference.base_models import license_note_for
from inference.errors import ModelError
from inference.evaluation import evaluate
from inference.llama_predictor import LlamaPredictor
from inference.prompt import build_example
from inference.registry import Registry, VersionInfo
from inference.task import Task
from trainer.config import TrainConfig
from trainer.export import quantize_gguf, write_gguf
from trainer.lora import load_base, merge_adapter, train_adapter


def data_hash(rows: list[dict]) -> str:
    """Hash of the exact training rows (order-free), recorded in the version."""
    lines = sorted(json.dumps([r.get("id"), r["text"], r["label"], r.get("reason") or ""]) for r in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def training_pairs(task: Task, rows: list[dict], chat_template: str | None, with_reasons: bool):
    return [build_example(task, r["text"], r["label"], r.get("reason") if with_reasons else None, chat_template)
            for r in rows]


def build_version(registry: Registry, task: Task, base: Path, train_rows: list[dict], holdout_rows: list[dict],
                  config: TrainConfig, *, tokenizer_gguf: Path | None = None, progress: bool = True,
                  log: Callable[[str], None] | None = None, extra: dict | None = None) -> VersionInfo:
    """Train, export, quantize and evaluate one version; commit it to the registry as a candidate."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    base = Path(base)
    tokenizer_gguf = tokenizer_gguf or (base if base.suffix == ".gguf" else None)
    if tokenizer_gguf is None:
        raise ModelError("a Hugging Face directory base needs a GGUF with the same tokenizer (--tokenizer-gguf)")
    if not train_rows:
        raise ModelError("no training rows")
    unknown = sorted({r["label"] for r in train_rows + holdout_rows} - set(task.labels))
    if unknown:
        raise ModelError(f"rows carry labels the task does not define: {', '.join(unknown)}")

    staging = registry.stage()
    try:
        timings = {}
        started = time.perf_counter()
        log(f"loading base model {base.name}")
        model, tokenizer = load_base(base)
        pairs = training_pairs(task, train_rows, tokenizer.chat_template, config.with_reasons)
        log(f"training LoRA on {len(pairs)} examples ({config.epochs} epochs, rank {config.rank})")
        peft_model, result = train_adapter(model, tokenizer, pairs, config, progress=progress)
        timings["train_s"] = result.seconds
        peft_model.save_pretrained(staging / "adapter")

        t = time.perf_counter()
        log("merging adapter and writing GGUF (f16)")
        merged = merge_adapter(peft_model)
        license_note = license_note_for(base)
        f16 = write_gguf(merged, staging / "model-f16.gguf", tokenizer_gguf, name=f"tuesday-{task.name}",
                         license_id=license_note.license, description=f"Tuesday triage model for {task.name}")
        log(f"quantizing to {config.quantization}")
        quantized = quantize_gguf(f16, staging / f"model-{config.quantization}.gguf", config.quantization)
        timings["export_s"] = time.perf_counter() - t

        t = time.perf_counter()
        predictor = LlamaPredictor(quantized, task, reasons=False)
        try:
            metrics = evaluate(predictor, task, holdout_rows, progress=progress, desc="holdout") if holdout_rows else {}
        finally:
            predictor.close()
        metrics.pop("predictions", None)
        timings["eval_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - started

        (staging / "task.yaml").write_text(task.to_yaml(), encoding="utf-8")
        config.save(staging / "config.json")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (staging / "license.json").write_text(json.dumps(license_note.to_dict(), indent=2) + "\n", encoding="utf-8")
        manifest = {
            "task": task.name,
            "task_fingerprint": task.fingerprint(),
            "family": "decoder",
            "base": str(base),
            "license": license_note.to_dict(),
            "data": {"sha256": data_hash(train_rows), "n_train": len(train_rows), "n_holdout": len(holdout_rows),
                     "holdout_ids_sha256": data_hash(holdout_rows) if holdout_rows else None},
            "training": {"steps": result.steps, "first_loss": result.first_loss, "final_loss": result.final_loss,
                         "skipped_too_long": result.skipped_too_long},
            "timings": timings,
            "metrics": {k: v for k, v in metrics.items() if k != "per_label"},
            "files": {"adapter": "adapter", "f16": f16.name, config.quantization: quantized.name},
            "serve": config.quantization,
            **(extra or {}),
        }
        (staging / "MODEL_CARD.md").write_text(model_card(task, manifest, metrics), encoding="utf-8")
        return registry.commit(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def model_card(task: Task, manifest: dict, metrics: dict) -> str:
    """A human-readable paper trail next to the weights."""
    lic = manifest["license"]
    lines = [
        f"# Tuesday model for `{task.name}`", "",
        f"- Base: {lic['model']} ({lic['license']}), from {lic['source']}, version {lic['version']}",
        f"- Restrictions: {lic['restrictions']}",
        f"- Base approved by: {lic['approved_by'] or 'NOT APPROVED'} {lic['approved_at']}",
        f"- Training rows: {manifest['data']['n_train']} (sha256 {manifest['data']['sha256'][:16]}…); "
        f"holdout rows: {manifest['data']['n_holdout']}",
        f"- Loss: {manifest['training']['first_loss']:.3f} → {manifest['training']['final_loss']:.3f} "
        f"over {manifest['training']['steps']} steps",
        "", "## Holdout (served GGUF)", "",
    ]
    if metrics:
        lines += [f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
                  f"hand-off recall {metrics['handoff_recall'] if metrics['handoff_recall'] is not None else 'n/a'}", "",
                  "| label | precision | recall | support |", "|---|---|---|---|"]
        lines += [f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['support']} |"
                  for label, m in metrics["per_label"].items()]
    else:
        lines.append("no holdout rows")
    return "\n".join(lines) + "\n"
