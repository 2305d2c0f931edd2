"""What `/tuesday health` and `tuesday health` say: the week's measures and the open alerts.

One gatherer (SQL aggregates over the last 7 days and the 7 before, through bot.monitor.measures),
then pure text builders over the plain dict it returns; the weekly digest reuses the lines.
Nothing here shows ticket text: the drift line counts new terms without naming them (the
dashboard, behind a signed link, lists them with examples).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.monitor import measures
from bot.monitor.alerts import DRIFT, open_alerts
from bot.monitor.rules import duration, millis, pct
from bot.store.base import utc_now

TOP_OVERRIDDEN = 3


def gather_week(runtime, since: datetime, until: datetime, *, terms: bool, compare: bool = True) -> dict:
    """The numbers of [since, until), JSON-safe; compare: and the 7 days before's; terms: keep the new terms' words."""
    before = since - timedelta(days=7)
    version = runtime.production.name()
    labels = measures.per_label(runtime, since, until, version=version) if version else []
    drift = measures.drift(runtime, since, until)
    drift_before = measures.drift(runtime, before, since) if compare and drift.get("share") is not None else {}
    return {
        "since": since.isoformat(timespec="seconds"), "until": until.isoformat(timespec="seconds"),
        "version": version,
        "overview": measures.overview(runtime, since, until),
        "previous": measures.overview(runtime, before, since) if compare else None,
        "overridden": top_overridden(labels),
        "drift": {"share": drift.get("share"), "previous_share": drift_before.get("share"), "n": drift.get("n"),
                  "reason": drift.get("reason"), "new_terms_count": len(drift.get("new_terms") or []),
                  "new_terms": [{"term": t["term"], "count": t["count"]} for t in drift.get("new_terms") or []][:5]
                  if terms else []},
    }


def top_overridden(rows: list[dict], limit: int = TOP_OVERRIDDEN) -> list[dict]:
    """The labels agents overrode most (by rate, reviewed ones only), with their commonest correction."""
    reviewed = [r for r in rows if r.get("reviewed") and r.get("override_rate")]
    reviewed.sort(key=lambda r: (-r["override_rate"], -r["reviewed"], r["label"]))
    return [{"label": r["label"], "override_rate": r["override_rate"], "reviewed": r["reviewed"],
             "top_correction": (r.get("corrections") or [None])[0]} for r in reviewed[:limit]]


def gather_health(runtime, now: datetime | None = None) -> dict:
    """The last 7 days' measures and the open alerts.

    Without the week before's numbers (the digest and the alerts compare weeks): a slash command
    answers within Slack's 3 seconds, and with them this took 2.6-3.8 s on 100,000 tickets in
    PostgreSQL on a busy 2-core machine (without: 0.6-0.8 s; docs/monitoring.md).
    """
    now = now or utc_now()
    data = gather_week(runtime, now - timedelta(days=7), now, terms=False, compare=False)
    data["alerts"] = open_alerts(runtime.sessions, now)
    data["alerts_enabled"] = runtime.settings.alert_check_minutes > 0
    return data


def week_lines(data: dict) -> list[str]:
    """The week's numbers as bullet lines (Slack mrkdwn), compared with the week before where it helps."""
    o, p = data["overview"], data.get("previous")
    if not o["suggestions"]:
        return ["• No suggestions in these 7 days."]

    def before(text: str) -> str:
        return f" (week before {text})" if p else ""

    lines = [f"• {o['suggestions']:,} suggestions for {o['tickets']:,} tickets; {o['reviewed']:,} reviewed: "
             f"{pct(o['acceptance_rate'])} accepted{before(pct(p and p['acceptance_rate']))}, "
             f"override rate {pct(o['override_rate'])}, live precision {pct(o['live_precision'])}"]
    review, latency = o["review_time_s"], o["latency_ms"]
    lines.append(f"• Review time (post to first click) p50 {duration(review['p50'])}, p90 {duration(review['p90'])}"
                 f"{before('p50 ' + duration(p and p['review_time_s']['p50']))} · latency p50 "
                 f"{millis(latency['p50'])}, p95 {millis(latency['p95'])}{before(millis(p and p['latency_ms']['p95']))}")
    cost = o.get("cost") or {}
    if cost.get("total_per_1000") is not None:
        lines.append(f"• Cost {cost['total_per_1000']:.2f} per 1,000 tickets (serving {_money(cost.get('serving_per_1000'))}, "
                     f"training {_money(cost.get('training_per_1000'))}; {cost.get('retrains', 0)} retrain"
                     f"{'s' if cost.get('retrains', 0) != 1 else ''}; priced by TUESDAY_CPU/GPU_HOUR_PRICE)")
    lines.append(f"• Hand-offs: {o['wrong_escalations']} wrong (agents kept the ticket), {o['missed_handoffs']} missed; "
                 f"{o['unsafe_confident']} confident suggestions changed")
    lines.append(drift_line(data["drift"]))
    if data["overridden"]:
        lines.append("• Most overridden: " + "; ".join(
            f"{r['label']} {pct(r['override_rate'])} of {r['reviewed']}"
            + (f" (→ {r['top_correction']['to']} ×{r['top_correction']['count']})" if r.get("top_correction") else "")
            for r in data["overridden"]))
    return lines


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def drift_line(drift: dict) -> str:
    if drift.get("share") is None:
        why = {"no reference": "the live version has no drift reference (it was built before drift.json)",
               "no production version": "no production version"}.get(drift.get("reason"), "no tickets with evidence")
        return f"• Drift: – {why}"
    line = f"• Drift: {pct(drift['share'])} of {drift.get('n') or 0:,} tickets unlike the training data"
    if drift.get("previous_share") is not None:
        line += f" (week before {pct(drift['previous_share'])})"
    if drift.get("new_terms"):
        line += "; new terms: " + ", ".join(f"{t['term']} ×{t['count']}" for t in drift["new_terms"])
    elif drift.get("new_terms_count"):
        line += f"; {drift['new_terms_count']} new terms (the dashboard lists them)"
    return line


def alert_line(alert: dict) -> str:
    """An open alert as health shows it: its message, except that drift's names no ticket words."""
    when = alert["fired_at"][11:16]
    if alert["kind"] == DRIFT:
        m = alert["measures"]
        text = (f"Tickets drifting from what {m.get('version') or 'the live version'} learned: {pct(m.get('share'))} "
                f"unlike the training data (week before {pct(m.get('previous_share'))}) — `/tuesday retrain` on new labels")
    else:
        text = alert["message"]
    return f"• {when} UTC {text}"


def health_text(data: dict) -> str:
    head = f"*Tuesday health*: the last 7 days, production {data['version'] or 'none'}"
    lines = [head, *week_lines(data)]
    if not data.get("alerts_enabled", True):
        lines.append("*Open alerts*: alerts are off (TUESDAY_ALERT_CHECK_MINUTES=0)")
    elif data["alerts"]:
        lines.append(f"*Open alerts* ({len(data['alerts'])}, fired in the last 24 h and still true):")
        lines += [alert_line(a) for a in data["alerts"]]
    else:
        lines.append("*Open alerts*: none")
    return "\n".join(lines)
