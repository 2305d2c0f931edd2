"""The retrain report: its text, its "Approve promotion" button, and posting it in the triage channel."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.lifecycle.shadow import comparison_table, headline, waiting
from bot.links import Links, review_path
from bot.runtime import Runtime
from bot.store.runs import PASSED, set_run_error
from inference.calibration import promise_lines

log = logging.getLogger(__name__)

APPROVE = "tuesday_approve_promotion"  # action_id of the report's button
HEADLINE = ("n", "accuracy", "macro_f1", "handoff_recall", "escalation_recall")  # what a run keeps of metrics

METRICS = (("macro-F1", "macro_f1"), ("accuracy", "accuracy"), ("hand-off recall", "handoff_recall"))
TRIGGER_WORDS = {"command": "/tuesday retrain", "threshold": "enough new labels", "schedule": "the schedule",
                 "cli": "`tuesday retrain`", "train": "`tuesday train`"}


def headline_metrics(metrics: dict | None) -> dict | None:
    """The holdout numbers a run records of a version's metrics."""
    return None if metrics is None else {k: metrics.get(k) for k in HEADLINE}


def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def metrics_line(metrics: dict | None) -> str:
    """'macro-F1 50.3% · accuracy 61.0% · hand-off recall 80.0% (n=120)'."""
    if not metrics:
        return "no holdout metrics"
    parts = [f"{title} {pct(metrics.get(key))}" for title, key in METRICS]
    return " · ".join(parts) + (f" (n={metrics['n']})" if metrics.get("n") is not None else "")


def who(name: str | None) -> str:
    """A Slack user id (bare or as the audit log writes it, 'slack:U123') as a mention, anything else as given."""
    if name and name.startswith("slack:"):
        name = name[len("slack:"):]
    if name and name[:1] in "UW" and name[1:].isalnum() and name.upper() == name:
        return f"<@{name}>"
    return name or "someone"


def report_text(run: dict, review: dict | None = None) -> str:
    """The retrain report posted in the triage channel: old vs new on the same holdout, and the verdict.

    review: signed links to the candidate's review sheet ({"html": url, "csv": url}), when links are on."""
    task = f" of *{run['task']}*" if run.get("task") else ""
    head = f"*Retrain run {run['id']}*{task} (requested by {who(run['requested_by'])} via " \
           f"{TRIGGER_WORDS.get(run['trigger'], run['trigger'])})"
    if run["status"] in ("failed", "cancelled"):
        return (f"{head} *{run['status']}*: {run['error'] or run['why']}\n"
                f"Production is unchanged ({run['production_before'] or 'none'}).")
    new, old = run["metrics"].get("candidate") or {}, run["metrics"].get("production")
    before = run["production_before"]
    shadow = run["metrics"].get("shadow") or {}
    in_shadow = run["status"] == "passed" and shadow.get("status") == "waiting"
    verdict = (f"*{run['candidate_version']} promoted to production*" if run["status"] == "promoted"
               else f"*{run['candidate_version']} passed the gate and runs in shadow beside {before}*; {before} stays "
                    f"in production until agents have labelled {shadow['min_tickets']} of the live tickets it "
                    "answers and it agrees with them at least as often as production" if in_shadow
               else f"*{run['candidate_version']} passed the gate and awaits a manager's sign-off*; "
                    f"{before or 'no model'} stays in production until then" if run["status"] == "passed"
               else f"*{run['candidate_version']} kept as candidate*; {before} stays in production")
    lines = [head, f"{verdict}: {run['why']}"]
    if run.get("signed_off_by"):
        lines.append(f"Promotion signed off by {who(run['signed_off_by'])} at "
                     f"{run['signed_off_at'][:16].replace('T', ' ')} UTC.")
    elif run["status"] == "passed" and not in_shadow:
        lines.append(f"A manager approves with the button below (or `tuesday promote {run['candidate_version']} "
                     "--by NAME`) after reading the review sheet.")
    if shadow.get("comparison"):
        lines.append(f"In shadow on live tickets from {shadow['since'][:16].replace('T', ' ')} UTC: "
                     f"{headline(shadow['comparison'])}.\n{comparison_table(shadow['comparison'])}")
    if review:
        lines.append(f"Review sheet (every holdout ticket, failures first): <{review['html']}|open> "
                     f"· <{review['csv']}|CSV>")
    families = {name: m for name, m in (run["metrics"].get("families") or {}).items() if m}
    if len(families) > 1:
        scores = ", ".join(f"{name} macro-F1 {pct(m.get('macro_f1')).strip()}" for name, m in families.items())
        lines.append(f"Families on the same holdout: {scores}; serving *{run['metrics'].get('family')}* "
                     f"({run['metrics'].get('choice')}).")
    changes = run["metrics"].get("label_changes")
    if changes:
        parts = [f"added {', '.join(changes['added'])}" if changes.get("added") else "",
                 f"removed {', '.join(changes['removed'])}" if changes.get("removed") else ""]
        lines.append(f"The task's labels changed since {before}: {'; '.join(p for p in parts if p)}. {before} was "
                     "scored with its own labels; its answers no longer in the task count as wrong.")
    cal = run["metrics"].get("calibration") or {}
    if cal:
        lines += [f"{line}." for line in promise_lines(cal)]
        lines.append(f"On the holdout it suggests a label on {100 * cal['coverage']:.0f}% of tickets, "
                     f"{100 * cal['wrong_when_shown']:.1f}% of those wrong; calibration error {cal['ece_before']:.3f} → "
                     f"{cal['ece_after']:.3f}.")
    cols = [(f"{before} (before)", old)] if before and old else []
    cols.append((f"{run['candidate_version']} (new)", new))
    width = max(16, *(len(name) + 2 for name, _ in cols))
    table = ["holdout".ljust(18) + "".join(name.rjust(width) for name, _ in cols)]
    for title, key in METRICS:
        table.append(title.ljust(18) + "".join(pct(m.get(key)).rjust(width) for _, m in cols))
    table.append(f"rows: {new.get('n', '?')}" + ("" if old else " (no production model to compare with)"))
    lines.append("```\n" + "\n".join(table) + "\n```")
    return "\n".join(lines)


def report_message(runtime, run: dict, *, update: bool = False) -> dict:
    """The retrain report as chat.postMessage / chat.update arguments: text, and the button while it waits.

    update: for chat.update, which keeps a message's old blocks unless it is sent new ones.
    """
    links = Links.for_runtime(runtime)
    version = run.get("candidate_version")
    review = ({"html": links.url(review_path(version)), "csv": links.url(review_path(version, "csv"))}
              if version and links.can_link else None)
    text = report_text(run, review=review)
    if run["status"] != PASSED or waiting(run):  # no button while the candidate is still in shadow
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]
                if update else None}
    button = {"type": "button", "action_id": APPROVE, "style": "primary", "value": str(run["id"]),
              "text": {"type": "plain_text", "text": "Approve promotion"},
              "confirm": {"title": {"type": "plain_text", "text": "Approve promotion?"},
                          "text": {"type": "mrkdwn", "text": f"{version} goes into production for every ticket."},
                          "confirm": {"type": "plain_text", "text": "Approve"},
                          "deny": {"type": "plain_text", "text": "Not yet"}}}
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
                                     {"type": "actions", "block_id": f"tuesday_signoff_{run['id']}",
                                      "elements": [button]}]}


def post_report(runtime: Runtime, slack: WebClient | None, run) -> None:
    """Post the run's report; a Slack failure is written on the run rather than undoing its result."""
    if slack is None:
        return
    try:
        # The report links the review sheet; a candidate waiting for sign-off gets the "Approve promotion" button.
        slack.chat_postMessage(channel=runtime.settings.triage_channel, **report_message(runtime, run.to_dict()),
                               unfurl_links=False, unfurl_media=False)
    except SlackApiError as exc:
        log.warning("retrain run %s: report not posted: %s", run.id, exc.response.get("error"))
        set_run_error(runtime.sessions, run.id, f"report not posted to Slack: {exc.response.get('error')}")
