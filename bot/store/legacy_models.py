"""Model versions of the single-disk release, moved into the artifact store and the SQL pointer.

That release kept versions as folders `data_dir/models/vN/`, the production pointer in
`models/PRODUCTION` and its history in `models/history.jsonl`. `tuesday db upgrade` adopts them
once: each version is stored with its checksums (in order, so v1 stays v1 unless a folder was
missing), and the history is written to SQL with its original who, when and why.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

from bot.store.production import ModelEvent, ProductionPointer
from inference.registry import VERSION_RE


def legacy_versions(root: Path) -> list[Path]:
    """The committed version folders of a single-disk models folder, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if VERSION_RE.match(p.name) and (p / "version.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[1:]))


def adopt_legacy_models(runtime) -> dict[str, str]:
    """Store the old folder's versions and pointer once (nothing when the store has versions); returns {old: new}."""
    root = runtime.settings.data_dir / "models"
    folders = legacy_versions(root)
    if not folders or runtime.registry.names():
        return {}
    names = {}
    for folder in folders:
        staging = runtime.registry.stage()
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        manifest = json.loads((folder / "version.json").read_text(encoding="utf-8"))
        names[folder.name] = runtime.registry.commit(staging, manifest).name
    _adopt_pointer(runtime.sessions, root, names, runtime.task.name)
    return names


def _adopt_pointer(sessions, root: Path, names: dict[str, str], task: str) -> None:
    history = root / "history.jsonl"
    events = [json.loads(line) for line in history.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if history.is_file() else []
    pointer = root / "PRODUCTION"
    live = names.get(pointer.read_text(encoding="utf-8").strip()) if pointer.is_file() else None
    with sessions() as session:
        if session.get(ProductionPointer, task) is not None:
            return  # this store already has a production version: it wins over the old folder's
        last = None
        for event in events:
            if event.get("version") not in names:
                continue
            last = ModelEvent(task=task, action=event.get("action", "promote"), version=names[event["version"]],
                              previous=names.get(event.get("previous")), by=event.get("by", ""),
                              reason=event.get("reason", ""), at=datetime.fromisoformat(event["at"]))
            session.add(last)
        if live is not None:
            if last is None or last.version != live:
                last = ModelEvent(task=task, action="promote", version=live, previous=None, by="tuesday db upgrade",
                                  reason="production of the single-disk release")
                session.add(last)
            session.flush()
            session.add(ProductionPointer(slot=task, version=live, event_id=last.id))
        session.commit()
