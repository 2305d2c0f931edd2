"""Shadow mode: a candidate version labels live tickets beside production, stored and never shown.

`/tuesday shadow vN` (admins; `tuesday shadow vN`) names the shadow version in its task's control_flags
row ("shadow" for the routing task, "shadow:<task>" for another field: each task has its own shadow).
Every suggest worker then, after production's suggestion is stored and posted, also asks the
shadow version (its own predictor, fetched and checked like production's) and stores what it
would have shown, routed by its own thresholds, in shadow_suggestions. A shadow that fails to load
or predict is stored as a "failed" row and never touches the production suggestion.

Once agents have decided those tickets, `compare` judges both versions on the same tickets by the
same rule, against the agents' final label (the newest click on the ticket for that task):

- agreement: the label shown equals the final label (an abstention never agrees);
- override rate: over tickets where a label was shown, those whose final label is another one,
  as a click's "changed" and "rejected" count over reviewed; a ticket the agents handed off
  counts as a missed hand-off instead (unless the hand-off was shown);
- hand-offs suggested, wrong escalations (hand-off shown, agents kept it) and missed hand-offs.

Agents saw production's suggestion, not the candidate's: anchoring favours production a little,
so a candidate that matches it on live tickets is a fair bet, not a flattered one.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot.lifecycle.runs import ControlError
from bot.store import audit
from bot.store.base import as_utc, utc_now
from bot.store.feedback import Feedback
from bot.store.runs import Flag, RetrainRun
from bot.store.shadow import ShadowSuggestion
from bot.store.tickets import Suggestion

log = logging.getLogger(__name__)

SHADOW_FLAG = "shadow"  # the routing task's control_flags row: value = the shadow version, "" while off

FAILED = "failed"  # routing of a shadow row whose model did not answer
WAITING, DONE = "waiting", "done"
BY = "tuesday"  # the audit log's actor for what the gate does by itself


class ShadowRefused(ControlError):
    """The version cannot be put in shadow."""


def flag_name(runtime) -> str:
    """The control_flags row of the runtime's task's shadow ("shadow" for the routing task, as before tasks)."""
    task = runtime.task.name
    return SHADOW_FLAG if task == runtime.tasks.routing_name else f"{SHADOW_FLAG}:{task}"


def shadow_state(runtime) -> dict | None:
    """{version, by, since} of the version in shadow for the runtime's task, or None."""
    with runtime.sessions() as session:
        flag = session.get(Flag, flag_name(runtime))
    if flag is None or not flag.value:
        return None
    return {"version": flag.value, "by": flag.set_by, "since": as_utc(flag.set_at).isoformat(timespec="seconds")}


def last_change(runtime) -> dict | None:
    """Who last set or cleared the task's shadow flag and when ({version or None, by, at}), or None if never."""
    with runtime.sessions() as session:
        flag = session.get(Flag, flag_name(runtime))
    if flag is None:
        return None
    return {"version": flag.value or None, "by": flag.set_by, "at": as_utc(flag.set_at).isoformat(timespec="seconds")}


def _set_flag(runtime, value: str, *, by: str, action: str, target: str, **detail) -> str | None:
    """Set the task's flag and audit it in one transaction; returns the version it replaced (None if off)."""
    name = flag_name(runtime)
    for _ in range(2):
        with runtime.sessions() as session:
            flag = session.get(Flag, name, with_for_update=True)
            previous = flag.value or None if flag is not None else None
            if flag is None:
                flag = Flag(name=name)
                session.add(flag)
            flag.value, flag.set_by, flag.set_at = value, by, utc_now()
            audit.record(session, by, action, target, previous=previous, task=runtime.task.name, **detail)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # another admin created the row at this moment: update theirs
                continue
            return previous
    raise ControlError("could not change the shadow version: it changed under us twice; try again")


def start_shadow(runtime, version: str, *, by: str, note: str = "") -> dict:
    """Put `version` in shadow beside its own task's production (audited "shadow"); returns
    {version, task, previous, changed}. The version says its task: version names are global."""
    runtime.registry.get(version)  # RegistryError (no such version, or incomplete) reaches the caller as it is
    runtime = runtime.for_version(version)
    if runtime.production.name() == version:
        whose = f"{runtime.task.name}'s " if len(runtime.tasks.names) > 1 else ""
        raise ShadowRefused(f"{version} is {whose}production: shadow runs a candidate beside it")
    current = shadow_state(runtime)
    if current is not None and current["version"] == version:
        return {"version": version, "task": runtime.task.name, "previous": version, "changed": False}
    previous = _set_flag(runtime, version, by=by, action="shadow", target=version,
                         **({"note": note} if note else {}))
    log.info("shadow of %s: %s by %s (was %s)", runtime.task.name, version, by, previous or "off")
    return {"version": version, "task": runtime.task.name, "previous": previous, "changed": True}


def stop_shadow(runtime, *, by: str, reason: str = "", only: str | None = None) -> str | None:
    """End the task's shadow mode (audited "shadow.off"); returns the version that was in shadow, None if none was.

    only: end it only while that version is the one in shadow (a gate ending its own candidate's)."""
    current = shadow_state(runtime)
    if current is None or (only is not None and current["version"] != only):
        return None
    _set_flag(runtime, "", by=by, action="shadow.off", target=current["version"],
              **({"reason": reason} if reason else {}))
    log.info("shadow: %s ended by %s%s", current["version"], by, f" ({reason})" if reason else "")
    return current["version"]


def _stats(pairs: list[tuple[str | None, str]], handoff_label: str | None) -> dict:
    """pairs: (label shown, agents' final label) per ticket."""
    n = len(pairs)
    shown = [(s, f) for s, f in pairs if s is not None]
    agreed = sum(1 for s, f in pairs if s == f)
    overridden = sum(1 for s, f in shown if f != s and f != handoff_label)
    handoffs = [(s, f) for s, f in shown if handoff_label and s == handoff_label]
    return {"n": n, "agreed": agreed, "agreement": agreed / n if n else None,
            "shown": len(shown), "abstained": n - len(shown), "overridden": overridden,
            "override_rate": overridden / len(shown) if shown else None,
            "handoffs": len(handoffs), "wrong_escalations": sum(1 for _, f in handoffs if f != handoff_label),
            "missed_handoffs": sum(1 for s, f in pairs if handoff_label and f == handoff_label and s != f)}


def compare(runtime, version: str, *, production: str | None = None) -> dict:
    """Candidate `version` against production on the same live tickets that agents have decided
    (their final label for the runtime's task; only the routing task hands off).

    production: count only tickets that this production version suggested (the gate's own comparison).
    """
    task = runtime.task.name
    handoff_label = runtime.task.handoff_label if task == runtime.tasks.routing_name else None
    with runtime.sessions() as session:
        query = (select(ShadowSuggestion.ticket_id, ShadowSuggestion.label, ShadowSuggestion.routing,
                        Suggestion.label, Suggestion.model_version)
                 .join(Suggestion, Suggestion.id == ShadowSuggestion.suggestion_id)
                 .where(ShadowSuggestion.version == version).order_by(ShadowSuggestion.id))
        if production is not None:
            query = query.where(Suggestion.model_version == production)
        rows = session.execute(query).all()
        last_error = session.scalar(select(ShadowSuggestion.error).where(ShadowSuggestion.version == version,
                                                                          ShadowSuggestion.routing == FAILED)
                                    .order_by(ShadowSuggestion.id.desc()).limit(1))
        answered = {row[0]: row for row in rows if row[2] != FAILED}  # one per ticket, the newest
        newest = (select(func.max(Feedback.id)).where(Feedback.task == task, Feedback.ticket_id.in_(
            select(ShadowSuggestion.ticket_id).where(ShadowSuggestion.version == version)))
            .group_by(Feedback.ticket_id))
        final = dict(session.execute(select(Feedback.ticket_id, Feedback.label).where(Feedback.id.in_(newest))).all())
    decided = [(answered[t], final[t]) for t in answered if t in final]
    return {"version": version,
            "production": production or ", ".join(sorted({row[4] for row, _ in decided})) or None,
            "tickets": len(answered), "failed": sum(1 for row in rows if row[2] == FAILED), "last_error": last_error,
            "labelled": len(decided),
            "candidate": _stats([(row[1], final) for row, final in decided], handoff_label),
            "production_stats": _stats([(row[3], final) for row, final in decided], handoff_label)}


def better_or_equal(comparison: dict) -> bool:
    """The gate's rule on live tickets: the candidate agrees with agents at least as often as production."""
    return (comparison["candidate"]["agreement"] or 0.0) >= (comparison["production_stats"]["agreement"] or 0.0)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def comparison_table(c: dict) -> str:
    """Both versions side by side on the labelled live tickets (a code block)."""
    cand, prod = c["candidate"], c["production_stats"]
    left, right = f"{c['version']} (shadow)", f"{c['production'] or 'production'} (production)"
    width = max(14, len(left) + 2, len(right) + 2)
    rows = [("agreement with agents", _pct(cand["agreement"]), _pct(prod["agreement"])),
            ("override rate", _pct(cand["override_rate"]), _pct(prod["override_rate"])),
            ("hand-offs suggested", cand["handoffs"], prod["handoffs"]),
            ("wrong escalations", cand["wrong_escalations"], prod["wrong_escalations"]),
            ("missed hand-offs", cand["missed_handoffs"], prod["missed_handoffs"]),
            ("abstained", cand["abstained"], prod["abstained"])]
    lines = ["".ljust(22) + left.rjust(width) + right.rjust(width)]
    lines += [title.ljust(22) + str(a).rjust(width) + str(b).rjust(width) for title, a, b in rows]
    lines.append(f"n = {c['labelled']} live tickets labelled by agents")
    return "```\n" + "\n".join(lines) + "\n```"


def counts_line(c: dict) -> str:
    failed = f", {c['failed']} failed" if c["failed"] else ""
    return f"{c['tickets']} live tickets answered{failed}, {c['labelled']} of them labelled by agents"


def headline(c: dict) -> str:
    """'agreement with agents v4 71.3% vs v3 68.8% on 80 labelled tickets'."""
    if not c["labelled"]:
        return "no shadowed ticket labelled by agents yet"
    return (f"agreement with agents {c['version']} {_pct(c['candidate']['agreement'])} vs "
            f"{c['production'] or 'production'} {_pct(c['production_stats']['agreement'])} "
            f"on {c['labelled']} labelled tickets")


def shadow_summary(runtime) -> dict | None:
    """What `/tuesday status` and `/tuesday shadow` show: the state and the comparison so far, or None when off."""
    state = shadow_state(runtime)
    if state is None:
        return None
    return {**state, "task": runtime.task.name, "comparison": compare(runtime, state["version"])}


def status_line(summary: dict, task: str = "") -> str:
    """One line of `/tuesday status` (task: the field's name when the deployment has several)."""
    c = summary["comparison"]
    return (f"• shadow{' of ' + task if task else ''}: *{summary['version']}* since {summary['since'][:16].replace('T', ' ')} UTC: "
            f"{counts_line(c)}; {headline(c)} (`/tuesday shadow`)")


def displaced_note(runtime, version: str | None) -> str:
    """A warning when a retrain run's candidate waited in shadow for its result (bot.lifecycle.shadow_gate): it will be kept."""
    if not version:
        return ""
    with runtime.sessions() as session:
        runs = session.scalars(select(RetrainRun).where(RetrainRun.candidate_version == version,
                                                        RetrainRun.status == "passed"))
        waiting = [r.id for r in runs if (json.loads(r.metrics or "{}").get("shadow") or {}).get("status") == "waiting"]
    if not waiting:
        return ""
    return (f"\n:warning: retrain run {waiting[0]} waited for {version}'s shadow result: it is closed as kept "
            "(not promoted) within a minute.")


def started_text(runtime, started: dict) -> str:
    """The reply to `/tuesday shadow vN`."""
    version, previous = started["version"], started["previous"]
    if not started["changed"]:
        return f"{version} is already in shadow. `/tuesday shadow` shows how it compares."
    replaced = f" It replaces {previous}." if previous else ""
    runtime = runtime.for_version(version)
    field = f" of {runtime.task.name}" if len(runtime.tasks.names) > 1 else ""
    return (f"*{version}* now runs in shadow beside{field} production {runtime.production.name() or 'none'}: on every new "
            "ticket, after production's suggestion is posted, it answers too; its answers are stored, never shown."
            f"{replaced} `/tuesday shadow` compares the two once agents label those tickets; `/tuesday shadow off` "
            "ends it." + displaced_note(runtime, previous))


def shadow_text(runtime) -> str:
    """The reply to `/tuesday shadow` (and `tuesday shadow`)."""
    summary = shadow_summary(runtime)
    field = f" for {runtime.task.name}" if len(runtime.tasks.names) > 1 else ""
    if summary is None:
        last = last_change(runtime)
        ended = f" (last ended by {last['by']} at {last['at'][:16].replace('T', ' ')} UTC)" if last else ""
        return (f"No version is in shadow{field}{ended}. An admin starts one with `/tuesday shadow <version>`: it "
                "labels live tickets beside production, stored and never shown.")
    c = summary["comparison"]
    live = runtime.production.name()
    lines = [f"*{summary['version']}* runs in shadow{field} beside production {live or 'none'} since "
             f"{summary['since'][:16].replace('T', ' ')} UTC (by {summary['by']}): {counts_line(c)}."]
    if c["labelled"]:
        lines.append(comparison_table(c))
    else:
        lines.append("The comparison appears once agents have decided some of those tickets.")
    if c["failed"]:
        lines.append(f":warning: the shadow model failed on {c['failed']} ticket(s) (production was not affected); "
                     f"the last error: {c['last_error']}")
    lines.append("`/tuesday shadow off` ends it (admins).")
    return "\n".join(lines)


# -- a candidate in shadow, as the gate, its reports and sign-off see it -------------------------------

def shadow_first(settings, production: str | None) -> bool:
    """Whether a candidate that passes the holdout gate goes to shadow first (there is a production to shadow)."""
    return settings.shadow_min_tickets > 0 and production is not None


def hold_in_shadow(runtime, version: str, *, note: str) -> dict:
    """Put a candidate that passed the gate in shadow; returns the run's metrics["shadow"] while it waits."""
    start_shadow(runtime, version, by=BY, note=note)
    return {"status": WAITING, "min_tickets": runtime.settings.shadow_min_tickets,
            "since": utc_now().isoformat(timespec="seconds")}


def shadow_of(run) -> dict | None:
    """metrics["shadow"] of a run (a RetrainRun or its dict), or None."""
    metrics = run.get("metrics") if isinstance(run, dict) else run.metrics
    if isinstance(metrics, str):
        metrics = json.loads(metrics or "{}")
    return (metrics or {}).get("shadow")


def waiting(run) -> bool:
    return (shadow_of(run) or {}).get("status") == WAITING
