"""Load labelled examples from JSONL or CSV into the store: keep every good row, name every bad one.

A row carries a label per task: a column named after the task (`queue`, `priority`, …), any of
them missing or empty, or `label` for the routing task (the only task of a single-task file).
A row labelled only for priority becomes a priority example only. `reason` explains the routing
task's label; another task's reason, if any, is in `<task>_reason`.
"""

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
from inference.task import Task, TaskSet

MAX_TEXT_CHARS = 20_000


class ImportFileError(TuesdayError):
    """The file cannot be read at all (missing, unknown format)."""


@dataclass
class ImportReport:
    added: int = 0  # examples stored, over every task
    by_task: dict[str, int] = field(default_factory=dict)  # examples stored per task
    duplicates: int = 0
    forgotten: int = 0  # rows whose id was forgotten on request (`tuesday forget`): never stored again
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, message)

    def to_dict(self) -> dict:
        return {"added": self.added, "by_task": dict(self.by_task), "duplicates": self.duplicates, "forgotten": self.forgotten,
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
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise ImportFileError(f"{path}: the CSV header must have a 'text' column and a label column "
                                  "('label', or one named after each task)")
        # DictReader's line_num counts physical lines, so quoted multi-line cells keep true numbers.
        return [(reader.line_num, row, "") for row in reader]
    raise ImportFileError(f"{path}: unknown format {suffix or '(none)'}; use .jsonl or .csv")


def _external_id(row: dict, text: str, label: str) -> str:
    given = str(row.get("id") or "").strip()
    return given or hashlib.sha256(f"{text}\x00{label}".encode()).hexdigest()[:20]


def as_task_set(tasks: Task | TaskSet) -> TaskSet:
    return tasks if isinstance(tasks, TaskSet) else TaskSet((tasks,), tasks.name, tasks.name)


def _labels(row: dict, tasks: TaskSet) -> dict[str, str]:
    """{task: label} the row gives (a task's own column first, `label` for the routing task)."""
    found = {}
    for task in tasks:
        value = row.get(task.name)
        if (value is None or str(value).strip() == "") and task.name == tasks.routing_name:
            value = row.get("label")
        if value is not None and str(value).strip():
            found[task.name] = str(value).strip()
    return found


def _unknown(tasks: TaskSet, name: str, label: str) -> str:
    if len(tasks) == 1:
        return f"unknown label {label!r} (task labels: {', '.join(tasks[name].labels)})"
    return f"unknown {name} label {label!r} ({name} labels: {', '.join(tasks[name].labels)})"


def read_labelled_tasks(path: str | Path, tasks: Task | TaskSet) -> tuple[dict[str, list[dict]], list[tuple[int, str]]]:
    """Valid rows (id, masked text, label, reason) per task, and (line, problem) for the others."""
    tasks = as_task_set(tasks)
    out: dict[str, list[dict]] = {t.name: [] for t in tasks}
    errors = []
    for number, row, problem in _read_rows(Path(path)):
        if row is None:
            errors.append((number, problem))
            continue
        text = str(row.get("text") or "").strip()
        labels = _labels(row, tasks)
        unknown = [_unknown(tasks, name, label) for name, label in labels.items() if label not in tasks[name].labels]
        if not text:
            errors.append((number, "empty text"))
        elif len(text) > MAX_TEXT_CHARS:
            errors.append((number, f"text longer than {MAX_TEXT_CHARS} characters"))
        elif unknown:
            errors.append((number, "; ".join(unknown)))
        elif not labels:
            errors.append((number, "no label" + ("" if len(tasks) == 1 else f" (columns: label, {', '.join(tasks.names)})")))
        else:
            masked = mask_pii(text)
            for name, label in labels.items():
                own = row.get(f"{name}_reason") or (row.get("reason") if name == tasks.routing_name else None)
                reason = str(own or "").strip()
                out[name].append({"id": _external_id(row, text, label), "text": masked, "label": label,
                                  "reason": mask_pii(reason) if reason else None})
    return out, errors


def read_labelled(path: str | Path, task: Task) -> tuple[list[dict], list[tuple[int, str]]]:
    """Valid rows (id, masked text, label, reason) of one task and (line, problem) for the others.

    Rows labelled only for other tasks are skipped (a multi-column file); a row with no label at all is a problem.
    """
    if isinstance(task, TaskSet):
        raise TypeError("read_labelled takes one task; read_labelled_tasks takes a task set")
    rows, errors = read_labelled_tasks(path, task)
    return rows[task.name], errors


def import_file(path: str | Path, tasks: Task | TaskSet, sessions: sessionmaker[Session], *,
                source: str = "import") -> ImportReport:
    """Store every valid row (masked, deduplicated by task + source + id); report the rest by line number."""
    per_task, errors = read_labelled_tasks(path, tasks)
    report = ImportReport(errors=errors)
    with sessions.begin() as session:
        forgotten = set(session.scalars(select(Forgotten.external_id).where(Forgotten.source == source)))
        for name, rows in per_task.items():
            seen = existing_ids(session, source, name)
            for row in rows:
                if row["id"] in forgotten:
                    report.forgotten += 1
                    continue
                if row["id"] in seen:
                    report.duplicates += 1
                    continue
                seen.add(row["id"])
                session.add(Example(task=name, source=source, external_id=row["id"], text=row["text"],
                                    label=row["label"], reason=row["reason"]))
                report.added += 1
                report.by_task[name] = report.by_task.get(name, 0) + 1
    return report
