"""The predictor interface: ticket text in, suggestion out, whatever the model family."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from inference.task import Task


@dataclass
class Suggestion:
    """What an agent sees: a label, how sure the model is, and why."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    reason: str = ""
    model_version: str = ""
    latency_ms: float = 0.0
    evidence: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def top(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:n]


class Predictor(Protocol):
    """One method: a new model family is one new class with it."""

    def predict(self, text: str) -> Suggestion: ...


def softmax(scores: np.ndarray) -> np.ndarray:
    """Label scores (log-probabilities) to a distribution over the labels."""
    probs = np.exp(scores - scores.max())
    return probs / probs.sum()


def make_suggestion(task: Task, probs: np.ndarray, *, started: float, reason: str = "", version: str = "") -> Suggestion:
    """The top label of a distribution in task order; latency counted from `started` (perf_counter)."""
    best = int(np.argmax(probs))
    labels = task.label_names
    return Suggestion(label=labels[best], confidence=float(probs[best]),
                      probabilities={label: float(p) for label, p in zip(labels, probs)},
                      reason=reason, model_version=version, latency_ms=(time.perf_counter() - started) * 1000)
