"""The weekly digest: the week's numbers and a chart (PNG) in the triage channel, once per week.

Due from TUESDAY_DIGEST_DAY at TUESDAY_DIGEST_HOUR (UTC) until it is posted; the week is the 7 days
before that moment. It is an `alerts` row of kind "digest" keyed by that day, so of several
workers only one posts it, and a failed upload is retried at the next check. The numbers are
stored with the row: a retry posts the same week.

    check_digest(runtime, slack)   # {"due": "2026-12-07", "posted": True}
"""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, time, timedelta

from sqlalchemy import select

from bot.error_ids import logged
from bot.monitor import measures
from bot.monitor.alerts import DIGEST, KINDS, Finding, fire, post_alert
from bot.monitor.health import gather_week, top_overridden, week_lines
from bot.monitor.rules import pct
from bot.settings import WEEKDAYS
from bot.store.alerts import Alert
from bot.store.base import utc_now

log = logging.getLogger(__name__)


def due_slot(settings, now: datetime) -> datetime | None:
    """The latest digest moment at or before now (None: the digest is off)."""
    if not settings.digest_day:
        return None
    back = (now.weekday() - WEEKDAYS.index(settings.digest_day)) % 7
    slot = datetime.combine(now.date() - timedelta(days=back), time(settings.digest_hour), tzinfo=now.tzinfo)
    return slot if slot <= now else slot - timedelta(days=7)


def gather_digest(runtime, slot: datetime) -> dict:
    """The numbers the digest shows: gather_week of the 7 days before slot, plus its days and labels."""
    since = slot - timedelta(days=7)
    data = gather_week(runtime, since, slot, terms=True)
    data["days"] = measures.timeline(runtime, since, slot, bucket="day")
    version = data["version"]
    data["labels"] = [{"label": r["label"], "reviewed": r["reviewed"], "override_rate": r["override_rate"]}
                      for r in (measures.per_label(runtime, since, slot, version=version) if version else [])
                      if r["reviewed"]]
    data["override_threshold"] = runtime.settings.alert_override_rate
    data["alerts_fired"] = _alerts_between(runtime.sessions, since, slot)
    data["fields"] = [field_week(scoped, since, slot) for scoped in runtime.each_task()[1:]]
    return data


def field_week(runtime, since: datetime, until: datetime) -> dict:
    """Another field's week: its production, its suggestions and reviews, its most overridden labels."""
    version = runtime.production.name()
    o = measures.overview(runtime, since, until)
    labels = measures.per_label(runtime, since, until, version=version) if version else []
    return {"task": runtime.task.name, "version": version, "suggestions": o["suggestions"], "reviewed": o["reviewed"],
            "acceptance_rate": o["acceptance_rate"], "override_rate": o["override_rate"],
            "overridden": top_overridden(labels)}


def field_line(f: dict) -> str:
    """'• *urgency* (v5): 120 suggestions, 80 reviewed: 71 % accepted, override rate 29 %; most overridden: …'."""
    if not f["suggestions"]:
        return f"• *{f['task']}* ({f['version'] or 'no production'}): no suggestions in these 7 days."
    top = "; most overridden: " + ", ".join(f"{r['label']} {pct(r['override_rate'])} of {r['reviewed']}"
                                             for r in f["overridden"]) if f["overridden"] else ""
    return (f"• *{f['task']}* ({f['version']}): {f['suggestions']:,} suggestions, {f['reviewed']:,} reviewed: "
            f"{pct(f['acceptance_rate'])} accepted, override rate {pct(f['override_rate'])}{top}")


def _alerts_between(sessions, since: datetime, until: datetime) -> int:
    from sqlalchemy import func

    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Alert).where(
            Alert.kind.in_(KINDS), Alert.fired_at >= since, Alert.fired_at < until)) or 0)


def digest_text(data: dict) -> str:
    since, until = datetime.fromisoformat(data["since"]), datetime.fromisoformat(data["until"])
    span = f"{since:%a %-d %b} – {until - timedelta(seconds=1):%a %-d %b}"
    lines = [f"*Tuesday's week* ({span}; production {data['version'] or 'none'})", *week_lines(data)]
    lines += [field_line(f) for f in data.get("fields") or []]  # a retry posts a week stored before fields
    lines.append(f"• Alerts this week: {data.get('alerts_fired', 0)} · `/tuesday health` for today's numbers")
    return "\n".join(lines)


def render_chart(data: dict) -> bytes:
    """A PNG of the week: volume and acceptance per day, override rate per label, review time and latency, drift."""
    # matplotlib only where a digest is drawn, and without pyplot: no global figure state, any thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    days = data.get("days") or []
    x = [d["start"][5:] for d in days]
    fig = Figure(figsize=(11, 7), dpi=100)
    FigureCanvasAgg(fig)
    fig.suptitle(f"Tuesday: the week to {data['until'][:10]} (production {data['version'] or 'none'})")
    grid = fig.subplots(2, 2)

    ax = grid[0][0]
    ax.bar(x, [d["suggestions"] for d in days], color="#56B4E9", label="suggestions")
    ax.bar(x, [d["reviewed"] for d in days], color="#0072B2", width=0.5, label="reviewed")
    ax.set_title("Suggestions per day, and acceptance")
    ax.legend(loc="upper left", fontsize=8)
    rate = ax.twinx()
    rate.plot(x, [_pct(d["acceptance_rate"]) for d in days], color="#E69F00", marker="o", label="accepted %")
    rate.set_ylim(0, 100)
    rate.set_ylabel("accepted %")

    ax = grid[0][1]
    labels = sorted(data.get("labels") or [], key=lambda r: r["override_rate"] or 0)
    ax.barh([r["label"] for r in labels], [_pct(r["override_rate"]) for r in labels], color="#D55E00")
    ax.axvline(100 * data.get("override_threshold", 0.3), color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 100)
    ax.set_title("Override rate per label (%), alert line dashed")
    if not labels:
        ax.text(50, 0, "no reviews", ha="center")

    ax = grid[1][0]
    ax.plot(x, [_minutes(d["review_time_p50_s"]) for d in days], color="#009E73", marker="o")
    ax.set_ylabel("review time p50 (min)", color="#009E73")
    ax.set_title("Review time and latency per day")
    slow = ax.twinx()
    slow.plot(x, [d["latency_p95_ms"] for d in days], color="#CC79A7", marker="s")
    slow.set_ylabel("latency p95 (ms)", color="#CC79A7")

    ax = grid[1][1]
    shares = [_pct(d["drift_share"]) for d in days]
    ax.set_ylim(0, 100)
    ax.set_title("Tickets unlike the training data (%)")
    if any(d["drift_share"] is not None for d in days):
        ax.plot(x, shares, color="#0072B2", marker="o")
    else:
        ax.text(0.5, 0.5, "no drift reference for this version", ha="center", transform=ax.transAxes)
        ax.set_xticks([])
    for axis in (grid[0][0], grid[1][0], grid[1][1]):
        axis.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _pct(rate: float | None) -> float:
    return float("nan") if rate is None else 100.0 * rate  # NaN: a gap, never a zero


def _minutes(seconds: float | None) -> float:
    return float("nan") if seconds is None else seconds / 60.0


def digest_sender(slack, channel: str):
    """send(row) for post_alert: the chart uploaded with files_upload_v2, the text as its comment."""

    def send(row: Alert) -> str | None:
        data = json.loads(row.measures)
        answer = slack.files_upload_v2(channel=channel, file=render_chart(data), filename=f"tuesday-week-{row.day}.png",
                                       title=f"Tuesday's week to {row.day}", initial_comment=row.message,
                                       alt_txt="Suggestions, acceptance, override rate per label, review time, "
                                               "latency and drift over the week")
        return (answer.get("file") or {}).get("id")

    return send


def check_digest(runtime, slack, now: datetime | None = None) -> dict | None:
    """Post this week's digest if it is due and not posted yet (by anyone); None when the digest is off."""
    from slack_sdk.errors import SlackClientError

    now = now or utc_now()
    slot = due_slot(runtime.settings, now)
    channel = runtime.settings.triage_channel
    if slot is None or slack is None or not channel:
        return None
    with runtime.sessions() as session:
        row = session.scalar(select(Alert).where(Alert.kind == DIGEST, Alert.key == "", Alert.day == slot.date()))
    result = {"due": slot.date().isoformat(), "posted": False}
    if row is not None and row.posted_at is not None:
        return result | {"posted_before": True}
    if row is None:
        data = gather_digest(runtime, slot)
        if not data["overview"]["suggestions"]:
            return result | {"empty": True}  # a week without suggestions has nothing to show
        won = fire(runtime.sessions, [Finding(DIGEST, "", digest_text(data), data)], now, day=slot.date())
        if not won:
            return result  # another worker fired it a moment ago and posts it
        alert_id, fresh = won[0], True
    else:
        alert_id, fresh = row.id, False
    try:
        result["posted"] = post_alert(runtime.sessions, alert_id, digest_sender(slack, channel), now, fresh=fresh)
    except (SlackClientError, OSError) as exc:
        logged(log, exc, "digest: uploading the week's digest (retried at the next check)")
    return result
