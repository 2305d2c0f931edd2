"""Alembic's entry point: runs the store's revisions on the connection bot.store.schema hands it."""

from alembic import context

import bot.control  # noqa: F401  (control_flags and retrain_runs join Base.metadata)
import bot.helpdesk.outbox  # noqa: F401  (writeback_outbox joins Base.metadata)
import bot.monitor.alerts  # noqa: F401  (alerts joins Base.metadata)
import bot.production  # noqa: F401  (production_pointer and model_events join Base.metadata)
import bot.shadow  # noqa: F401  (shadow_suggestions joins Base.metadata)
import bot.trail.tables  # noqa: F401  (the paper trail's tables join Base.metadata)
from bot.store import Base

connection = context.config.attributes["connection"]
# SQLite alters little in place, so batch mode rebuilds a table (copy, drop, rename) instead.
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
