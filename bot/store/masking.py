"""The worker's masking stage: names and addresses masked before a ticket is used anywhere.

The door (bot.store.tickets.add_ticket) stores a ticket with its text in door_texts, masked by the
patterns alone, and acks. The suggest job calls `finish_masking` first: the full detector
(inference.pii.mask_pii, spaCy's names and the address patterns) runs over that text outside any session,
then one transaction moves it to the ticket, sets its stage to `full` and deletes the door_texts row. Nothing
but this module reads door_texts, and a ticket's own columns are empty until then (Ticket.model_text refuses).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update

from bot.store.tickets import DOOR, FULL, DoorText, Ticket


def finish_masking(sessions, ticket_id: int) -> bool:
    """Run the worker's stage on a ticket still at the door's; returns whether this call finished it.

    Safe to run twice at once or after `tuesday forget` (the move only happens while the ticket is `door`)."""
    from inference.pii import mask_fields

    with sessions() as session:
        door = session.get(DoorText, ticket_id)
        if door is None:
            return False
        subject, text, requester = door.subject or "", door.text, door.requester
    masked = dict(zip(("subject", "text", "requester"), mask_fields(subject, text, requester or "")))
    masked["requester"] = masked["requester"] or None
    with sessions() as session:
        moved = session.execute(update(Ticket).where(Ticket.id == ticket_id, Ticket.pii_stage == DOOR)
                                .values(pii_stage=FULL, **masked))
        if moved.rowcount != 1:  # another worker finished it, or it was forgotten meanwhile
            session.rollback()
            return False
        session.execute(delete(DoorText).where(DoorText.ticket_id == ticket_id))
        session.commit()
    return True


def drop_door_texts(session, ticket_ids: list[int]) -> int:
    """Delete what the door stored for these tickets (`tuesday forget`); the caller commits."""
    if not ticket_ids:
        return 0
    return session.execute(delete(DoorText).where(DoorText.ticket_id.in_(ticket_ids))).rowcount or 0


def awaiting_masking(sessions) -> tuple[int, datetime | None]:
    """(tickets still at the door's stage, when the oldest of them came in): /metrics and `/tuesday status`."""
    with sessions() as session:
        # door_texts holds only the tickets in flight: counting it costs nothing at a million tickets.
        count, oldest = session.execute(select(func.count(DoorText.ticket_id), func.min(Ticket.created_at))
                                        .join(Ticket, Ticket.id == DoorText.ticket_id)).one()
    return int(count or 0), oldest
