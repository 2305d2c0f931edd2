"""One training round shared by `tuesday train`, the demo and queued retrains: snapshot → train job → gate-and-route."""

from __future__ import annotations

from pathlib import Path

from bot.lifecycle.gate import gate_and_route
from bot.lifecycle.jobs import TRAIN_JOB, run_job
from bot.lifecycle.signoff import record_passed
from bot.runtime import Runtime
from bot.store.importer import read_labelled
from bot.trail.bases import approved_licenses
from bot.trail.curation import snapshot_store
from inference.errors import TuesdayError
from inference.snapshot import upload_snapshot, upload_task


class TrainingDataError(TuesdayError):
    """The labelled data or the training config given for a round cannot be used."""


def snapshot_for_training(rt: Runtime, data: Path | None = None) -> dict:
    """Freeze the store (or a labelled file) and the task into the artifact store; returns their keys and sha256s,
    and the data approval the store's snapshot was cut at (`data_approval`, None when approval is off or for a file).

    Those keys are all a train job gets: the training host reads them from the artifact store,
    so it needs neither this host's disk nor the SQL store. Which examples of the store are
    trained on is bot.trail.curation's rule (no unsettled conflicts; only approved data when
    TUESDAY_DATA_APPROVAL is on), for every path that trains.
    """
    from inference.snapshot import write_snapshot

    out = rt.settings.data_dir / "snapshots"
    approval = None
    if data is None:
        path, approval = snapshot_store(rt.sessions, rt.task, out, rt.settings.holdout_fraction,
                                        approval_required=rt.settings.data_approval)
    else:
        rows, errors = read_labelled(data, rt.task)
        if errors:
            raise TrainingDataError("\n".join([f"{data}: {len(errors)} bad rows"]
                                              + [f"  line {n}: {m}" for n, m in errors]))
        path = write_snapshot(rows, out, rt.settings.holdout_fraction)
    store = rt.registry.store
    return {**upload_snapshot(store, path), **upload_task(store, rt.task.to_yaml()), "data_approval": approval}


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


def run_config(rt: Runtime, overrides: dict | None = None) -> dict:
    """The training config a round sends: this host's family and calibration settings, then the overrides."""
    return {"families": rt.settings.families, "max_wrong": rt.settings.max_wrong, **(overrides or {})}


def shared_encoder(rt: Runtime) -> str | None:
    """The routing task's production version when this task's round trains a head on its encoder
    (TUESDAY_SHARED_ENCODER, an encoder-family version in production), else None."""
    routing = rt.tasks.routing_name
    if not rt.settings.shared_encoder or rt.task.name == routing:
        return None
    name = rt.for_task(routing).production.name()
    if name is None or rt.registry.get(name).manifest.get("family") != "encoder":
        return None
    return name


def train_and_gate(rt: Runtime, *, base: Path | None = None, config: dict | None = None, data: Path | None = None,
                   promote: bool = True, by: str = "cli", progress: bool = True, snapshot: dict | None = None) -> dict:
    """Snapshot → train job (in this process) → the gate and its routing; returns the job summary plus the verdict."""
    snapshot = snapshot or snapshot_for_training(rt, data)
    summary = run_job(TRAIN_JOB, **snapshot, config=run_config(rt, config), production=rt.production.name(),
                      base=str(base) if base else None, progress=progress, licenses=approved_licenses(rt.sessions),
                      shared_encoder=shared_encoder(rt))
    if not promote:
        summary["promoted"], summary["why"] = False, "--no-promote"
        return summary
    verdict = gate_and_route(rt, summary, by=by, note="tuesday train")
    summary["promoted"], summary["why"] = verdict.promoted, verdict.why
    if verdict.shadow is not None:
        summary["shadow"] = verdict.shadow  # it labels live tickets first; the CPU workers' upkeep decides
    if verdict.passed and not verdict.promoted:
        # It waits in a run of its own, like a queued run's candidate: for its shadow result, or for
        # `tuesday promote VERSION` (or the Slack button).
        summary["awaiting_shadow" if verdict.shadow else "awaiting_signoff"] = record_passed(rt, summary, by=by).id
    return summary
