"""The promotion gate: a candidate goes live only if it beats production on the same holdout."""

from __future__ import annotations

from inference.gate import HANDOFF_TOLERANCE, Decision, decide
from inference.registry import Registry

__all__ = ["HANDOFF_TOLERANCE", "Decision", "apply_gate", "decide"]


def apply_gate(registry: Registry, summary: dict, *, by: str, min_gain: float = 0.0) -> Decision:
    """Decide on a train job's summary and, if it passes, switch production."""
    decision = decide(summary["metrics"], summary.get("production_metrics"), min_gain=min_gain)
    if decision.promote:
        registry.promote(summary["version"], by=by, reason=decision.why)
    return decision
