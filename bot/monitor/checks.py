"""The upkeep's monitoring chore: the alert rules and the weekly digest, checked and posted."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.error_ids import logged
from bot.monitor.alerts import DIGEST_ONLY_MINUTES, Finding, fire, post_alert, resolve, slack_sender, unposted
from bot.monitor.digest import check_digest
from bot.monitor.rules import evaluate
from bot.store.base import utc_now

log = logging.getLogger(__name__)


def check_alerts(runtime, slack, now: datetime | None = None, findings: list[Finding] | None = None) -> dict:
    """Evaluate the rules, fire what holds (once a day per kind and key), post it and earlier unposted ones."""
    from slack_sdk.errors import SlackClientError

    now = now or utc_now()
    findings = evaluate(runtime, now) if findings is None else findings
    fired = fire(runtime.sessions, findings, now)
    resolved = resolve(runtime.sessions, findings, now)
    posted = 0
    channel = runtime.settings.triage_channel
    if slack is not None and channel:
        send = slack_sender(slack, channel)
        retry = [i for i in unposted(runtime.sessions, now) if i not in fired]
        for alert_id, fresh in [*((i, True) for i in fired), *((i, False) for i in retry)]:
            try:
                posted += post_alert(runtime.sessions, alert_id, send, now, fresh=fresh)
            except (SlackClientError, OSError) as exc:
                # Left unposted and unclaimed: the next check posts it.
                logged(log, exc, "alerts: posting an alert", alert=alert_id)
    return {"found": len(findings), "fired": len(fired), "posted": posted, "resolved": resolved}


CHECK_KEY = "tuesday:monitor:checked"  # Redis: set for an interval by the worker that checks


def check_monitoring(runtime, queues, slack, now: datetime | None = None) -> dict | None:
    """The upkeep's chore: alerts and the digest, checked by one worker per TUESDAY_ALERT_CHECK_MINUTES.

    Redis only spares the other workers the queries; the once-a-day rule is the store's unique row.
    """
    from inference.errors import TuesdayError

    settings = runtime.settings
    interval_s = int(60 * (settings.alert_check_minutes or DIGEST_ONLY_MINUTES))
    if not queues.connection.set(CHECK_KEY, "1", nx=True, ex=max(1, interval_s)):
        return None
    done = {}
    try:
        done["alerts"] = check_alerts(runtime, slack, now) if settings.alert_check_minutes > 0 else None
        done["digest"] = check_digest(runtime, slack, now)
    except TuesdayError as exc:
        # e.g. the live version's drift reference cannot be read from the artifact store right now
        log.warning("monitoring: %s (checked again in %d s)", exc, interval_s)
    return done
