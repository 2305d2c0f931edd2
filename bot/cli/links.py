"""`tuesday links`: revoke every signed link of a page kind handed out so far (`revoke`); see the epochs (`status`)."""

from __future__ import annotations

import getpass
import json

import click

from bot.runtime import Runtime


@click.group()
def links() -> None:
    """Signed links to review sheets and the dashboard: revoke them, see their epochs."""


@links.command()
@click.option("--page", type=click.Choice(["review", "dashboard", "all"]), default="all", show_default=True,
              help="Which kind of link to revoke.")
@click.option("--by", default=None, help="Who revokes them, for the audit log [default: the login name].")
@click.option("--json", "as_json", is_flag=True, help="Print the new epochs as JSON.")
@click.pass_obj
def revoke(rt: Runtime, page: str, by: str | None, as_json: bool) -> None:
    """Every link of that kind made so far stops working (410); links made from now on work.

    `tuesday serve` sees the change within TUESDAY_LINK_EPOCH_CACHE_S seconds."""
    from bot.links import PAGES
    from bot.store.link_epochs import bump_epochs

    pages = list(PAGES) if page == "all" else [page]
    epochs = bump_epochs(rt.sessions, pages, by=f"cli:{by or getpass.getuser()}")
    if as_json:
        click.echo(json.dumps({"epochs": epochs, "takes_effect_within_s": rt.settings.link_epoch_cache_s}))
        return
    for name, epoch in epochs.items():
        click.echo(f"{name} links revoked: epoch {epoch}; older links answer 410 within "
                   f"{rt.settings.link_epoch_cache_s:g} s.")


@links.command()
@click.option("--json", "as_json", is_flag=True, help="Print the epochs as JSON.")
@click.pass_obj
def status(rt: Runtime, as_json: bool) -> None:
    """Each page kind's epoch, and who last moved it when."""
    from bot.store.link_epochs import epoch_rows

    rows = epoch_rows(rt.sessions)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['page']}: epoch {row['epoch']}, set by {row['changed_by']} at {row['changed_at']}")
