"""Label frequencies from the live stream (TUESDAY_PRIOR_ADJUSTMENT): estimated from recent suggestions, applied when serving.

A version's probabilities carry the label frequencies of the rows it learned from (few, often
balanced); the live stream is often skewed. With the setting on, the CPU workers' upkeep
(`estimate_label_prior`, every few minutes) reads the production version's newest suggestions,
recovers the model's own probabilities (undoing any re-weighting a row got), estimates the live
prior by EM (inference.priors) against the training one from drift.json (moved by the version's own label
prior where it has one: what its probabilities carry, `carried_prior`), and stores it in
label_priors, applied when it moved at least TUESDAY_PRIOR_MIN_SHIFT (total variation). Every
suggest worker reads its version's newest row (`PriorCache`) and, when applied, re-weights each
prediction by it before routing; the suggestion records which row it used (prior_id).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select

from bot.store.base import as_utc, utc_now
from bot.store.tickets import LabelPrior, Suggestion
from inference.errors import RegistryError
from inference.priors import VersionPrior, adjust, estimate_prior, total_variation

log = logging.getLogger(__name__)

ESTIMATE_EVERY = timedelta(minutes=10)  # a version's estimate is renewed this often
CACHE_S = 60.0  # how long a suggest worker keeps its version's newest row
UNSEEN_ROWS = 0.5  # training rows counted for a label the version learned from none of


def training_prior(counts: dict[str, int], labels: list[str]) -> dict[str, float]:
    """Label shares of the training rows (drift.json's training_labels), a label with no rows given a small share."""
    weights = {label: float(counts.get(label, 0)) or UNSEEN_ROWS for label in labels}
    total = sum(weights.values())
    return {label: w / total for label, w in weights.items()}


def carried_prior(runtime, version: str, training: dict[str, float]) -> dict[str, float]:
    """The prior a version's served probabilities carry: its training rows' shares, moved by the label prior
    the version chose on its holdout (the served family's "prior" in its manifest; none in older versions)."""
    try:
        manifest = runtime.registry.get(version).manifest
    except RegistryError:
        return training
    part = manifest.get("families", {}).get(manifest.get("family", "decoder"), {})
    prior = VersionPrior.from_dict(part.get("prior"))
    return training if prior is None else prior.carried(training)


def newest_prior(session, version: str) -> LabelPrior | None:
    return session.scalar(select(LabelPrior).where(LabelPrior.version == version)
                          .order_by(LabelPrior.id.desc()).limit(1))


def _vector(shares: dict[str, float], labels: list[str]) -> np.ndarray:
    return np.array([shares.get(label, 0.0) for label in labels])


def model_probabilities(probabilities: dict[str, float], prior: LabelPrior | None) -> dict[str, float]:
    """A stored suggestion's probabilities as the model gave them: a re-weighting by `prior` undone."""
    if prior is None:
        return probabilities
    labels = list(probabilities)
    live, training = json.loads(prior.prior), json.loads(prior.training)
    # Re-weighting from the live prior back to the training one is the exact inverse.
    undone = adjust(_vector(probabilities, labels), _vector(live, labels), _vector(training, labels))
    return dict(zip(labels, map(float, undone)))


def estimate_label_prior(runtime, *, now: datetime | None = None) -> LabelPrior | None:
    """The upkeep chore: store a new estimate for the production version when one is due; returns it."""
    from bot.monitor.drift import reference

    settings = runtime.settings
    if not settings.prior_adjustment:
        return None
    version = runtime.production.name()
    if version is None:
        return None
    counts = (reference(runtime, version) or {}).get("training_labels")
    if not counts:
        return None  # a version built before drift.json: its training frequencies are unknown
    now = now or utc_now()
    with runtime.sessions() as session:
        last = newest_prior(session, version)
        if last is not None and as_utc(last.estimated_at) > now - ESTIMATE_EVERY:
            return None
        rows = session.execute(select(Suggestion.probabilities, Suggestion.prior_id)
                               .where(Suggestion.model_version == version)
                               .order_by(Suggestion.id.desc()).limit(settings.prior_window)).all()
        used = {pid for _, pid in rows if pid is not None}
        priors = {p.id: p for p in session.scalars(select(LabelPrior).where(LabelPrior.id.in_(used)))} if used else {}
    probs = [model_probabilities(json.loads(text or "{}"), priors.get(pid)) for text, pid in rows]
    probs = [p for p in probs if p]
    if len(probs) < settings.prior_min_tickets:
        return None
    labels = list(dict.fromkeys(label for p in probs for label in p))
    training = carried_prior(runtime, version, training_prior(counts, labels))
    train = _vector(training, labels)
    live = estimate_prior(np.array([_vector(p, labels) for p in probs]), train)
    shift = total_variation(live, train)
    row = LabelPrior(version=version, estimated_at=now, n_tickets=len(probs),
                     prior=json.dumps(dict(zip(labels, map(float, live)))), training=json.dumps(training),
                     shift=shift, applied=shift >= settings.prior_min_shift)
    with runtime.sessions() as session:
        session.add(row)
        session.commit()
    log.info("label frequencies of %s from %d tickets: shift %.3f (%s)", version, row.n_tickets, shift,
             "applied" if row.applied else "not applied")
    return row


class PriorCache:
    """A suggest worker's view of its version's newest estimate, read from the store at most once a minute."""

    def __init__(self, sessions, ttl_s: float = CACHE_S):
        self.sessions, self.ttl_s = sessions, ttl_s
        self._rows: dict[str, tuple[float, LabelPrior | None]] = {}

    def applied(self, version: str) -> LabelPrior | None:
        """The version's newest estimate if serving applies it, else None."""
        read_at, row = self._rows.get(version, (None, None))
        if read_at is None or time.monotonic() - read_at > self.ttl_s:
            with self.sessions() as session:
                row = newest_prior(session, version)
            self._rows[version] = (time.monotonic(), row)
        return row if row is not None and row.applied else None


def reweigh(prediction, prior: LabelPrior):
    """The prediction with its probabilities under the live prior, its label and confidence taken from them."""
    labels = list(prediction.probabilities)
    live, training = json.loads(prior.prior), json.loads(prior.training)
    probs = adjust(_vector(prediction.probabilities, labels), _vector(training, labels), _vector(live, labels))
    best = int(np.argmax(probs))
    # A generated reason argues for the model's own label: it goes when the label changes.
    reason = prediction.reason if labels[best] == prediction.label else ""
    return dataclasses.replace(prediction, label=labels[best], confidence=float(probs[best]), reason=reason,
                               probabilities=dict(zip(labels, map(float, probs))))


def prior_summary(runtime) -> dict:
    """What `/tuesday status` says about label frequencies: {setting, version, n (suggestions of the version
    when there is no estimate yet), estimate: {n_tickets, shift, applied, top: [label, live, training]} or None}."""
    settings = runtime.settings
    version = runtime.production.name()
    summary = {"setting": settings.prior_adjustment, "version": version, "min_tickets": settings.prior_min_tickets,
               "min_shift": settings.prior_min_shift, "n": None, "estimate": None}
    if not settings.prior_adjustment or version is None:
        return summary
    with runtime.sessions() as session:
        row = newest_prior(session, version)
        if row is None:
            window = select(Suggestion.id).where(Suggestion.model_version == version).limit(settings.prior_min_tickets)
            summary["n"] = session.scalar(select(func.count()).select_from(window.subquery()))
            return summary
    live, training = json.loads(row.prior), json.loads(row.training)
    top = max(live, key=live.get)
    summary["estimate"] = {"n_tickets": row.n_tickets, "shift": row.shift, "applied": row.applied,
                           "estimated_at": as_utc(row.estimated_at).isoformat(timespec="seconds"),
                           "top": [top, live[top], training.get(top, 0.0)]}
    return summary


def prior_line(summary: dict) -> str:
    """One line of `/tuesday status`."""
    head = "• label frequencies: "
    estimate = summary["estimate"]
    if not summary["setting"]:
        return head + "not adjusted (setting off)"
    if summary["version"] is None:
        return head + "not adjusted: no production model yet"
    if estimate is None and summary["n"] < summary["min_tickets"]:
        return head + f"not adjusted: {summary['n']} of the {summary['min_tickets']} recent tickets it needs"
    if estimate is None:
        return head + f"not adjusted: no estimate yet (the CPU workers make one every {ESTIMATE_EVERY.seconds // 60} minutes)"
    if not estimate["applied"]:
        return (head + f"not adjusted: shift {estimate['shift']:.2f} below {summary['min_shift']:.2f} "
                f"(from {estimate['n_tickets']} recent tickets)")
    label, live, training = estimate["top"]
    return (head + f"adjusted from {estimate['n_tickets']} recent tickets (shift {estimate['shift']:.2f} from "
            f"training; top: {label} {100 * live:.0f}% vs {100 * training:.0f}%)")
