"""The shadow version beside production in the suggest worker: its answer stored, never shown."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.error_ids import logged, ours, shown
from bot.lifecycle.shadow import FAILED, shadow_state
from bot.store.shadow import ShadowSuggestion
from bot.store.tickets import route
from bot.worker.predictors import PredictorCache
from inference.errors import TuesdayError

log = logging.getLogger(__name__)

LOAD_RETRY_S = 300.0  # a shadow version that failed to load is tried again after this long, not on every ticket


class ShadowUnavailable(TuesdayError):
    """The shadow version failed to load a moment ago; it is not tried again on every ticket (its message is ours:
    the load error as bot.error_ids.shown gives it)."""


class ShadowRunner:
    """After production's suggestion is posted, the shadow version's answer for the same ticket, stored.

    One per task: `runtime` is the task's view, whose shadow flag it follows."""

    def __init__(self, runtime, load, thresholds, *, retry_load_s: float = LOAD_RETRY_S):
        self.runtime, self.sessions = runtime, runtime.sessions
        self.thresholds, self.retry_load_s = thresholds, retry_load_s
        self._wanted: str | None = None
        self.predictors = PredictorCache(lambda: self._wanted, load)
        self._load_failed: tuple[str, float, str] | None = None  # (version, when, error)
        self.failures = 0  # this process's failed shadow predictions (each is also a "failed" row)

    def close(self) -> None:
        self.predictors.close()

    def _predictor(self, version: str):
        failed = self._load_failed
        if failed and failed[0] == version and time.monotonic() - failed[1] < self.retry_load_s:
            raise ShadowUnavailable(f"{version} did not load {time.monotonic() - failed[1]:.0f} s ago ({failed[2]}); "
                                    f"tried again after {self.retry_load_s:.0f} s")
        self._wanted = version
        try:
            predictor = self.predictors.get()
        except Exception as exc:
            eid = logged(log, exc, f"shadow: loading {version}")
            self._load_failed = (version, time.monotonic(), shown(exc, eid)[:500])
            raise
        self._load_failed = None
        return predictor

    def run(self, ticket, suggestion) -> ShadowSuggestion | None:
        """Store the shadow version's answer for a posted production suggestion; None when there is nothing to do.

        Never raises for the shadow's own failures: the ticket is production's, already posted."""
        try:
            state = shadow_state(self.runtime)
            if state is None:
                if self.predictors.predictor is not None:
                    self.predictors.close()  # off: give the memory back
                return None
            version = state["version"]
            if version == suggestion.model_version:
                return None  # it is production now: nothing beside it to compare
            with self.sessions() as session:
                if session.scalar(select(ShadowSuggestion.id).where(ShadowSuggestion.suggestion_id == suggestion.id,
                                                                    ShadowSuggestion.version == version)):
                    return None  # a retried job: answered already
        except SQLAlchemyError as exc:
            self.failures += 1
            logged(log, exc, "shadow: reading the shadow state", ticket=ticket.id)
            return None
        row = ShadowSuggestion(ticket_id=ticket.id, suggestion_id=suggestion.id, version=version)
        try:
            predictor = self._predictor(version)
            cpu = time.process_time()
            prediction = predictor.predict(ticket.model_text)
            row.cpu_ms = (time.process_time() - cpu) * 1000.0
            cut = self.thresholds(version)
            evidence = getattr(prediction, "evidence", None) or []
            similarity = evidence[0].get("similarity") if evidence and isinstance(evidence[0], dict) else None
            row.routing, row.label = route(prediction.label, float(prediction.confidence), threshold=cut.abstain,
                                           handoff_threshold=cut.handoff, handoff_label=cut.handoff_label,
                                           similarity=similarity, far=cut.far, far_hands_off=cut.far_hands_off)
            row.confidence, row.latency_ms = float(prediction.confidence), float(prediction.latency_ms)
        except Exception as exc:  # noqa: BLE001  (the shadow's failure is stored as a row, never production's)
            self.failures += 1
            # Stored, and shown by /tuesday shadow, as its type and an error id to find in this worker's log: a
            # model's error can quote the ticket it was given.
            eid = logged(log, exc, f"shadow {version}", ticket=ticket.id)
            row.routing, row.error = FAILED, (f"{type(exc).__name__}: {exc}" if ours(exc) else shown(exc, eid))[:1000]
        try:
            with self.sessions() as session:
                session.add(row)
                session.commit()
        except IntegrityError:
            return None  # another worker answered the same suggestion at the same moment
        except SQLAlchemyError as exc:
            self.failures += 1
            logged(log, exc, "shadow: storing the answer", ticket=ticket.id)
            return None
        return row
