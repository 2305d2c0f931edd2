"""The predictor interface: ticket text in, suggestion out, whatever the model family."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol


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
