"""The promotion rule, shared by the trainer (which family of a run becomes the candidate) and the
bot (whether the candidate replaces production): compare holdout metrics measured on the same rows."""

from __future__ import annotations

from dataclasses import dataclass

# A challenger may not buy macro-F1 by missing more hand-offs than this.
HANDOFF_TOLERANCE = 0.02


@dataclass(frozen=True)
class Decision:
    promote: bool
    why: str


def decide(candidate: dict, production: dict | None, *, min_gain: float = 0.0, incumbent: str = "production") -> Decision:
    """Does `candidate` beat `production` (the incumbent) on the holdout?"""
    if not candidate or not candidate.get("n"):
        return Decision(False, "the candidate has no holdout metrics")
    if production is None:
        return Decision(True, f"no {incumbent} model yet; candidate macro-F1 {candidate['macro_f1']:.3f}")
    gain = candidate["macro_f1"] - production["macro_f1"]
    handoff_drop = (production.get("handoff_recall") or 0.0) - (candidate.get("handoff_recall") or 0.0)
    if handoff_drop > HANDOFF_TOLERANCE:
        return Decision(False, f"hand-off recall would fall {production['handoff_recall']:.3f} → "
                               f"{candidate.get('handoff_recall') or 0.0:.3f}")
    if gain > min_gain:
        return Decision(True, f"macro-F1 {production['macro_f1']:.3f} → {candidate['macro_f1']:.3f} (+{gain:.3f})")
    return Decision(False, f"macro-F1 {candidate['macro_f1']:.3f} does not beat {incumbent}'s "
                           f"{production['macro_f1']:.3f} by more than {min_gain:.3f}")


def choose_family(results: dict[str, dict]) -> tuple[str, str]:
    """The family of a run that becomes the candidate, and why: a challenger must pass the gate
    against the first family (encoder first: it is the cheaper one to serve)."""
    names = list(results)
    if len(names) == 1:
        return names[0], f"only the {names[0]} family was trained"
    first, second = names[0], names[1]
    verdict = decide(results[second], results[first], incumbent=first)
    if verdict.promote:
        return second, f"{second} beats {first}: {verdict.why}"
    return first, f"{first} kept over {second}: {verdict.why}"
