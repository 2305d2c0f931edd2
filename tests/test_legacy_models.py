"""`tuesday db upgrade` adopts the single-disk release's model folders, pointer and history."""

import json

from click.testing import CliRunner

from bot.cli.main import main
from bot.runtime import Runtime
from bot.settings import Settings


def legacy_folder(models):
    """What the previous release left: two versions, v2 in production after v1, and its history."""
    for n, f1 in ((1, 0.4), (2, 0.6)):
        folder = models / f"v{n}"
        folder.mkdir(parents=True)
        (folder / "model-q8_0.gguf").write_bytes(f"weights {n}".encode())
        (folder / "version.json").write_text(json.dumps({"version": f"v{n}", "files": {"q8_0": "model-q8_0.gguf"},
                                                         "serve": "q8_0", "metrics": {"n": 10, "macro_f1": f1}}))
    (models / "v3").mkdir()  # a crashed writer's folder without a manifest
    (models / "PRODUCTION").write_text("v2\n")
    (models / "history.jsonl").write_text(
        json.dumps({"at": "2026-11-30T10:00:00+00:00", "action": "promote", "version": "v1", "previous": None,
                    "by": "cli", "reason": "first"}) + "\n"
        + json.dumps({"at": "2026-11-30T11:00:00+00:00", "action": "promote", "version": "v2", "previous": "v1",
                      "by": "slack:U1", "reason": "better"}) + "\n")


def test_db_upgrade_stores_old_versions_and_their_pointer_once():
    settings = Settings()
    legacy_folder(settings.data_dir / "models")
    result = CliRunner().invoke(main, ["db", "upgrade", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["adopted_versions"] == {"v1": "v1", "v2": "v2"}

    runtime = Runtime(Settings())
    assert runtime.registry.names() == ["v1", "v2"]
    assert runtime.registry.fetch("v2").gguf().read_bytes() == b"weights 2"  # with checksums now
    assert runtime.production.name() == "v2"
    assert [(e["version"], e["previous"], e["by"], e["at"]) for e in runtime.production.history()] == [
        ("v1", None, "cli", "2026-11-30T10:00:00+00:00"), ("v2", "v1", "slack:U1", "2026-11-30T11:00:00+00:00")]
    assert runtime.production.statuses() == {"v1": "retired", "v2": "production"}

    again = CliRunner().invoke(main, ["db", "upgrade", "--json"], catch_exceptions=False)
    assert json.loads(again.output)["adopted_versions"] == {}  # once
    assert Runtime(Settings()).registry.names() == ["v1", "v2"]
