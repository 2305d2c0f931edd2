from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_exactly_the_settings():
    lines = (ROOT / ".env.example").read_text().splitlines()
    keys = {line.split("=", 1)[0] for line in lines if line.strip() and not line.startswith("#")}
    assert keys == {f"TUESDAY_{name.upper()}" for name in Settings.model_fields}


def test_every_setting_is_described():
    assert all(field.description for field in Settings.model_fields.values())


def test_settings_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TUESDAY_DATA_DIR", str(tmp_path / "d"))
    settings = Settings()
    assert settings.store_url == f"sqlite:///{(tmp_path / 'd' / 'tuesday.db').resolve()}"
    assert settings.model_cache_dir == tmp_path / "d" / "cache"
    assert settings.artifacts().root == (tmp_path / "d" / "artifacts").resolve()  # one machine: a folder


def test_confidence_threshold_empty_means_the_versions_calibration(monkeypatch):
    assert Settings().confidence_threshold is None
    monkeypatch.setenv("TUESDAY_CONFIDENCE_THRESHOLD", "")  # as `.env.example` sets it
    assert Settings().confidence_threshold is None
    monkeypatch.setenv("TUESDAY_CONFIDENCE_THRESHOLD", "0.35")
    assert Settings().confidence_threshold == 0.35
    monkeypatch.setenv("TUESDAY_CONFIDENCE_THRESHOLD", "0")
    assert Settings().confidence_threshold == 0.0
    monkeypatch.setenv("TUESDAY_CONFIDENCE_THRESHOLD", "1.5")
    with pytest.raises(ValidationError):
        Settings()


def test_env_example_as_copied_loads(tmp_path, monkeypatch, two_tasks):
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.confidence_threshold is None and settings.task_file is None
