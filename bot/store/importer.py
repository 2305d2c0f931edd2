"""Load labelled examples from JSONL or CSV into the store: keep every good row, name every bad one."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.store.examples import Example, existing_ids
from bot.store.trail import Forgotten
from inference.errors import TuesdayError
from inference.pii import mask_pii
from inference.task import Task

MAX_TEXT_CHARS = 20_000


class ImportFileError(TuesdayError):
    """The file cannot be read at all (missing, unknown format)."""


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0
    forgotten: int = 0  # rows whose id was forgotten on request (`tuesday forget`): never stored again
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, message)

    def to_dict(self) -> dict:
        return {"added": self.added, "duplicates": self.duplicates, "forgotten": self.forgotten,
                "errors": [{"line": n, "error": msg} for n, msg in self.errors]}


def _read_rows(path: Path) -> list[tuple[int, dict | None, str]]:
    """(line number, row or None, problem) for every data line of the file."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImportFileError(f"file not found: {path}") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{path} is not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        out = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                out.append((number, None, f"not valid JSON ({exc.msg})"))
                continue
            out.append((number, row, "") if isinstance(row, dict) else (number, None, "not a JSON object"))
        return out
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(raw))
        if not reader.fieldnames or "text" not in reader.fieldnames or "label" not in reader.fieldnames:
            raise ImportFileError(f"{path}: the CSV header must have 'text' and 'label' columns")
        # DictReader's line_num counts physical lines, so quoted multi-line cells keep true numbers.
        return [(reader.line_num, row, "") for row in reader]
    raise ImportFileError(f"{path}: unknown format {suffix or '(none)'}; use .jsonl or .csv")


def _external_id(row: dict, text: str, label: str) -> str:
    given = str(row.get("id") or "").strip()
    return given or hashlib.sha256(f"{text}\x00{label}".encode()).hexdigest()[:20]


def read_labelled(path: str | Path, task: Task) -> tuple[list[dict], list[tuple[int, str]]]:
    """Valid rows (id, masked text, label, reason) and (line, problem) for the others."""
    rows, errors = [], []
    for number, row, problem in _read_rows(Path(path)):
        if row is None:
            errors.append((number, problem))
            continue
        text = str(row.get("text") or "").strip()
        label = str(row.get("label") or "").strip()
        if not text:
            errors.append((number, "empty text"))
        elif len(text) > MAX_TEXT_CHARS:
            errors.append((number, f"text longer than {MAX_TEXT_CHARS} characters"))
        elif label not in task.labels:
            errors.append((number, f"unknown label {label!r} (task labels: {', '.join(task.labels)})"))
        else:
            reason = str(row.get("reason") or "").strip()
            rows.append({"id": _external_id(row, text, label), "text": mask_pii(text), "label": label,
                         "reason": mask_pii(reason) if reason else None})
    return rows, errors


def import_file(path: str | Path, task: Task, sessions: sessionmaker[Session], *, source: str = "import") -> ImportReport:
    """Store every valid row (masked, deduplicated by source + id); report the rest by line number."""
    rows, errors = read_labelled(path, task)
    report = ImportReport(errors=errors)
    with sessions.begin() as session:
        seen = existing_ids(session, source)
        forgotten = set(session.scalars(select(Forgotten.external_id).where(Forgotten.source == source)))
        for row in rows:
            if row["id"] in forgotten:
                report.forgotten += 1
                continue
            if row["id"] in seen:
                report.duplicates += 1
                continue
            seen.add(row["id"])
            session.add(Example(source=source, external_id=row["id"], text=row["text"], label=row["label"],
                                reason=row["reason"]))
            report.added += 1
    return report
