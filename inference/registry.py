"""Model versions on disk and the production pointer.

    <root>/v1/            a finished version (never modified after it is committed)
    <root>/PRODUCTION     the production version's name, replaced atomically
    <root>/history.jsonl  every promotion and rollback: who, when, why

A version is built in a staging folder and renamed into place, so readers
never see a half-written version; the pointer is written to a temporary file
and os.replace()d, so readers never see a half-written pointer.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from inference.errors import RegistryError

VERSION_RE = re.compile(r"^v(\d+)$")
MANIFEST = "version.json"


@dataclass(frozen=True)
class VersionInfo:
    name: str
    path: Path
    status: str  # candidate | production | retired
    manifest: dict

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    def gguf(self, kind: str | None = None) -> Path:
        """Path of the served GGUF (the quantized one unless kind names another)."""
        files = self.manifest.get("files", {})
        kind = kind or self.manifest.get("serve", "q8_0")
        if kind not in files:
            raise RegistryError(f"version {self.name} has no {kind} GGUF (has: {', '.join(files) or 'none'})")
        return self.path / files[kind]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Registry:
    """The versions under one folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    # -- building --------------------------------------------------------------------------
    def stage(self) -> Path:
        """A fresh folder to build a version in; commit() moves it into place."""
        return Path(tempfile.mkdtemp(dir=self.root, prefix=".staging-"))

    def commit(self, staging: Path, manifest: dict) -> VersionInfo:
        """Give the staged folder the next version name, atomically."""
        for _ in range(100):
            name = f"v{self._next_number()}"
            manifest = {**manifest, "version": name, "created_at": manifest.get("created_at") or _now()}
            _write_atomic(staging / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
            try:
                os.rename(staging, self.root / name)  # fails if another writer took the name
            except OSError:
                continue
            return self.get(name)
        raise RegistryError("could not allocate a version name")

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for p in self.root.iterdir() if (m := VERSION_RE.match(p.name))]
        return max(numbers, default=0) + 1

    # -- reading ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        found = [p.name for p in self.root.iterdir() if VERSION_RE.match(p.name) and (p / MANIFEST).exists()]
        return sorted(found, key=lambda n: int(n[1:]))

    def production_name(self) -> str | None:
        try:
            name = (self.root / "PRODUCTION").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def history(self) -> list[dict]:
        path = self.root / "history.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def get(self, name: str) -> VersionInfo:
        path = self.root / name
        if not VERSION_RE.match(name) or not (path / MANIFEST).exists():
            raise RegistryError(f"no model version {name!r} (have: {', '.join(self.names()) or 'none'})")
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        return VersionInfo(name, path, self._status(name), manifest)

    def _status(self, name: str) -> str:
        if name == self.production_name():
            return "production"
        was_live = any(event.get("version") == name for event in self.history())
        return "retired" if was_live else "candidate"

    def versions(self) -> list[VersionInfo]:
        return [self.get(n) for n in self.names()]

    def production(self) -> VersionInfo | None:
        name = self.production_name()
        return self.get(name) if name else None

    def resolve(self, name: str | None) -> VersionInfo:
        """The named version, or production, or the newest one."""
        if name:
            return self.get(name)
        live = self.production()
        if live:
            return live
        names = self.names()
        if not names:
            raise RegistryError("no model versions yet: run `tuesday train` (or `tuesday demo`) first")
        return self.get(names[-1])

    # -- switching -------------------------------------------------------------------------
    def promote(self, name: str, *, by: str, reason: str, action: str = "promote") -> dict:
        """Make a version production: one atomic pointer switch, logged."""
        self.get(name)  # must exist and be complete
        event = {"at": _now(), "action": action, "version": name, "previous": self.production_name(),
                 "by": by, "reason": reason}
        _write_atomic(self.root / "PRODUCTION", name + "\n")
        with open(self.root / "history.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
        return event
