"""The promotion gate: a candidate goes live only if it beats production on the same holdout."""

from __future__ import annotations

from dataclasses import dataclass

from inference.registry import Registry

# A candidate may not buy macro-F1 by missing more hand-offs than this.
HANDOFF_TOLERANCE = 0.02


@dataclass(frozen=True)
class Decision:
    promote: bool
    why: str


def decide(candidate: dict, production: dict | None, *, min_gain: float = 0.0) -> Decision:
    """Compare holdout metrics of a candidate and of production (both on the same rows)."""
    if not candidate or not candidate.get("n"):
        return Decision(False, "the candidate has no holdout metrics")
    if production is None:
        return Decision(True, f"no production model yet; candidate macro-F1 {candidate['macro_f1']:.3f}")
    gain = candidate["macro_f1"] - production["macro_f1"]
    handoff_drop = (production.get("handoff_recall") or 0.0) - (candidate.get("handoff_recall") or 0.0)
    if handoff_drop > HANDOFF_TOLERANCE:
        return Decision(False, f"hand-off recall would fall {production['handoff_recall']:.3f} → "
                               f"{candidate.get('handoff_recall') or 0.0:.3f}")
    if gain > min_gain:
        return Decision(True, f"macro-F1 {production['macro_f1']:.3f} → {candidate['macro_f1']:.3f} (+{gain:.3f})")
    return Decision(False, f"macro-F1 {candidate['macro_f1']:.3f} does not beat production's "
                           f"{production['macro_f1']:.3f} by more than {min_gain:.3f}")


def apply_gate(registry: Registry, summary: dict, *, by: str, min_gain: float = 0.0) -> Decision:
    """Decide on a train job's summary and, if it passes, switch production."""
    decision = decide(summary["metrics"], summary.get("production_metrics"), min_gain=min_gain)
    if decision.promote:
        registry.promote(summary["version"], by=by, reason=decision.why)
    return decision
