"""Alembic's entry point: runs the store's revisions on the connection bot.store.schema hands it."""

from alembic import context

# Every table of the store, on Base.metadata (they all live in bot.store).
import bot.store.alerts  # noqa: F401
import bot.store.examples  # noqa: F401
import bot.store.feedback  # noqa: F401
import bot.store.link_epochs  # noqa: F401
import bot.store.outbox  # noqa: F401
import bot.store.production  # noqa: F401
import bot.store.runs  # noqa: F401
import bot.store.shadow  # noqa: F401
import bot.store.tickets  # noqa: F401
import bot.store.trail  # noqa: F401
from bot.store.base import Base

connection = context.config.attributes["connection"]
# SQLite alters little in place, so batch mode rebuilds a table (copy, drop, rename) instead.
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
