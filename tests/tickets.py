"""A ticket as the suggest job's first step leaves it: stored at the door, then masked by the worker's stage."""

from bot.store.masking import finish_masking
from bot.store.tickets import Ticket, add_ticket


def stored_ticket(sessions, **fields) -> tuple[Ticket, bool]:
    """add_ticket's (ticket, created), after both masking stages (tests that label or show it without a worker)."""
    ticket, created = add_ticket(sessions, **fields)
    finish_masking(sessions, ticket.id)
    with sessions() as session:
        return session.get(Ticket, ticket.id), created


def finish_all(sessions) -> None:
    """The worker's masking stage on every ticket still at the door's (what the suggest job does first)."""
    from sqlalchemy import select

    from bot.store.tickets import DOOR

    with sessions() as session:
        ids = list(session.scalars(select(Ticket.id).where(Ticket.pii_stage == DOOR)))
    for ticket_id in ids:
        finish_masking(sessions, ticket_id)
