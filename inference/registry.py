"""Model versions in the artifact store, and this host's verified local copies of them.

    models/v3/claim.json     written first, create-only: the name is this writer's
    models/v3/<file>         every file of the version (GGUFs, head, evidence, task, card)
    models/v3/version.json   the manifest, written last, create-only; lists each file's sha256

A version exists once its manifest does, so readers never see half a version; it never changes
after that. Which version is in production is not a property of the files: the SQL store keeps
that pointer (bot/production.py), so every host sees a switch at once.

Hosts read versions through a cache folder: `fetch` downloads the files a version serves,
checks each sha256 against the manifest and only then moves it into place.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from inference import redaction
from inference.artifacts import ArtifactExists, ArtifactStore, LocalArtifacts, fetch_verified, sha256_file
from inference.errors import RegistryError

PREFIX = "models"
MANIFEST = "version.json"
CLAIM = "claim.json"
VERSION_RE = re.compile(r"^v(\d+)$")
# Small files every host keeps with a version: what it was trained on and how it did.
PAPERS = ("task.yaml", "metrics.json", "config.json", "license.json", "MODEL_CARD.md", "drift.json")
# What drift is measured against (written by the trainer; bot.monitor.drift): the holdout's
# similarity to its nearest training row, the training label counts and vocabulary.
DRIFT = "drift.json"
# Create-only files added after commit (Registry.add_paper): the review sheet and the promotion sign-off.
REVIEW, SIGNOFF = "review.json", "signoff.json"
RESULT = "result.json"  # the train job's summary as the training host wrote it; the gate reads this, not Redis


@dataclass(frozen=True)
class VersionInfo:
    name: str
    path: Path  # this host's copy; holds the files `Registry.fetch` downloaded
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


def served_files(manifest: dict) -> list[str]:
    """The files a host needs to serve a version (not adapters, not f16 exports)."""
    files = manifest.get("files", {})
    family = manifest.get("families", {}).get(manifest.get("family", ""), {})
    wanted = [*PAPERS, "evidence.jsonl", "evidence.npy", manifest.get("evidence", {}).get("embedder"),
              files.get(family.get("serve") or manifest.get("serve", ""))]
    if manifest.get("family") == "encoder":
        wanted += [files.get("head"), files.get("tfidf")]
    stored = manifest.get("artifacts", {})
    return [name for name in dict.fromkeys(wanted) if name and name in stored]


class Registry:
    """The versions in one artifact store, with a cache folder for this host's copies."""

    def __init__(self, store: ArtifactStore, cache_dir: str | Path):
        self.store = store
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._manifests: dict[str, dict] = {}  # committed manifests never change

    @classmethod
    def local(cls, root: str | Path) -> Registry:
        """A registry in one folder (artifacts under root/store, copies under root/cache)."""
        return cls(LocalArtifacts(Path(root) / "store"), Path(root) / "cache")

    # -- building --------------------------------------------------------------------------
    def stage(self) -> Path:
        """A fresh local folder to build a version in; commit() stores it."""
        return Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".staging-"))

    def commit(self, staging: Path, manifest: dict) -> VersionInfo:
        """Store the staged folder as the next version (files first, manifest last); returns the local copy."""
        staging = Path(staging)
        files = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != MANIFEST)
        artifacts = {p.relative_to(staging).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                     for p in files}
        for _ in range(100):
            name = f"v{self._next_number()}"
            try:
                self.store.put_new(f"{PREFIX}/{name}/{CLAIM}", json.dumps({"at": _now()}).encode())
            except ArtifactExists:
                continue  # another writer took this name a moment ago
            for rel in artifacts:
                self.store.put_file(f"{PREFIX}/{name}/{rel}", staging / rel)
            manifest = {**manifest, "version": name, "created_at": manifest.get("created_at") or _now(),
                        "artifacts": artifacts}
            text = json.dumps(manifest, indent=2, sort_keys=True)
            self.store.put_new(f"{PREFIX}/{name}/{MANIFEST}", text.encode())
            (staging / MANIFEST).write_text(text, encoding="utf-8")
            local = self.cache_dir / name
            shutil.rmtree(local, ignore_errors=True)
            staging.rename(local)
            self._manifests[name] = manifest
            return VersionInfo(name, local, manifest)
        raise RegistryError("could not allocate a version name")

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for key in self.store.list(PREFIX)
                   if (m := VERSION_RE.match(key.split("/")[1]))]
        return max(numbers, default=0) + 1

    # -- reading ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Committed versions, oldest first."""
        found = {key.split("/")[1] for key in self.store.list(PREFIX) if key.endswith(f"/{MANIFEST}")
                 and key.count("/") == 2}
        return sorted((n for n in found if VERSION_RE.match(n)), key=lambda n: int(n[1:]))

    def get(self, name: str) -> VersionInfo:
        """A version's manifest (its files are local only after fetch())."""
        if name not in self._manifests:
            if not VERSION_RE.match(name or "") or not self.store.exists(f"{PREFIX}/{name}/{MANIFEST}"):
                raise RegistryError(f"no model version {name!r} (have: {', '.join(self.names()) or 'none'})")
            self._manifests[name] = json.loads(self.store.get_bytes(f"{PREFIX}/{name}/{MANIFEST}"))
        return VersionInfo(name, self.cache_dir / name, self._manifests[name])

    def versions(self) -> list[VersionInfo]:
        return [self.get(n) for n in self.names()]

    def newest(self) -> VersionInfo:
        names = self.names()
        if not names:
            raise RegistryError("no model versions yet: run `tuesday train` (or `tuesday demo`) first")
        return self.get(names[-1])

    def fetch(self, name: str, files: list[str] | None = None) -> VersionInfo:
        """The version with its served files (or `files`) in the cache, each checked against its sha256
        (the manifest's, or a later redaction's: a copy made before a forget is downloaded again)."""
        info = self.get(name)
        if not info.manifest.get("artifacts"):
            raise RegistryError(f"version {name} lists no checksums; it was not stored by this Tuesday: rebuild it")
        stored = self.current_artifacts(name)
        for rel in served_files(info.manifest) if files is None else files:
            if rel not in stored:
                raise RegistryError(f"version {name} has no file {rel}")
            fetch_verified(self.store, f"{PREFIX}/{name}/{rel}", info.path / rel, stored[rel]["sha256"])
        (info.path / MANIFEST).write_text(json.dumps(info.manifest, indent=2, sort_keys=True), encoding="utf-8")
        return info

    def fetch_all(self, name: str) -> VersionInfo:
        return self.fetch(name, list(self.get(name).manifest.get("artifacts", {})))

    # -- papers added after commit -----------------------------------------------------------
    def add_paper(self, name: str, rel: str, data: bytes) -> str:
        """Write a create-only file next to a committed version (its review sheet, its sign-off); returns its key.

        The manifest cannot list it (the manifest never changes), so the store's create-only write
        is what keeps it as first written: a second writer gets ArtifactExists.
        """
        info = self.get(name)
        if rel in (MANIFEST, CLAIM) or rel in info.manifest.get("artifacts", {}) or "/" in rel:
            raise RegistryError(f"{rel} of version {name} is not a paper that can be added")
        key = f"{PREFIX}/{name}/{rel}"
        self.store.put_new(key, data)
        return key

    def paper(self, name: str, rel: str) -> bytes | None:
        """A file added with add_paper, or None when there is none."""
        self.get(name)
        key = f"{PREFIX}/{name}/{rel}"
        return self.store.get_bytes(key) if self.store.exists(key) else None

    # -- forgotten rows taken out (inference.redaction) -------------------------------------------
    def redactions(self, name: str) -> list[dict]:
        """The version's redaction records, oldest first (never cached: a forget elsewhere adds one)."""
        self.get(name)
        return redaction.records(self.store, f"{PREFIX}/{name}")

    def current_artifacts(self, name: str) -> dict:
        """{file: {sha256, bytes}} as the version's files are now: the manifest's, with its redactions applied."""
        return redaction.current_artifacts(self.get(name).manifest, self.redactions(name))

    def snapshot_key(self, name: str) -> str | None:
        """The key of the version's snapshot now (a forget rewrites a snapshot under a new content name)."""
        return redaction.current_snapshot(self.get(name).manifest, self.redactions(name))

    def rewrite(self, name: str, rel: str, data: bytes) -> dict:
        """Replace a stored file of a version (its older copies too) and drop this host's copy; returns
        {was, sha256, bytes} for the redaction record that must follow (`add_redaction`)."""
        was = self.current_artifacts(name).get(rel, {}).get("sha256")
        self.store.replace(f"{PREFIX}/{name}/{rel}", data)
        cached = self.cache_dir / name / rel
        if cached.is_file():
            cached.unlink()
        return {"was": was, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    def rewrite_paper(self, name: str, rel: str, data: bytes) -> None:
        """Replace a paper added with add_paper (only forget does: the redaction record says so)."""
        if self.paper(name, rel) is None:
            raise RegistryError(f"version {name} has no paper {rel}")
        self.store.replace(f"{PREFIX}/{name}/{rel}", data)

    def add_redaction(self, name: str, record: dict) -> str:
        self.get(name)
        return redaction.add_record(self.store, f"{PREFIX}/{name}", record)
