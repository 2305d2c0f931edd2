"""Who may do what in Slack: admins and managers (users or user groups), checked per request."""

from __future__ import annotations

import logging
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.lifecycle.runs import ControlError
from bot.trail.curation import CurationError

log = logging.getLogger(__name__)

MANAGER, ADMIN, ANYONE = "manager", "admin", "anyone"
# A user-group lookup runs before a slash command answers, inside Slack's 3 s: it gets 1 s, not retried.
LOOKUP_TIMEOUT_S = 1.0


class NotAllowed(ControlError):
    """The user lacks the role a subcommand needs."""


class LookupTimedOut(ControlError):
    """Slack did not answer a user-group lookup within LOOKUP_TIMEOUT_S."""


def group_members(client, group: str) -> list[str]:
    """The members of a Slack user group, asked with the bot's token but a short timeout and no retry."""
    quick = WebClient(token=client.token, base_url=client.base_url, timeout=LOOKUP_TIMEOUT_S, retry_handlers=[])
    try:
        return quick.usergroups_users_list(usergroup=group).get("users", [])
    except OSError as exc:  # a socket timeout, a refused connection (urllib's URLError is one)
        raise LookupTimedOut(f"could not check your user groups with Slack (no answer within "
                             f"{LOOKUP_TIMEOUT_S:g} s: {type(exc).__name__}); try again") from None


def is_admin(settings, user_id: str) -> bool:
    return user_id in settings.admin_ids


def is_manager(client, settings, user_id: str) -> bool:
    """A listed manager or admin, or a member of a listed user group (asked of Slack, S... ids only)."""
    if user_id in settings.manager_ids or is_admin(settings, user_id):
        return True
    for group in sorted(g for g in settings.manager_ids if g.startswith("S")):
        if user_id in group_members(client, group):
            return True
    return False


class Labellers:
    """Who teaches the model (TUESDAY_LABELLERS, managers, admins), asked per click.

    A user group's members are kept GROUP_TTL_S, so clicks do not each wait on Slack; a lookup that
    fails or times out counts the clicker as no labeller: the click is held, not lost and not trusted.
    """

    GROUP_TTL_S = 300.0

    def __init__(self, settings, clock=time.monotonic):
        self.settings, self.clock = settings, clock
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    def trusts(self, client, user_id: str) -> bool:
        settings = self.settings
        if settings.everyone_labels or is_admin(settings, user_id):
            return True
        listed = settings.labeller_ids | settings.manager_ids
        if user_id in listed:
            return True
        return any(user_id in self._members(client, group) for group in sorted(g for g in listed if g.startswith("S")))

    def _members(self, client, group: str) -> frozenset[str]:
        kept = self._groups.get(group)
        if kept is not None and self.clock() - kept[0] < self.GROUP_TTL_S:
            return kept[1]
        try:
            members = frozenset(group_members(client, group))
        except (LookupTimedOut, SlackApiError) as exc:
            log.warning("labellers: user group %s could not be read (%s); the click is held", group, type(exc).__name__)
            return frozenset()
        self._groups[group] = (self.clock(), members)
        return members


def check_role(role: str, client, settings, user_id: str) -> None:
    if role == ADMIN and not is_admin(settings, user_id):
        raise NotAllowed("only Tuesday's admins (TUESDAY_ADMINS) can do that")
    if role == MANAGER and not is_manager(client, settings, user_id):
        raise NotAllowed("only Tuesday's managers (TUESDAY_MANAGERS, users or user groups) can do that")


def require_manager(client, settings, user_id: str) -> None:
    """NotAllowed unless user_id is a manager or admin; a failed user-group lookup is a CurationError."""
    try:
        check_role(MANAGER, client, settings, user_id)
    except SlackApiError as exc:
        raise CurationError(f"could not check your user groups with Slack ({exc.response.get('error')})") from None
