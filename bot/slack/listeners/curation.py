"""`/tuesday conflicts`, `/tuesday data` and `/tuesday labellers` (managers): the lists whose buttons settle and
approve, and the clicks held from people who are not labellers.

The buttons' clicks are in actions.py, the Settle modal's submission in views.py; both check the
clicker's role again, since a click is its own request.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bot.slack.curation_blocks import SHOWN_CONFLICTS, conflicts_message, data_message
from bot.store.base import utc_now
from bot.trail import curation, labellers

# "<@U123|ann>" as Slack escapes a mention in a slash command, "<@U123>", or a bare id (or `all`).
PERSON = re.compile(r"^(?:<@([A-Z0-9]+)(?:\|[^>]*)?>|([A-Z0-9]+)|(all))$")
SHOWN_PEOPLE = 15


def do_conflicts(runtime, queues, user_id: str, args: str) -> dict:
    """The oldest open conflicts, each with who chose which label and why, and a Settle button."""
    conflicts, total = curation.open_conflicts(runtime.sessions, limit=SHOWN_CONFLICTS)
    return conflicts_message(conflicts, total)


def do_data(runtime, queues, user_id: str, args: str) -> dict:
    """Examples stored since the last data approval, counted, with an Approve button for exactly those."""
    return data_message(curation.pending_data(runtime.sessions), runtime.settings.data_approval)


def who_labels(settings) -> str:
    if settings.everyone_labels:
        return "every member of the triage channel (TUESDAY_LABELLERS=everyone)"
    listed = ", ".join(f"<!subteam^{i}>" if i.startswith("S") else f"<@{i}>" for i in sorted(settings.labeller_ids))
    return (listed + " and " if listed else "") + "Tuesday's managers and admins"


def do_labellers(runtime, queues, user_id: str, args: str) -> str:
    """Who labels, whose clicks are held and each person's last 30 days; `approve|reject <@user>|all` decides held ones."""
    words = args.split()
    if words and words[0].lower() in ("approve", "reject"):
        match = PERSON.match(words[1]) if len(words) == 2 else None
        if match is None:
            return "Usage: `/tuesday labellers approve <@person>` or `/tuesday labellers reject <@person>` (or `all`)."
        person = next(g for g in match.groups() if g)
        approve = words[0].lower() == "approve"
        n = labellers.decide_held(runtime.sessions, person, approve=approve, by=f"slack:{user_id}")
        whose = "everyone's" if person == labellers.ALL else f"<@{person}>'s"
        return (f"{n} of {whose} held click{'s' if n != 1 else ''} " +
                ("approved: they are training data now." if approve else "rejected: kept on record, never trained on."))
    if words:
        return "Usage: `/tuesday labellers`, `/tuesday labellers approve <@person>|all`, `/tuesday labellers reject <@person>|all`."
    lines = [f"*Who teaches Tuesday:* {who_labels(runtime.settings)}."]
    held = labellers.held_people(runtime.sessions)
    if held:
        lines.append("*Held for approval* (shown on tickets, not trained on):")
        lines += [f"• <@{p['user_id']}>: {p['held']} click{'s' if p['held'] != 1 else ''}, "
                  f"{p['first']:%Y-%m-%d} to {p['last']:%Y-%m-%d}" for p in held[:SHOWN_PEOPLE]]
        lines.append("`/tuesday labellers approve <@person>` makes them training data; `reject` keeps them out.")
    else:
        lines.append("No clicks are held.")
    now = utc_now()
    people = labellers.people(runtime.sessions, now - timedelta(days=30), now)
    if people:
        lines.append("*Last 30 days:*")
        lines += [f"• <@{p['user_id']}>: {p['clicks']} clicks, {p['corrections']} changed or rejected"
                  + (f", agrees with others {p['agreement']:.0%} of {p['compared']}" if p["agreement"] is not None else "")
                  for p in people[:SHOWN_PEOPLE]]
    return "\n".join(lines)
