"""The served predictors: a version fetched, verified, loaded, checked and swapped in; its thresholds."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bot.runtime import Runtime
from bot.trail.bases import approved_licenses
from inference.base_models import UnapprovedBase, serving_refusal
from inference.embedders import EmbedderPool
from inference.errors import ModelError, RegistryError
from inference.predictor import Predictor
from inference.registry import VersionInfo
from inference.task import Task, load_task

log = logging.getLogger(__name__)

# This process's encoder files: fields trained on the routing task's encoder serve a copy of the same
# file, opened once here, and a ticket's second and third field reuse its first field's embedding.
EMBEDDERS = EmbedderPool()


APPROVALS_RECHECK_S = 60.0  # how stale a serving worker's view of the base approvals may grow


class PredictorCache:
    """This process's predictor for the production version; it follows the production pointer.

    check(name) raises when the version may no longer be served (its base's approval withdrawn); it
    runs at most every recheck_s seconds while a version stays loaded (the load itself checks first).
    """

    def __init__(self, production_name: Callable[[], str | None], load: Callable[[str], Predictor],
                 check: Callable[[str], None] | None = None, recheck_s: float = APPROVALS_RECHECK_S,
                 clock: Callable[[], float] = time.monotonic, generation: Callable[[], object] | None = None):
        self._production_name, self._load = production_name, load
        # generation: changes when a loaded version's files changed under it (a forget rewrote its evidence);
        # the version is then loaded again, so no forgotten row stays in this process's memory.
        self._generation, self.generation = generation, None
        self._check, self._recheck_s, self._clock = check, recheck_s, clock
        self._checked_at = 0.0
        self.version: str | None = None
        self.predictor: Predictor | None = None
        self.loads = 0

    def get(self) -> Predictor:
        # One small SQL read per ticket: cheap next to a prediction, and no signal to miss.
        name = self._production_name()
        generation = self._generation() if self._generation is not None else None
        if name is None:
            raise RegistryError("no production model yet: train and promote one (`tuesday train`)")
        if (self._check is not None and name == self.version and self.predictor is not None
                and self._clock() - self._checked_at >= self._recheck_s):
            try:
                self._check(name)
            except UnapprovedBase:
                log.error("stopped serving model %s: its base is no longer approved", name)
                self.close()
                raise
            self._checked_at = self._clock()
        if name != self.version or self.predictor is None or generation != self.generation:
            # Download and verify, load and check, then swap, then close: a version whose files
            # fail their sha256, fail to load or fail the check raises here and leaves the old predictor in place (the job
            # fails and is retried; nothing is half-swapped).
            new = self._load(name)
            old, self.predictor, self.version, self.generation = self.predictor, new, name, generation
            self._checked_at = self._clock()
            self.loads += 1
            log.info("serving model %s", name)
            if old is not None:
                old.close()
        return self.predictor

    def close(self) -> None:
        if self.predictor is not None:
            self.predictor.close()
        self.predictor, self.version = None, None


def version_task(runtime: Runtime, info: VersionInfo) -> Task:
    """The task a version was trained on (its own task.yaml), else the runtime's."""
    # The version's own task.yaml fixes the prompt and labels it learned, so serving stays
    # identical to training even after the team edits the task file (until the next retrain).
    task_file = Path(info.path) / "task.yaml"
    if not task_file.exists() and "task.yaml" in info.manifest.get("artifacts", {}):
        runtime.registry.fetch(info.name, ["task.yaml"])
    return load_task(task_file) if task_file.exists() else runtime.task


def served_thresholds(runtime: Runtime, info: VersionInfo) -> Thresholds:
    """A version's thresholds as this process serves them (TUESDAY_CONFIDENCE_THRESHOLD, TUESDAY_FAR_RULE). Only
    the routing task hands off: another field's version keeps its abstain and far cuts (a far ticket asks)."""
    settings = runtime.settings
    cut = version_thresholds(info, version_task(runtime, info), settings.confidence_threshold, settings.far_rule)
    if info.manifest.get("task") in set(runtime.tasks.names) - {runtime.tasks.routing_name}:
        cut = Thresholds(abstain=cut.abstain, far=cut.far)
    return cut


def check_bases(runtime: Runtime, name: str) -> None:
    """UnapprovedBase when version `name` was built on base content no longer approved in SQL.

    Compares the pins its manifest recorded with today's approvals: one small SQL read, no hashing
    (the version's own files were checked against their sha256 when fetched)."""
    why = serving_refusal(runtime.registry.get(name).manifest, approved_licenses(runtime.sessions))
    if why is not None:
        raise UnapprovedBase(f"model {name} is not served: {why} (`tuesday base` lists the approvals)")


def serving_cache(runtime: Runtime, recheck_s: float = APPROVALS_RECHECK_S) -> PredictorCache:
    """The predictor cache of a runtime's production version, its bases' approvals checked as it serves."""
    from bot.trail.forget import forgotten_generation

    return PredictorCache(runtime.production.name, lambda name: load_version(runtime, name),
                          check=lambda name: check_bases(runtime, name), recheck_s=recheck_s,
                          generation=lambda: forgotten_generation(runtime.sessions))


def load_version(runtime: Runtime, name: str) -> Predictor:
    """The served predictor of a version (whatever its family), its files fetched and verified, its bases
    still approved."""
    from inference.serving import load_predictor

    check_bases(runtime, name)  # before any download: a refused version costs nothing
    info = runtime.registry.fetch(name)
    task = version_task(runtime, info)
    predictor = load_predictor(info, task, threads=runtime.settings.threads, reasons=runtime.settings.reasons,
                               embedders=EMBEDDERS)
    try:
        check_predictor(predictor, task)
    except BaseException:
        predictor.close()
        raise
    return predictor


CHECK_TEXT = "Hello, I have a question about my account."


def check_predictor(predictor: Predictor, task: Task) -> None:
    """One prediction before a new model takes traffic: a label of its task and a real distribution."""
    import math

    got = predictor.predict(CHECK_TEXT)
    total = sum(got.probabilities.values())
    if (got.label not in task.labels or set(got.probabilities) != set(task.labels)
            or not all(math.isfinite(p) for p in got.probabilities.values()) or abs(total - 1.0) > 1e-3):
        raise ModelError(f"model {got.model_version or '?'} failed its check before serving: label {got.label!r}, "
                         f"probabilities over {sorted(got.probabilities)} summing to {total:.4f}")


DEFAULT_THRESHOLD = 0.5  # abstain threshold of a version without calibration (older, or built without a holdout)


@dataclass(frozen=True)
class Thresholds:
    """Where a version's suggestions are cut: below `abstain` unsure, below `handoff` out of scope, and
    a ticket whose nearest labelled example is less similar than `far` unlike anything labelled."""

    abstain: float
    handoff: float = 0.0
    handoff_label: str | None = None
    far: float = 0.0
    far_hands_off: bool = False  # far tickets handed off (else they ask for a label)

    @property
    def unpromised(self) -> bool:
        """The version made no abstain promise (calibration's NOTHING_SHOWN, above every confidence): every ticket
        asks for a label, so a message names its best guess as not promised rather than as a doubt."""
        return self.abstain > 1.0


def version_thresholds(info: VersionInfo, task: Task, override: float | None = None,
                       far_rule: bool = True) -> Thresholds:
    """The version's calibrated thresholds; `override` (TUESDAY_CONFIDENCE_THRESHOLD) replaces the abstain one;
    far_rule=False (TUESDAY_FAR_RULE) leaves the version's far cut out."""
    calibration = info.manifest.get("calibration") or {}
    abstain = override if override is not None else calibration.get("abstain_threshold")
    handoff = calibration.get("handoff_threshold") if task.handoff_label else None
    return Thresholds(abstain=DEFAULT_THRESHOLD if abstain is None else float(abstain),
                      handoff=float(handoff or 0.0), handoff_label=task.handoff_label,
                      far=float(calibration.get("far_threshold") or 0.0) if far_rule else 0.0,
                      far_hands_off=bool(calibration.get("far_hands_off")))
