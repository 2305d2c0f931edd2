"""The promotion gate: a candidate goes live only if it beats production on the same holdout."""

from __future__ import annotations

from bot.production import PointerMoved, Production
from inference.gate import HANDOFF_TOLERANCE, Decision, decide

__all__ = ["HANDOFF_TOLERANCE", "Decision", "apply_gate", "decide"]


def apply_gate(production: Production, summary: dict, *, by: str, min_gain: float = 0.0,
               switch: bool = True) -> Decision:
    """Decide on a train job's summary and, if it passes, switch production from the version it was compared with.

    switch=False only decides: a candidate that passes then waits for a manager's sign-off (bot.trail.signoff).
    """
    decision = decide(summary["metrics"], summary.get("production_metrics"), min_gain=min_gain)
    if not decision.promote or not switch:
        return decision
    try:
        # Compare-and-set: a rollback on another host while the candidate trained wins over it.
        production.switch(summary["version"], by=by, reason=decision.why, expect=summary.get("production"))
    except PointerMoved as exc:
        return Decision(False, f"not promoted: {exc}")
    return decision
