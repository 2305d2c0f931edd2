"""`tuesday db ...`: the SQL store's schema revision (Alembic migrations)."""

from __future__ import annotations

import json

import click
from sqlalchemy import create_engine

from bot.store import schema


def _store_url(runtime) -> str:
    runtime.settings.data_dir.mkdir(parents=True, exist_ok=True)  # where the default SQLite store lives
    return runtime.settings.store_url


def _emit(as_json: bool, data: dict, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


@click.group()
def db() -> None:
    """The store's schema: which revision it is at, and upgrading it."""


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print the revisions as JSON.")
@click.pass_obj
def upgrade(runtime, as_json: bool) -> None:
    """Migrate the store to this release's schema (run once before a new release starts).

    Model versions of the single-disk release (data_dir/models) are moved into the artifact store
    and their production pointer into SQL, once.
    """
    from bot.store.legacy_models import adopt_legacy_models

    before, after = schema.upgrade(_store_url(runtime))
    adopted = adopt_legacy_models(runtime)
    text = f"schema at {after} (was {before or 'none'})"
    if adopted:
        text += "\nmodel versions of the single-disk release stored in the artifact store: " + ", ".join(
            old if old == new else f"{old} as {new}" for old, new in adopted.items())
    _emit(as_json, {"from": before, "to": after, "adopted_versions": adopted}, text)


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print the revisions as JSON.")
@click.pass_obj
def current(runtime, as_json: bool) -> None:
    """Show the store's schema revision and the one this release expects."""
    engine = create_engine(_store_url(runtime), hide_parameters=True)
    try:
        now, head = schema.current_revision(engine), schema.head_revision()
    finally:
        engine.dispose()
    _emit(as_json, {"current": now, "head": head},
          f"current {now or 'none'}, head {head}" + ("" if now == head else " (run `tuesday db upgrade`)"))
