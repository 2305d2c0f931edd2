"""Every training path scans its snapshot for PII first (trainer.jobs.train_candidate): a leak stops the run."""

import json

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from bot.lifecycle.training import train_and_gate
from bot.runtime import Runtime
from bot.settings import Settings
from inference.pii import PiiInSnapshot
from inference.snapshot import upload_snapshot, upload_task, write_snapshot
from tests.conftest import TINY_CONFIG, approve_tiny_bases

pytestmark = pytest.mark.slow


@pytest.fixture
def rt(tiny_base, tiny_bert, monkeypatch, tmp_path):
    monkeypatch.setenv("TUESDAY_BASE_MODEL", str(tiny_base[1]))
    monkeypatch.setenv("TUESDAY_ENCODER_MODEL", str(tiny_bert))
    (tmp_path / "tiny.yaml").write_text(json.dumps(TINY_CONFIG))
    runtime = Runtime(Settings())
    approve_tiny_bases(runtime.sessions)
    return runtime


def test_a_snapshot_with_raw_pii_is_refused_before_training(rt, demo_rows, tmp_path):
    # Written straight from the raw file, as a bug or a hand-made snapshot would: nothing masked it.
    rows = [{"id": r["id"], "text": r["text"], "label": r["label"], "reason": r.get("reason")} for r in demo_rows[:60]]
    path = write_snapshot(rows, tmp_path / "snapshots", rt.settings.holdout_fraction)
    store = rt.registry.store
    snapshot = {**upload_snapshot(store, path), **upload_task(store, rt.task.to_yaml()), "data_approval": None}
    with pytest.raises(PiiInSnapshot) as raised:
        train_and_gate(rt, config=TINY_CONFIG, snapshot=snapshot, progress=False)
    said = str(raised.value)
    assert said.startswith("snapshot holds PII in ") and "demo-0009" in said and "PERSON" in said
    assert said.endswith("mask or remove them (tuesday forget) and retrain")
    assert "Dana Whitfield" not in said  # demo-0009 is signed by her: the message names the row, not her
    assert rt.registry.names() == []  # nothing trained


def test_the_raw_demo_file_is_masked_on_the_way_in_and_trains(rt, demo_rows, tmp_path):
    labelled = tmp_path / "rows.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in demo_rows[:60]))
    result = CliRunner().invoke(main, ["train", "--data", str(labelled), "--config", str(tmp_path / "tiny.yaml"),
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == "v1"
