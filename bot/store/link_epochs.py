"""Link epochs: one number per page kind that every signed link carries; bumping it revokes the older links.

`tuesday links revoke [--page review|dashboard|all]` bumps it (bot.cli.links), audited as
`links.revoke`; bot.links signs the current epoch into each new link and `tuesday serve` refuses a
link whose epoch is not the current one. A kind with no row is at epoch 1 (the migration adds the
rows of today's kinds).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.store import audit
from bot.store.base import Base, as_utc, utc_now

FIRST_EPOCH = 1


class LinkEpoch(Base):
    """The current epoch of one page kind's links, and who last changed it."""

    __tablename__ = "link_epochs"

    page: Mapped[str] = mapped_column(String(32), primary_key=True)  # "review", "dashboard"
    epoch: Mapped[int] = mapped_column(Integer, default=FIRST_EPOCH)
    changed_by: Mapped[str] = mapped_column(String(255), default="")
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


def current_epochs(sessions: sessionmaker[Session], pages) -> dict[str, int]:
    """{page kind: its current epoch} for each of pages."""
    with sessions() as session:
        query = select(LinkEpoch.page, LinkEpoch.epoch).where(LinkEpoch.page.in_(list(pages)))
        stored = dict(session.execute(query).all())
    return {page: stored.get(page, FIRST_EPOCH) for page in pages}


def epoch_rows(sessions: sessionmaker[Session]) -> list[dict]:
    """Every page kind's row, for `tuesday links status`."""
    with sessions() as session:
        return [{"page": row.page, "epoch": row.epoch, "changed_by": row.changed_by,
                 "changed_at": as_utc(row.changed_at).isoformat(timespec="seconds")}
                for row in session.scalars(select(LinkEpoch).order_by(LinkEpoch.page))]


def bump_epochs(sessions: sessionmaker[Session], pages, *, by: str) -> dict[str, int]:
    """Move each page kind to its next epoch (every link made before stops working); {page: new epoch}.

    One transaction with its audit entry. The increment happens in SQL, so two admins revoking at
    once both count; a kind without a row gets one."""
    for attempt in range(2):
        with sessions() as session:
            try:
                for page in pages:
                    changed = session.execute(update(LinkEpoch).where(LinkEpoch.page == page).values(
                        epoch=LinkEpoch.epoch + 1, changed_by=str(by)[:255], changed_at=utc_now()))
                    if not changed.rowcount:
                        session.add(LinkEpoch(page=page, epoch=FIRST_EPOCH + 1, changed_by=str(by)[:255]))
                session.flush()
                done = {page: session.scalar(select(LinkEpoch.epoch).where(LinkEpoch.page == page)) for page in pages}
                audit.record(session, by, "links.revoke", ",".join(pages), epochs=done)
                session.commit()
                return done
            except IntegrityError:
                # Another process added the missing row at the same moment: the second try updates it.
                session.rollback()
                if attempt:
                    raise
    raise AssertionError("unreachable")
