"""`/tuesday conflicts` and `/tuesday data` (managers): the lists whose buttons settle and approve.

The buttons' clicks are in actions.py, the Settle modal's submission in views.py; both check the
clicker's role again, since a click is its own request.
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from bot.trail import curation
from bot.trail.curation_blocks import SHOWN_CONFLICTS, conflicts_message, data_message


def require_manager(client, settings, user_id: str) -> None:
    """NotAllowed unless user_id is a manager or admin; a failed user-group lookup is a CurationError."""
    from bot.listeners.commands import MANAGER, check_role  # commands imports this module for its table

    try:
        check_role(MANAGER, client, settings, user_id)
    except SlackApiError as exc:
        raise curation.CurationError(f"could not check your user groups with Slack "
                                     f"({exc.response.get('error')})") from None


def do_conflicts(runtime, queues, user_id: str, args: str) -> dict:
    """The oldest open conflicts, each with who chose which label and why, and a Settle button."""
    conflicts, total = curation.open_conflicts(runtime.sessions, limit=SHOWN_CONFLICTS)
    return conflicts_message(conflicts, total)


def do_data(runtime, queues, user_id: str, args: str) -> dict:
    """Examples stored since the last data approval, counted, with an Approve button for exactly those."""
    return data_message(curation.pending_data(runtime.sessions), runtime.settings.data_approval)
