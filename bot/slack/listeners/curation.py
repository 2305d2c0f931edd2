"""`/tuesday conflicts` and `/tuesday data` (managers): the lists whose buttons settle and approve.

The buttons' clicks are in actions.py, the Settle modal's submission in views.py; both check the
clicker's role again, since a click is its own request.
"""

from __future__ import annotations

from bot.slack.curation_blocks import SHOWN_CONFLICTS, conflicts_message, data_message
from bot.trail import curation


def do_conflicts(runtime, queues, user_id: str, args: str) -> dict:
    """The oldest open conflicts, each with who chose which label and why, and a Settle button."""
    conflicts, total = curation.open_conflicts(runtime.sessions, limit=SHOWN_CONFLICTS)
    return conflicts_message(conflicts, total)


def do_data(runtime, queues, user_id: str, args: str) -> dict:
    """Examples stored since the last data approval, counted, with an Approve button for exactly those."""
    return data_message(curation.pending_data(runtime.sessions), runtime.settings.data_approval)
