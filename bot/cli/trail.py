"""`tuesday base`, `audit`, `forget`, `release-notes`: the paper trail in a terminal."""

from __future__ import annotations

import json

import click

from bot.runtime import Runtime
from bot.store import audit as audit_log
from bot.trail import bases
from inference.base_models import RESTRICTIONS


def _echo(as_json: bool, data, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the notes as JSON.")
@click.pass_context
def base(ctx: click.Context, as_json: bool) -> None:
    """Base models' license notes: list them, show one, approve or withdraw (training needs an approved note)."""
    if ctx.invoked_subcommand is None:
        notes = bases.notes(ctx.obj.sessions)
        _echo(as_json, [n.to_dict() for n in notes], bases.listing_text(notes))


@base.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def base_show(rt: Runtime, name: str, as_json: bool) -> None:
    """One base's license note in full."""
    note = bases.note(rt.sessions, name.lower())
    if note is None:
        raise click.ClickException(f"no base named '{name}'; `tuesday base` lists them")
    _echo(as_json, note.to_dict(), bases.note_text(note))


def _restriction_options(command):
    for key in reversed(RESTRICTIONS):
        command = click.option(f"--{key.replace('_', '-')}", key, metavar="TEXT",
                               help=f"'allowed', or what the license says about {key.replace('_', ' ')}.")(command)
    return command


@base.command("approve")
@click.argument("name")
@click.option("--by", required=True, help="Who reviewed the license and approves it.")
@click.option("--model", help="The model's name at its source (e.g. an HF repo id).")
@click.option("--source", help="Where the weights came from.")
@click.option("--version", "version_", help="The weights' version or revision.")
@click.option("--obtained", help="The date the weights were obtained (YYYY-MM-DD).")
@click.option("--license", "license_", help="The license's name (SPDX id where there is one).")
@click.option("--notes", help="Anything else a reviewer should know (obligations, links).")
@click.option("--path", "path", type=click.Path(exists=True), help="The base on this host (a GGUF file or a model "
              "folder): every file's sha256 is pinned, and training and serving accept only those bytes.")
@click.option("--pins", "pins_file", type=click.File("r"), help="The pins `tuesday base pins PATH --json` printed on "
              "the host that holds the base (instead of --path).")
@click.option("--sha256", help="A published sha256 (of the file, or of the pins) the content found must match.")
@_restriction_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def base_approve(rt: Runtime, name: str, by: str, model, source, version_, obtained, license_, notes, path, pins_file,
                 sha256, as_json: bool, **restrictions) -> None:
    """Approve NAME's license note (a built-in's proposed note as it stands, or the fields given), bound to
    the sha256 of every file of the base (--path, --pins, the note's own pins, or the installed built-in)."""
    try:
        pins = json.load(pins_file) if pins_file else None
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"--pins is not JSON: {exc}") from None
    note = bases.approve(rt.sessions, name, by=f"cli:{by}", model=model, source=source, version=version_,
                         obtained=obtained, license=license_, notes=notes, sha256=sha256, path=path, pins=pins,
                         restrictions={k: v for k, v in restrictions.items() if v})
    _echo(as_json, note.to_dict(), "approved:\n" + bases.note_text(note))


@base.command("pins")
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the pins as JSON (what `base approve --pins` reads).")
def base_pins(path: str, as_json: bool) -> None:
    """The sha256 of every file of the base at PATH (run it on the host that holds the base)."""
    from pathlib import Path

    from inference.base_models import base_pins as pins_of
    from inference.base_models import content_sha256

    files = pins_of(Path(path))
    _echo(as_json, {"sha256": content_sha256(files), "files": files},
          "\n".join(f"{sha}  {rel}" for rel, sha in files.items()) + f"\ncontent sha256: {content_sha256(files)}")


@base.command("withdraw")
@click.argument("name")
@click.option("--by", required=True, help="Who withdraws the approval.")
@click.option("--reason", default="", help="Why, for the record.")
@click.pass_obj
def base_withdraw(rt: Runtime, name: str, by: str, reason: str) -> None:
    """Withdraw NAME's approval: training refuses it again, and workers stop serving versions built on it."""
    note = bases.withdraw(rt.sessions, name, by=f"cli:{by}", reason=reason)
    click.echo(f"approval of {note.name} withdrawn; training refuses it, and workers stop serving versions built on "
               "it, until it is approved again")


@click.command()
@click.option("--limit", default=50, show_default=True, help="How many entries, newest first.")
@click.option("--action", help="Only this action (or its family: 'base' matches base.approve).")
@click.option("--verify", is_flag=True, help="Walk the hash chain instead: name the first broken row (exit 1), "
                                              "or print the head to note.")
@click.option("--expect", metavar="HASH", help="With --verify: a head hash noted earlier that the chain must still "
                                               "reach (finds rows removed from the end).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def audit(rt: Runtime, limit: int, action: str | None, verify: bool, expect: str | None, as_json: bool) -> None:
    """The audit log: every admin action, who and when (append-only, hash-chained)."""
    if verify:
        result = audit_log.verify(rt.sessions, expect=expect)
        _echo(as_json, result, audit_log.verify_text(result))
        if not result["ok"]:
            raise click.exceptions.Exit(1)
        return
    rows = audit_log.entries(rt.sessions, limit=limit, action=action)
    _echo(as_json, rows, audit_log.audit_text(rows))


@click.command()
@click.argument("ticket")
@click.option("--source", help="The ticket's source (zendesk, generic, slack, an import's --source) when the id is ambiguous.")
@click.option("--by", required=True, help="Who asks (for the audit log).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def forget(rt: Runtime, ticket: str, source: str | None, by: str, as_json: bool) -> None:
    """Remove TICKET's text from the store and from future snapshots; say which versions saw it."""
    from bot.trail.forget import forget as forget_ticket
    from bot.trail.forget import forget_text

    result = forget_ticket(rt, ticket, by=f"cli:{by}", source=source)
    _echo(as_json, result, forget_text(result))


@click.command("release-notes")
@click.argument("version")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the notes (Markdown) to this file too.")
@click.option("--json", "as_json", is_flag=True, help="Print the facts behind the notes as JSON.")
@click.pass_obj
def release_notes(rt: Runtime, version: str, out: str | None, as_json: bool) -> None:
    """VERSION's release notes: data per label and what is new, config and per-label changes, limits, approvals."""
    from bot.trail.release_notes import gather
    from bot.trail.release_notes import release_notes as notes_text

    if as_json:
        click.echo(json.dumps(gather(rt, version), indent=2, default=str))
        return
    text = notes_text(rt, version)
    if out:
        from pathlib import Path

        Path(out).write_text(text, encoding="utf-8")
    click.echo(text)
