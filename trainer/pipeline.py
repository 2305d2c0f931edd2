"""Rows + task + bases + config in, a committed model version out.

For each family the run trains (encoder, decoder or both): train -> merge -> GGUF f16 ->
quantize -> evaluate the served file on the holdout -> calibrate on the holdout. The family
that wins by the gate's rules becomes the version's served family; the other stays in the
folder with its numbers, so the report can say why. Every version also holds the evidence
index: the training rows embedded by the version's encoder (the untuned base encoder when
only the decoder was trained).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from inference.base_models import LicenseNote, license_note_for, minilm_dir, require_approved
from inference.calibration import abstain_needs, apply_temperature, calibrate, promise_lines
from inference.encoder_predictor import EncoderPredictor, LlamaEmbedder
from inference.errors import ModelError
from inference.evaluation import evaluate
from inference.drift import build_reference, top_similarities
from inference.evidence import EvidenceIndex
from inference.gate import choose_family
from inference.llama_predictor import LlamaPredictor
from inference.metrics import classification_report
from inference.prompt import build_example
from inference.promise_rows import Split
from inference.promise_rows import split as split_holdout
from inference.registry import DRIFT, Registry, VersionInfo
from inference.stacking import Mix, TfidfBranch, choose_mix
from inference.task import Task
from trainer.config import RunConfig, TrainConfig, resolve_families
from trainer.label_prior import choose_prior
from trainer.export import quantize_gguf, write_encoder_gguf, write_gguf
from trainer.shared_encoder import shared_encoder_part, windows_of

HOLDOUT_ANSWERS = "holdout.json"  # {family, rows: [{id, label, confidence}]} in holdout order


def data_hash(rows: list[dict]) -> str:
    """Hash of the exact training rows (order-free), recorded in the version."""
    lines = sorted(json.dumps([r.get("id"), r["text"], r["label"], r.get("reason") or ""]) for r in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def training_pairs(task: Task, rows: list[dict], chat_template: str | None, with_reasons: bool):
    return [build_example(task, r["text"], r["label"], r.get("reason") if with_reasons else None, chat_template)
            for r in rows]


def as_run_config(config: RunConfig | TrainConfig | dict | None) -> RunConfig:
    """A RunConfig; a bare decoder TrainConfig means a decoder-only run."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, TrainConfig):
        return RunConfig(families=("decoder",), decoder=config)
    return RunConfig.from_dict(config or {})


def _decoder(staging: Path, task: Task, base: Path, tokenizer_gguf: Path, rows: list[dict], config: TrainConfig,
             note, progress: bool, log) -> dict:
    from trainer.lora import load_base, merge_adapter, train_adapter

    log(f"decoder: loading base model {base.name}")
    model, tokenizer = load_base(base)
    pairs = training_pairs(task, rows, tokenizer.chat_template, config.with_reasons)
    log(f"decoder: training LoRA on {len(pairs)} examples ({config.epochs} epochs, rank {config.rank})")
    peft_model, result = train_adapter(model, tokenizer, pairs, config, progress=progress)
    peft_model.save_pretrained(staging / "adapter")
    t = time.perf_counter()
    log("decoder: merging adapter and writing GGUF (f16)")
    f16 = write_gguf(merge_adapter(peft_model), staging / "model-f16.gguf", tokenizer_gguf, name=f"tuesday-{task.name}",
                     license_id=note.license, description=f"Tuesday triage model (decoder) for {task.name}")
    log(f"decoder: quantizing to {config.quantization}")
    quantized = quantize_gguf(f16, staging / f"model-{config.quantization}.gguf", config.quantization)
    return {"base": str(base), "license": note.to_dict(), "config": config.to_dict(),
            "files": {"adapter": "adapter", "f16": f16.name, config.quantization: quantized.name},
            "serve": config.quantization,
            "training": {"steps": result.steps, "first_loss": result.first_loss, "final_loss": result.final_loss,
                         "skipped_too_long": result.skipped_too_long},
            "timings": {"train_s": result.seconds, "export_s": time.perf_counter() - t}}


def _encoder(staging: Path, task: Task, base: Path, rows: list[dict], config: RunConfig, train: bool,
             note, progress: bool, log) -> dict:
    """Train the encoder family, or (train=False) export the untuned base encoder for evidence only."""
    import torch

    from trainer.encoder import load_encoder, train_encoder, training_rows

    cfg = config.encoder
    log(f"encoder: loading base encoder {base.name}")
    model, tokenizer = load_encoder(base)
    part: dict = {"base": str(base), "license": note.to_dict(), "config": cfg.to_dict(), "files": {}}
    if train:
        log(f"encoder: training LoRA + head on {len(rows)} examples ({cfg.epochs} epochs, rank {cfg.rank})")
        peft_model, head, result = train_encoder(model, tokenizer, task, rows, cfg, progress=progress)
        peft_model.save_pretrained(staging / "encoder-adapter")
        model = peft_model.merge_and_unload().to("cpu").eval()
        head.save(staging / "head.npz")
        part["files"].update({"encoder-adapter": "encoder-adapter", "head": "head.npz"})
        if cfg.tfidf_branch:
            t = time.perf_counter()
            texts, labels = training_rows(task, rows, cfg)
            try:
                TfidfBranch.fit(texts, labels, len(task.labels)).save(staging / "tfidf.npz")
                part["files"]["tfidf"] = "tfidf.npz"
            except ModelError as exc:
                log(f"encoder: no TF-IDF branch ({exc})")
            result.seconds += time.perf_counter() - t
        part["training"] = {"steps": result.steps, "first_loss": result.first_loss, "final_loss": result.final_loss,
                            **({"contrastive": result.contrastive} if getattr(result, "contrastive", None) else {})}
        part["timings"] = {"train_s": result.seconds}
    t = time.perf_counter()
    with torch.inference_mode():
        f16 = write_encoder_gguf(model, tokenizer, staging / "encoder-f16.gguf", name=f"tuesday-{task.name}-encoder",
                                 license_id=part["license"]["license"],
                                 description=f"Tuesday encoder for {task.name}" + ("" if train else " (untuned base)"))
    quantized = quantize_gguf(f16, staging / f"encoder-{cfg.quantization}.gguf", cfg.quantization)
    part["files"].update({"encoder-f16": f16.name, f"encoder-{cfg.quantization}": quantized.name})
    part["serve"] = f"encoder-{cfg.quantization}"
    part.setdefault("timings", {})["export_s"] = time.perf_counter() - t
    return part


def _score(staging: Path, family: str, part: dict, task: Task, holdout: list[dict], config: RunConfig,
           threads: int | None, progress: bool, split: Split, similarity: list[float],
           train_rows: list[dict]) -> tuple[dict, dict, list[dict]]:
    """(metrics, calibration, answers) of a family's served file on the holdout; answers: each row's
    label and the confidence the server would show (after the fitted temperature).

    The split's choosing rows pick the mix of voices, the label prior, the temperature and the far cut (and, in the
    part's "choice_metrics", what the family is chosen by); its promise rows alone set the thresholds.
    The metrics are the whole holdout's (what the gate compares versions on)."""
    from inference.encoder_head import EncoderHead

    path = staging / part["files"][part["serve"]]
    choosing = split.choose(holdout)
    if family == "encoder":
        cfg = config.encoder
        tfidf = TfidfBranch.load(staging / part["files"]["tfidf"]) if "tfidf" in part["files"] else None
        index = EvidenceIndex.load(staging) if cfg.knn_vote else None
        predictor = EncoderPredictor(path, EncoderHead.load(staging / part["files"]["head"]), task, n_threads=threads,
                                     tfidf=tfidf, index=index, show_evidence=False)
        if (tfidf is not None or index is not None) and choosing:
            predictor.mix = _choose_mix(predictor, task, choosing, part)
    else:
        predictor = LlamaPredictor(path, task, reasons=False, n_threads=threads)
    try:
        if choosing:  # the label prior the choosing rows prefer (trainer.label_prior), inside the served predictor
            choose_prior(predictor, task, choosing, train_rows, train_rows + holdout, part)
        metrics = evaluate(predictor, task, holdout, progress=progress, desc=f"holdout ({family})")
    finally:
        predictor.close()
    predicted = metrics.pop("predictions")
    probs = np.array(metrics.pop("probabilities"))
    index = {label: i for i, label in enumerate(task.labels)}
    gold = np.array([index[r["label"]] for r in holdout])
    promise = np.array(split.promise, dtype=bool)
    if choosing:
        part["choice_metrics"] = classification_report(task, [r["label"] for r in choosing],
                                                        [p for p, keep in zip(predicted, promise) if not keep])
    in_scope = np.array([r["label"] != task.handoff_label for r in holdout]) if task.handoff_label else None
    calibration = calibrate(probs, gold, max_wrong=config.max_wrong, in_scope=in_scope,
                            handoff_index=index.get(task.handoff_label), promise=promise,
                            similarity=np.array(similarity) if len(similarity) == len(holdout) else None,
                            source=split.source, slack_rows=split.slack_rows)
    shown = apply_temperature(probs, calibration.temperature).max(axis=1)
    answers = [{"label": label, "confidence": round(float(c), 4)} for label, c in zip(predicted, shown)]
    if len(similarity) == len(answers):  # the nearest labelled example's, as serving records it (the far rule's input)
        answers = [{**a, "similarity": sim} for a, sim in zip(answers, similarity)]
    return metrics, calibration.to_dict(), answers


def _choose_mix(predictor: EncoderPredictor, task: Task, holdout: list[dict], part: dict) -> Mix:
    """The mix of the head with the TF-IDF branch and the neighbours' vote that the holdout prefers
    (inference.stacking.choose_mix); recorded in the family's part of the manifest."""
    index = {label: i for i, label in enumerate(task.labels)}
    voices: dict[str, list] = {}
    for row in holdout:
        for name, probs in predictor.voices(row["text"], every=True)[1].items():
            voices.setdefault(name, []).append(probs)
    gold = np.array([index[r["label"]] for r in holdout])
    mix, loss = choose_mix({name: np.array(rows) for name, rows in voices.items()}, gold)
    _, head_loss = choose_mix({"head": np.array(voices["head"])}, gold)
    part["mix"] = {**mix.to_dict(), "holdout_log_loss": round(loss, 4), "head_log_loss": round(head_loss, 4)}
    return mix


def build_version(registry: Registry, task: Task, base: Path, train_rows: list[dict], holdout_rows: list[dict],
                  config: RunConfig | TrainConfig | dict | None = None, *, encoder_base: Path | None = None,
                  tokenizer_gguf: Path | None = None, progress: bool = True, threads: int | None = None,
                  log: Callable[[str], None] | None = None, extra: dict | None = None,
                  licenses: dict[str, dict] | None = None, shared_encoder: VersionInfo | None = None) -> VersionInfo:
    """Train, export, quantize, evaluate and calibrate the configured families; commit the version.

    licenses (base name -> approved license note) makes every base the run uses need an approved
    note, checked before anything loads: the train job always passes it. Without it (benchmarks,
    test fixtures) the versions carry the built-in *proposed* notes and their cards say so.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    config = as_run_config(config)
    config = dataclasses.replace(config, families=resolve_families(config.families, config.decoder.device))
    if shared_encoder is not None:  # a head on another version's encoder: its windows, the encoder family only
        max_length, max_chunks = windows_of(shared_encoder)
        config = dataclasses.replace(config, families=("encoder",), encoder=dataclasses.replace(
            config.encoder, max_length=max_length, max_chunks=max_chunks))
    base = Path(base)
    encoder_base = Path(encoder_base) if encoder_base else minilm_dir()
    tokenizer_gguf = tokenizer_gguf or (base if base.suffix == ".gguf" else None)
    if "decoder" in config.families and tokenizer_gguf is None:
        raise ModelError("a Hugging Face directory base needs a GGUF with the same tokenizer (--tokenizer-gguf)")
    if not train_rows:
        raise ModelError("no training rows")
    bases = {"encoder": encoder_base, **({"decoder": base} if "decoder" in config.families else {})}
    notes = {family: require_approved(path, licenses) if licenses is not None else license_note_for(path)
             for family, path in bases.items()}
    unknown = sorted({r["label"] for r in train_rows + holdout_rows} - set(task.labels))
    if unknown:
        raise ModelError(f"rows carry labels the task does not define: {', '.join(unknown)}")

    staging = registry.stage()
    try:
        started = time.perf_counter()
        parts = {"encoder": shared_encoder_part(staging, task, shared_encoder, train_rows, config.encoder,
                                                notes["encoder"], log, threads) if shared_encoder is not None
                 else _encoder(staging, task, encoder_base, train_rows, config, "encoder" in config.families,
                               notes["encoder"], progress, log)}
        embedder_file = parts["encoder"]["files"][parts["encoder"]["serve"]]
        if "decoder" in config.families:
            parts["decoder"] = _decoder(staging, task, base, tokenizer_gguf, train_rows, config.decoder, notes["decoder"],
                                        progress, log)
        if "encoder" not in config.families:
            evidence_only = parts.pop("encoder")
        log("indexing the training rows as evidence")
        embedder = LlamaEmbedder(staging / embedder_file, max_length=config.encoder.max_length,
                                 max_chunks=config.encoder.max_chunks, n_threads=threads)
        try:
            index = EvidenceIndex(train_rows, embedder.embed([r["text"] for r in train_rows]))
            index.save(staging)
            # What live drift is measured against: how close held-out tickets come to a training row.
            holdout_sims = top_similarities(index, embedder.embed([r["text"] for r in holdout_rows])) \
                if holdout_rows else []
        finally:
            embedder.close()
        (staging / DRIFT).write_text(json.dumps(build_reference(train_rows, holdout_sims), ensure_ascii=False) + "\n",
                                     encoding="utf-8")

        per_label, answers = {}, {}
        # which holdout rows choose the settings and which promise (enough of them for an abstain promise)
        split = split_holdout(holdout_rows, needs=abstain_needs(config.max_wrong))
        for family in config.families:
            t = time.perf_counter()
            metrics, calibration, answers[family] = (
                _score(staging, family, parts[family], task, holdout_rows, config, threads, progress, split, holdout_sims,
                       train_rows)
                if holdout_rows else ({}, {}, []))
            per_label[family] = metrics.pop("per_label", {})
            parts[family].update(metrics=metrics, calibration=calibration)
            parts[family]["timings"]["eval_s"] = time.perf_counter() - t
        # the family is chosen on the choosing rows: the promise rows play no part in what they promise about
        family, why = choose_family({f: parts[f].get("choice_metrics") or parts[f]["metrics"] for f in config.families})
        log(f"chosen family: {family} ({why})")
        chosen = parts[family]

        files = {k: v for part in parts.values() for k, v in part["files"].items()}
        if "encoder" not in config.families:
            files.update(evidence_only["files"])
        (staging / "task.yaml").write_text(task.to_yaml(), encoding="utf-8")
        config.save(staging / "config.json")
        if holdout_rows:  # the served family's answer on each holdout ticket: the review sheet's candidate side
            (staging / HOLDOUT_ANSWERS).write_text(json.dumps(
                {"family": family, "rows": [{"id": r.get("id"), **a} for r, a in zip(holdout_rows, answers[family])]},
                ensure_ascii=False) + "\n", encoding="utf-8")
        for name in config.families:  # each family's holdout metrics with the per-label table
            part = parts[name]
            stored = {**part["metrics"], "per_label": per_label[name]} if part["metrics"] else {}
            (staging / f"metrics-{name}.json").write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(staging / f"metrics-{family}.json", staging / "metrics.json")  # the served family's
        (staging / "license.json").write_text(json.dumps(chosen["license"], indent=2) + "\n", encoding="utf-8")
        manifest = {
            "task": task.name,
            "task_fingerprint": task.fingerprint(),
            "family": family,
            "choice": why,
            "families": parts,
            "base": chosen["base"],
            "license": chosen["license"],
            "data": {"sha256": data_hash(train_rows), "n_train": len(train_rows), "n_holdout": len(holdout_rows),
                     "holdout_ids_sha256": data_hash(holdout_rows) if holdout_rows else None},
            "training": chosen.get("training", {}),
            "timings": {**chosen["timings"], "total_s": time.perf_counter() - started},
            "metrics": chosen["metrics"],
            "calibration": chosen["calibration"],
            "evidence": {"embedder": embedder_file, "rows": len(train_rows), "k": config.evidence_k,
                         "max_length": config.encoder.max_length, "max_chunks": config.encoder.max_chunks},
            "files": files,
            "serve": chosen["serve"],
            **(extra or {}),
        }
        (staging / "MODEL_CARD.md").write_text(model_card(task, manifest, per_label), encoding="utf-8")
        return registry.commit(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def license_lines(lic: dict) -> list[str]:
    """The card's lines on a base's license note: source, terms, restrictions (flagged), approval."""
    note = LicenseNote.from_dict(lic)
    restricted = note.restricted
    lines = [f"- Base: {note.model} ({note.license}), from {note.source}, version {note.version}, "
             f"obtained {note.obtained}",
             "- Restrictions: " + ("**RESTRICTED**: " + "; ".join(f"{k.replace('_', ' ')}: {v}"
                                                              for k, v in restricted.items())
                                   if restricted else "none (commercial, hosted, customer-facing use, "
                                                      "modification and redistribution allowed)")]
    if note.notes:
        lines.append(f"- License notes: {note.notes}")
    if note.pinned:  # what the approval was bound to, checked file by file before this run trained
        count = f"{len(note.files)} file" + ("s" if len(note.files) != 1 else "")
        lines.append(f"- Base content: sha256 {note.sha256} ({count} pinned at approval)")
    lines.append(f"- Base license approved by {note.approved_by} at {note.approved_at}" if note.approved
                 else "- Base license: NOT APPROVED (proposed note only)")
    return lines


def model_card(task: Task, manifest: dict, per_label: dict[str, dict]) -> str:
    """A human-readable paper trail next to the weights."""
    lines = [f"# Tuesday model for `{task.name}`", "",
             f"Served family: **{manifest['family']}** ({manifest['choice']}).", "",
             f"- Training rows: {manifest['data']['n_train']} (sha256 {manifest['data']['sha256'][:16]}…); "
             f"holdout rows: {manifest['data']['n_holdout']}",
             f"- Evidence: {manifest['evidence']['rows']} training rows embedded by {manifest['evidence']['embedder']} "
             "(holdout rows are never shown as evidence)", ""]
    for family, part in manifest["families"].items():
        lic, m, cal = part["license"], part.get("metrics") or {}, part.get("calibration") or {}
        lines += [f"## {family}", ""] + license_lines(lic)
        if part.get("shared_encoder"):
            shared = part["shared_encoder"]
            lines.append(f"- Encoder: shared with {shared['version']} (task {shared['task']}, sha256 "
                         f"{shared['sha256'][:16]}…); this version trained its head only")
        if part.get("training"):
            t = part["training"]
            lines.append(f"- Loss: {t['first_loss']:.3f} → {t['final_loss']:.3f} over {t['steps']} steps "
                         f"({part['timings']['train_s']:.0f} s)")
        if m:
            lines.append(f"- Holdout (served file): accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
                         f"hand-off recall {_pct(m['handoff_recall'])}")
        if cal:
            lines.append(f"- Calibration: temperature {cal['temperature']:.2f}, ECE {cal['ece_before']:.3f} → "
                         f"{cal['ece_after']:.3f}; abstain below {cal['abstain_threshold']:.2f} "
                         f"(answers {cal['coverage']:.0%} of the holdout, {cal['wrong_when_shown']:.1%} of those wrong; "
                         f"target ≤ {cal['max_wrong']:.0%})")
            lines += [f"- {line}" for line in promise_lines(cal)]
        lines.append("")
    table = per_label.get(manifest["family"])
    if table:
        lines += [f"## Per label ({manifest['family']}, holdout)", "",
                  "| label | precision | recall | support |", "|---|---|---|---|"]
        lines += [f"| {label} | {v['precision']:.3f} | {v['recall']:.3f} | {v['support']} |" for label, v in table.items()]
    return "\n".join(lines) + "\n"
