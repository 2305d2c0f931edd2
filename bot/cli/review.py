"""`tuesday review`, `promote`, `card`: a candidate's review sheet, its sign-off, and its model card."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from bot.runtime import Runtime


@click.command()
@click.argument("version")
@click.option("--csv", "csv_file", type=click.Path(path_type=Path), help="Write every holdout ticket as CSV here.")
@click.option("--html", "html_file", type=click.Path(path_type=Path), help="Write the sheet as one HTML page here.")
@click.option("--link", is_flag=True, help="Print a signed link to the sheet on `tuesday serve` "
              "(needs TUESDAY_PUBLIC_URL and TUESDAY_LINK_SECRET).")
@click.option("--json", "as_json", is_flag=True, help="Print the judged sheet as JSON.")
@click.pass_obj
def review(rt: Runtime, version: str, csv_file: Path | None, html_file: Path | None, link: bool, as_json: bool) -> None:
    """VERSION's review sheet: each holdout ticket, expected label, both models' answers, failures first."""
    from bot.links import Links, review_path
    from bot.trail.review import load_review, review_csv, review_html, review_text

    sheet = load_review(rt.registry, version)
    if csv_file:
        csv_file.write_text(review_csv(sheet), encoding="utf-8", newline="")
    if html_file:
        html_file.write_text(review_html(sheet), encoding="utf-8")
    if link:
        links = Links.for_runtime(rt)
        click.echo(links.url(review_path(version)))
        click.echo(links.url(review_path(version, "csv")))
        return
    if as_json:
        click.echo(json.dumps(sheet, indent=2, ensure_ascii=False))
    elif not (csv_file or html_file):
        click.echo(review_text(sheet))
    else:
        click.echo("wrote " + ", ".join(str(f) for f in (csv_file, html_file) if f))


@click.command()
@click.argument("version")
@click.option("--by", help="Who signs off (default: your login name).")
@click.pass_obj
def promote(rt: Runtime, version: str, by: str | None) -> None:
    """Sign off VERSION, which passed the gate and waits (TUESDAY_PROMOTION_SIGNOFF), and put it in production."""
    from bot.lifecycle.signoff import approve, waiting_run
    from bot.queues import Queues

    run = waiting_run(rt.sessions, version)
    # Tickets that waited for a first model are queued once it is live, so this needs the queues then.
    queues = Queues.from_settings(rt.settings) if run.production_before is None else None
    try:
        done = approve(rt, run.id, by=f"cli:{by or getpass.getuser()}", queues=queues)
    finally:
        if queues is not None:
            queues.close()
    click.echo(f"{version} is production now (was {done['production_before'] or 'none'}); "
               f"signed off by {done['signed_off_by']} at {done['signed_off_at']}")


@click.command()
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Print the card, its sign-off and review summary as JSON.")
@click.pass_obj
def card(rt: Runtime, version: str, as_json: bool) -> None:
    """VERSION's model card (MODEL_CARD.md) with who signed off its promotion and its review sheet's summary."""
    from bot.lifecycle.signoff import signoff_line, signoff_of
    from bot.trail.review import NoReview, load_review, summary_line

    info = rt.registry.fetch(version, ["MODEL_CARD.md"])
    text = (info.path / "MODEL_CARD.md").read_text(encoding="utf-8")
    note = signoff_of(rt, version)
    try:
        summary = summary_line(load_review(rt.registry, version))
    except NoReview:
        summary = None
    if as_json:
        click.echo(json.dumps({"version": version, "card": text, "signoff": note, "review": summary}, indent=2))
        return
    click.echo(text.rstrip("\n") + "\n\n## Sign-off\n\n" + signoff_line(note)
               + (f"\n\n## Review sheet\n\n{summary} (`tuesday review {version}`)" if summary else ""))
