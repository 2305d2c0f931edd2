"""A field's head on the routing task's encoder: no LoRA of its own, so one encoder pass serves every field.

The routing task's production version (encoder family) lends its served GGUF: it is copied byte
for byte into the field's version (same sha256, so a serving process opens it once, see
inference.embedders), the field's training rows are embedded by exactly that file, and a logistic
regression head (plus the TF-IDF branch) is fitted on those embeddings. The version keeps its own
copy: a later routing retrain or rollback leaves the field's served file as it was (the field
then simply stops sharing until it is retrained).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from inference.encoder_head import EncoderHead, unit
from inference.encoder_predictor import LlamaEmbedder
from inference.errors import ModelError
from inference.registry import VersionInfo
from inference.stacking import TfidfBranch
from inference.task import Task
from trainer.config import EncoderConfig
from trainer.encoder import initial_head, training_rows


def windows_of(shared: VersionInfo) -> tuple[int, int]:
    """(max_length, max_chunks) the shared version's encoder reads a ticket with."""
    head = EncoderHead.load(shared.path / shared.manifest["files"]["head"])
    return head.max_length, head.max_chunks


def shared_encoder_part(staging: Path, task: Task, shared: VersionInfo, rows: list[dict], config: EncoderConfig,
                        note, log, threads: int | None = None) -> dict:
    """The encoder family's part of a version trained on `shared`'s served encoder file."""
    if shared.manifest.get("family") != "encoder":
        raise ModelError(f"version {shared.name} serves the {shared.manifest.get('family')} family: "
                         "only an encoder version's file can be shared")
    started = time.perf_counter()
    source = shared.gguf(shared.manifest["serve"])
    served = f"encoder-{config.quantization}"
    target = staging / f"{served}.gguf"
    shutil.copyfile(source, target)
    max_length, max_chunks = windows_of(shared)
    log(f"encoder: head only, on {shared.name}'s encoder ({source.name}); {len(rows)} examples")
    texts, labels = training_rows(task, rows, config)
    embedder = LlamaEmbedder(target, max_length=max_length, max_chunks=max_chunks, n_threads=threads)
    try:
        vectors = unit(embedder.embed(texts))
    finally:
        embedder.close()
    weight, bias = initial_head(vectors, np.array(labels), len(task.labels), "logreg")
    EncoderHead(labels=task.label_names, weight=weight, bias=bias, scale=1.0, max_length=max_length,
                max_chunks=max_chunks).save(staging / "head.npz")
    files = {"head": "head.npz", served: target.name}
    if config.tfidf_branch:
        try:
            TfidfBranch.fit(texts, labels, len(task.labels)).save(staging / "tfidf.npz")
            files["tfidf"] = "tfidf.npz"
        except ModelError as exc:
            log(f"encoder: no TF-IDF branch ({exc})")
    source_part = shared.manifest.get("families", {}).get("encoder", {})
    return {"base": source_part.get("base", shared.manifest.get("base")), "license": note.to_dict(),
            "config": {**config.to_dict(), "max_length": max_length, "max_chunks": max_chunks},
            "files": files, "serve": served,
            "shared_encoder": {"version": shared.name, "task": shared.manifest.get("task"),
                               "sha256": shared.manifest["artifacts"][source.relative_to(shared.path).as_posix()]["sha256"]},
            "timings": {"train_s": time.perf_counter() - started, "export_s": 0.0}}
