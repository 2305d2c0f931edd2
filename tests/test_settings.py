from pathlib import Path

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
    assert settings.models_dir == tmp_path / "d" / "models"
