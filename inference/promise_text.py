"""What a version's thresholds promise, one sentence each, from its stored calibration (a dict):
the shown cards, `/tuesday status`, the dashboard, release notes and the model card all read these."""

from __future__ import annotations

from inference.promise_rows import FROM_SLACK_MIN


def _pct(x: float) -> str:
    return f"{100 * x:.3g} %"


def promise_lines(cal: dict | None) -> list[str]:
    """What a version's thresholds promise, one sentence each, from its stored calibration (a dict).

    >>> promise_lines({"abstain_threshold": 0.83, "handoff_threshold": 0.2})
    ['Suggests above 83 %, hands off below 20 %: no guarantee recorded (calibrated before Tuesday stored one)']
    """
    if not cal:
        return ["No guarantee recorded (the version has no calibration)"]
    if "abstain_guaranteed" not in cal:
        cuts = f"Suggests above {_pct(cal['abstain_threshold'])}"
        if cal.get("handoff_threshold"):
            cuts += f", hands off below {_pct(cal['handoff_threshold'])}"
        return [f"{cuts}: no guarantee recorded (calibrated before Tuesday stored one)"]
    target, sure = _pct(cal["max_wrong"]), _pct(cal["confidence"])
    n, needs = cal["holdout_n"], cal["abstain_needs"]
    slack = cal.get("promise_source") == "slack"

    def rows(count: int, kind: str = "", small: bool = False) -> str:
        """'80 holdout tickets' ('80 tickets' when too few), or '120 tickets labelled in Slack'."""
        return f"{count} {kind}tickets labelled in Slack" if slack else f"{count} {kind}{'' if small else 'holdout '}tickets"

    if cal["abstain_guaranteed"]:
        lines = [f"Suggests above {_pct(cal['abstain_threshold'])}: ≤ {target} of shown suggestions wrong with "
                 f"{sure} confidence, from {rows(n)}"]
    elif n < needs:
        lines = [f"Holdout too small to promise ≤ {target} of shown suggestions wrong ({rows(n, small=True)}; needs "
                 f"{needs}): every ticket asks for a label"]
    else:
        lines = [f"No confidence cut promises ≤ {target} of shown suggestions wrong on {rows(n)}: "
                 "every ticket asks for a label"]
    m, needs = cal["holdout_in_scope"], cal["handoff_needs"]
    far, hands_off = cal.get("far_threshold") or 0.0, bool(cal.get("far_hands_off"))
    if far:
        share = cal.get("far_share")
        lines.append(f"Unlike every labelled ticket (nearest similarity below {far:.2f}): "
                     + ("handed off" if hands_off else "asks for a label, marked as a new kind of ticket")
                     + (f"; {_pct(share)} of in-scope promise rows" if share is not None else "")
                     + (", counted in the hand-off promise" if hands_off else
                        " (the holdout allows too few escalations to hand them off)" if m is not None else ""))
    if m is None:  # the task has no hand-off label
        return lines + _source_lines(cal)
    if cal["handoff_guaranteed"]:
        lines.append(f"Hands off below {_pct(cal['handoff_threshold'])}: ≤ {target} wrong escalations with {sure} "
                     f"confidence, from {rows(m, 'in-scope ')}")
    elif m < needs:
        lines.append(f"Holdout too small to promise ≤ {target} wrong escalations ({rows(m, 'in-scope ', small=True)}; "
                     f"needs {needs}): no hand-off by confidence, unsure tickets ask for a label")
    else:
        lines.append(f"The model answers the hand-off label on too many of {rows(m, 'in-scope ')} to promise "
                     f"≤ {target} wrong escalations: no hand-off by confidence")
    return lines + _source_lines(cal)


def _source_lines(cal: dict) -> list[str]:
    """Which rows chose and which promised, and whether the promise rests on live tickets."""
    source, chose = cal.get("promise_source"), cal.get("choose_n")
    if chose is None:  # every row did both jobs: a version calibrated before the split says so
        return [] if "choose_n" in cal or "abstain_guaranteed" not in cal else [
            "The same holdout rows chose the temperature and set the thresholds (calibrated before Tuesday "
            "split them): the promise may be optimistic"]
    lines = [f"{chose} other holdout tickets chose the model's settings (mix, prior, temperature, far cut); "
             "they set no threshold"]
    if source == "imported":
        slack = cal.get("promise_slack") or 0
        lines.append(f"The promise rests on imported examples ({slack} of its rows labelled in Slack; from "
                     f"{FROM_SLACK_MIN} it rests on those alone): it may not carry over to live tickets")
    return lines
