"""`tuesday dashboard --link`: a signed link to the dashboard of `tuesday serve`, as `/tuesday dashboard` gives."""

from __future__ import annotations

import click

from bot.runtime import Runtime


@click.command()
@click.option("--link", is_flag=True, help="Print a signed link (the default, and so far the only output; kept "
              "for symmetry with `tuesday review --link`).")
@click.option("--page", type=click.Choice(["overview", "labels", "drift", "versions"]), default="overview",
              show_default=True, help="The page the link opens.")
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True, help="The window the page shows.")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="How long the link works (default TUESDAY_DASHBOARD_LINK_HOURS).")
@click.pass_obj
def dashboard(rt: Runtime, link: bool, page: str, days: int, hours: float | None) -> None:
    """A signed, expiring link to the dashboard (needs TUESDAY_PUBLIC_URL and TUESDAY_LINK_SECRET)."""
    from bot.monitor.pages import dashboard_link

    click.echo(dashboard_link(rt, page, days, ttl_hours=hours))
