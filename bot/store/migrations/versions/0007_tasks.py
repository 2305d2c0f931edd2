"""Several tasks per deployment: every labelled, suggested, clicked, trained or switched row names its task.

Revision ID: 0007
Revises: 0006
Create Date: 2027-02-03

A store of the last release holds one task. Its rows are given the name of this deployment's
routing task (the task file's only task, for a single-task file), so its versions, history,
examples and clicks carry on as that task's. The production pointer's slot, "production"
before, becomes that task's name: one pointer per task. The active-run marker, "retrain"
before, becomes the task's name too: one active run per task.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("examples", "suggestions", "feedback", "retrain_runs", "model_events", "writeback_outbox")


def _routing_task() -> str:
    """The routing task of the task file this process is configured with (TUESDAY_TASK_FILE)."""
    from bot.settings import Settings
    from inference.task import demo_task_path, load_tasks

    return load_tasks(Settings().task_file or demo_task_path()).routing_name


def upgrade() -> None:
    name = _routing_task()
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        # NOT NULL with the routing task as default fills every existing row in one statement, and
        # needs no table rebuild (SQLite rebuilds would trip the feedback trigger on suggestions).
        op.add_column(table, sa.Column("task", sa.String(length=64), nullable=False, server_default=name))
        if postgresql:  # new rows always name their task; SQLite cannot drop a default in place
            op.alter_column(table, "task", server_default=None)
    # A store of the very first release has no unique constraint on examples at all.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_unique_constraints("examples")}
    with op.batch_alter_table("examples") as batch:
        if "uq_example_source_id" in present:
            batch.drop_constraint("uq_example_source_id", type_="unique")
        batch.create_unique_constraint("uq_example_task_source_id", ["task", "source", "external_id"])
    op.create_index("ix_suggestions_ticket_task", "suggestions", ["ticket_id", "task"])
    with op.batch_alter_table("production_pointer") as batch:
        batch.alter_column("slot", existing_type=sa.String(length=32), type_=sa.String(length=64))
    op.execute(sa.text("UPDATE production_pointer SET slot = :name WHERE slot = 'production'").bindparams(name=name))
    with op.batch_alter_table("retrain_runs") as batch:
        batch.alter_column("active", existing_type=sa.String(length=16), type_=sa.String(length=64))
    op.execute(sa.text("UPDATE retrain_runs SET active = :name WHERE active = 'retrain'").bindparams(name=name))


def downgrade() -> None:
    """Back to one task; refused while rows of any other task exist (nothing is dropped silently)."""
    name = _routing_task()
    connection = op.get_bind()
    for table in TABLES:
        others = connection.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE task != :name"),  # noqa: S608
                                    {"name": name}).scalar()
        if others:
            raise RuntimeError(f"{table} holds {others} rows of tasks other than {name}: "
                               "a store with several tasks cannot go back to a release with one")
    op.execute(sa.text("UPDATE retrain_runs SET active = 'retrain' WHERE active = :name").bindparams(name=name))
    op.execute(sa.text("UPDATE production_pointer SET slot = 'production' WHERE slot = :name").bindparams(name=name))
    op.drop_index("ix_suggestions_ticket_task", table_name="suggestions")
    with op.batch_alter_table("examples") as batch:
        batch.drop_constraint("uq_example_task_source_id", type_="unique")
        batch.create_unique_constraint("uq_example_source_id", ["source", "external_id"])
    for table in TABLES:
        if table == "examples" or op.get_bind().dialect.name != "sqlite":
            with op.batch_alter_table(table) as batch:
                batch.drop_column("task")
        else:  # in place (SQLite 3.35+): a rebuild of suggestions would trip the feedback trigger
            op.execute(f"ALTER TABLE {table} DROP COLUMN task")
