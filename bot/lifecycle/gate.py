"""The one gate-and-route every finished training goes through: queued retrains, `tuesday train` and the demos.

A candidate passes only if it beats production on the same holdout, and only while nobody paused
retraining or moved production since it started training (it was compared with that production).
One that passes is then routed, in this order:

- shadow first (TUESDAY_SHADOW_MIN_TICKETS, when there is a production to shadow): it labels live
  tickets beside production; the upkeep promotes or keeps it later (bot.lifecycle.shadow_gate);
- a manager's sign-off (TUESDAY_PROMOTION_SIGNOFF): production waits for `tuesday promote` or the
  report's button (bot.lifecycle.signoff);
- else production is switched to it at once (compare-and-set against the production it was compared with).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.lifecycle.shadow import hold_in_shadow, shadow_first
from bot.store.production import PointerMoved
from bot.store.runs import PASSED, is_paused
from inference.gate import decide


@dataclass(frozen=True)
class Verdict:
    """What the gate decided for a candidate and where it went."""

    passed: bool  # it beat production on the holdout while nothing moved
    promoted: bool  # production is the candidate now
    why: str
    shadow: dict | None = None  # the run's metrics["shadow"] while it waits in shadow

    @property
    def status(self) -> str:
        """The final status of the candidate's run: promoted, passed (waits for shadow or sign-off) or kept."""
        return "promoted" if self.promoted else PASSED if self.passed else "kept"


def promoted_by(run) -> str:
    """Who the production history names for a promotion by this run."""
    return f"slack:{run.requested_by}" if run.trigger == "command" else f"{run.trigger}:{run.requested_by}"


def gate_and_route(runtime, summary: dict, *, by: str, note: str) -> Verdict:
    """Decide on a train job's summary and route a candidate that passes; `note` says where it came from."""
    from bot.trail.purge import purge_new_version

    # A forget while it trained could not reach the files its job was writing: done now, before anyone sees them.
    purge_new_version(runtime, summary["version"])
    # Training takes long; the candidate was compared with the production of its start.
    live = runtime.production.name()
    if live != summary.get("production"):
        return Verdict(False, False, f"production changed to {live} while it trained (rollback?); not compared, "
                                     "not promoted")
    if is_paused(runtime.sessions):
        return Verdict(False, False, "retraining was paused while it trained; not promoted")
    decision = decide(summary["metrics"], summary.get("production_metrics"), min_gain=runtime.settings.min_gain)
    if not decision.promote:
        return Verdict(False, False, decision.why)
    # Each task's shadow compares with the agents' labels of that task's suggestions.
    if shadow_first(runtime.settings, live):
        return Verdict(True, False, decision.why, shadow=hold_in_shadow(runtime, summary["version"], note=note))
    if runtime.settings.promotion_signoff:
        return Verdict(True, False, decision.why)
    try:
        # Compare-and-set: a rollback on another host while the candidate trained wins over it.
        runtime.production.switch(summary["version"], by=by, reason=decision.why, expect=live)
    except PointerMoved as exc:
        return Verdict(False, False, f"not promoted: {exc}")
    return Verdict(True, True, decision.why)
