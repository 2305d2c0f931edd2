"""Alerts in the triage channel: rules over the week's measures, each posted at most once a day.

A rule that holds becomes a `Finding` (kind, key, message naming the repair target, the numbers
behind it). `fire` stores it as a row of `alerts` under a unique (kind, key, day): of several
workers checking at once only one insert wins, and only the winner posts. The row is claimed
before the post and marked posted after it, so a post that fails is retried at the next check,
not lost, and never posted twice by two workers.

    check_alerts(runtime, slack)   # {"found": 2, "fired": 1, "posted": 1, "resolved": 0}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.store.alerts import Alert
from bot.store.base import utc_now

log = logging.getLogger(__name__)

OVERRIDE, DRIFT, REVIEW_TIME, LATENCY, PROMISE_BROKEN, FAILED_TICKETS, LABEL_FLOOD, DIGEST = (
    "override", "drift", "review_time", "latency", "promise_broken", "failed_tickets", "label_flood", "digest")

# promise_broken replaced wrong_escalation (a point estimate above max_wrong): rows of that kind are history only.
KINDS = (OVERRIDE, DRIFT, REVIEW_TIME, LATENCY, PROMISE_BROKEN, FAILED_TICKETS, LABEL_FLOOD)

OPEN_FOR = timedelta(hours=24)  # an unresolved alert is "open" this long after it fired

CLAIM_FOR = timedelta(minutes=5)  # a worker that claimed a post and died frees it after this

RETRY_FOR = timedelta(hours=24)  # an unposted row older than this is stale: tomorrow's check fires anew

DIGEST_ONLY_MINUTES = 10  # how often the digest is checked for when alerts are off


@dataclass(frozen=True)
class Finding:
    """A rule that holds now: what to post, and the numbers behind it."""

    kind: str
    key: str
    message: str
    measures: dict = field(default_factory=dict)


def fire(sessions, findings: list[Finding], now: datetime | None = None, *, day: date | None = None) -> list[int]:
    """Store each finding unless the day's row of its kind and key exists (day: now's UTC date); returns the ids
    this call inserted, claimed for posting by the caller."""
    now = now or utc_now()
    won = []
    for finding in findings:
        row = Alert(kind=finding.kind, key=finding.key[:128], day=day or now.date(), fired_at=now, message=finding.message,
                    measures=json.dumps(finding.measures, default=str, sort_keys=True), claimed_at=now)
        with sessions() as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # another worker (or an earlier check today) fired it
                continue
            won.append(row.id)
    return won


def _claim(sessions, alert_id: int, now: datetime, *, fresh: bool) -> bool:
    """Take the right to post an unposted row: just inserted by us (fresh), or unclaimed / claimed long ago."""
    query = update(Alert).where(Alert.id == alert_id, Alert.posted_at.is_(None))
    if not fresh:
        query = query.where(or_(Alert.claimed_at.is_(None), Alert.claimed_at < now - CLAIM_FOR))
    with sessions() as session:
        taken = session.execute(query.values(claimed_at=now)).rowcount == 1
        session.commit()
    return taken


def post_alert(sessions, alert_id: int, send, now: datetime | None = None, *, fresh: bool = False) -> bool:
    """Post one row with send(row) -> Slack ts if this worker can claim it; True when it was posted.

    A send that raises frees the claim (the next check retries) and the error goes up to the caller.
    """
    now = now or utc_now()
    if not _claim(sessions, alert_id, now, fresh=fresh):
        return False
    with sessions() as session:
        row = session.get(Alert, alert_id)
    try:
        ts = send(row)
    except BaseException:
        with sessions() as session:
            session.execute(update(Alert).where(Alert.id == alert_id).values(claimed_at=None))
            session.commit()
        raise
    with sessions() as session:
        session.execute(update(Alert).where(Alert.id == alert_id).values(posted_at=utc_now(), slack_ts=ts))
        session.commit()
    return True


def unposted(sessions, now: datetime | None = None, kinds=KINDS) -> list[int]:
    """Rows fired in the last day that no post has reached the channel for yet, oldest first."""
    now = now or utc_now()
    with sessions() as session:
        return list(session.scalars(select(Alert.id).where(Alert.posted_at.is_(None), Alert.kind.in_(kinds),
                                                           Alert.fired_at >= now - RETRY_FOR).order_by(Alert.id)))


def resolve(sessions, findings: list[Finding], now: datetime | None = None) -> int:
    """Mark open alerts whose rule no longer holds as resolved; returns how many."""
    now = now or utc_now()
    holding = {(f.kind, f.key) for f in findings}
    with sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.kind.in_(KINDS), Alert.resolved_at.is_(None),
                                                   Alert.fired_at >= now - OPEN_FOR)).all()
        gone = [r for r in rows if (r.kind, r.key) not in holding]
        for row in gone:
            row.resolved_at = now
        session.commit()
    return len(gone)


def open_alerts(sessions, now: datetime | None = None) -> list[dict]:
    """Alerts fired in the last 24 hours whose rule still held at the last check, newest first."""
    now = now or utc_now()
    with sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.kind.in_(KINDS), Alert.resolved_at.is_(None),
                                                   Alert.fired_at >= now - OPEN_FOR).order_by(Alert.id.desc()))
        return [row.to_dict() for row in rows]


def slack_sender(slack, channel: str):
    """send(row) for post_alert: the row's message in the triage channel, as chat.postMessage."""

    def send(row: Alert) -> str | None:
        answer = slack.chat_postMessage(channel=channel, text=f":rotating_light: {row.message}",
                                        unfurl_links=False, unfurl_media=False)
        return answer.get("ts")

    return send
