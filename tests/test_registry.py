import json

import pytest

from inference.errors import RegistryError
from inference.registry import Registry


def _version(registry, metrics=None):
    staging = registry.stage()
    (staging / "model-q8_0.gguf").write_bytes(b"x")
    return registry.commit(staging, {"files": {"q8_0": "model-q8_0.gguf"}, "serve": "q8_0", "metrics": metrics or {}})


def test_versions_are_numbered_and_start_as_candidates(tmp_path):
    registry = Registry(tmp_path)
    assert [_version(registry).name, _version(registry).name] == ["v1", "v2"]
    assert [v.status for v in registry.versions()] == ["candidate", "candidate"]
    assert not any(p.name.startswith(".staging") for p in tmp_path.iterdir())


def test_promote_switches_pointer_logs_and_retires_previous(tmp_path):
    registry = Registry(tmp_path)
    _version(registry), _version(registry)
    registry.promote("v1", by="alice", reason="first")
    registry.promote("v2", by="bob", reason="better")
    assert registry.production_name() == "v2"
    assert {v.name: v.status for v in registry.versions()} == {"v1": "retired", "v2": "production"}
    history = registry.history()
    assert [(h["version"], h["previous"], h["by"]) for h in history] == [("v1", None, "alice"), ("v2", "v1", "bob")]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".PRODUCTION")]  # no temp file left


def test_unknown_version_and_empty_registry_are_clear_errors(tmp_path):
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="tuesday train"):
        registry.resolve(None)
    with pytest.raises(RegistryError, match="no model version 'v9'"):
        registry.promote("v9", by="x", reason="y")


def test_incomplete_version_folder_is_invisible(tmp_path):
    registry = Registry(tmp_path)
    (tmp_path / "v5").mkdir()  # no manifest: a crashed writer
    assert registry.names() == []
    assert _version(registry).name == "v6"
    assert json.loads((tmp_path / "v6" / "version.json").read_text())["version"] == "v6"
