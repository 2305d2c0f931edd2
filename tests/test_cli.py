"""Every `tuesday` command through click's runner, with a tiny model as the base."""

import json

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from bot.runtime import Runtime
from bot.settings import Settings
from tests.conftest import TINY_CONFIG, approve_tiny_bases

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tiny_base, tiny_bert, monkeypatch, tmp_path):
    monkeypatch.setenv("TUESDAY_BASE_MODEL", str(tiny_base[1]))
    monkeypatch.setenv("TUESDAY_ENCODER_MODEL", str(tiny_bert))
    (tmp_path / "tiny.yaml").write_text(json.dumps(TINY_CONFIG))
    approve_tiny_bases(Runtime(Settings()).sessions)

    def invoke(*args, ok=True):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture
def labelled(tmp_path, demo_rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in demo_rows[:150]))
    return path


def test_help_lists_the_commands(run):
    out = run("--help").output
    for command in ("demo", "import", "train", "eval", "predict", "models"):
        assert command in out


def test_import_reports_bad_lines_and_exits_nonzero(run, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "my claim?", "label": "claim_status"}\n{"text": "x", "label": "nope"}\n')
    result = run("import", str(path), "--json", ok=False)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["added"] == 1 and report["errors"][0]["line"] == 2


def test_import_missing_file_is_a_clean_error(run, tmp_path):
    result = run("import", str(tmp_path / "nope.jsonl"), ok=False)
    assert result.exit_code == 1 and "file not found" in result.output


def test_train_eval_predict_models_round_trip(run, labelled, tmp_path):
    assert json.loads(run("import", str(labelled), "--json").stdout)["added"] == 150
    summary = json.loads(run("train", "--config", str(tmp_path / "tiny.yaml"), "--json").stdout)
    assert summary["version"] == "v1" and summary["promoted"] is True
    assert 0 <= summary["metrics"]["accuracy"] <= 1

    listed = json.loads(run("models", "--json").stdout)
    assert [(m["version"], m["status"]) for m in listed] == [("v1", "production")]
    assert "v1" in run("models").output and "production" in run("models").output

    metrics = json.loads(run("eval", "--json").stdout)
    assert metrics["version"] == "v1" and metrics["n"] == summary["metrics"]["n"]
    assert set(metrics["per_label"]) >= {"claim_status", "hand_off"}
    assert "macro-F1" in run("eval").output

    suggestion = json.loads(run("predict", "mail me at a@b.co about claim CLM-1", "--json", "--no-reason").stdout)
    assert suggestion["model_version"] == "v1" and abs(sum(suggestion["probabilities"].values()) - 1) < 1e-6
    assert suggestion["routing"]["routing"] in ("suggested", "unsure", "out_of_scope")  # as the worker would route it
    shown = run("predict", "where is my claim", "--version", "v1").output
    assert "label" in shown and "routed :" in shown


def test_second_training_on_same_data_is_not_promoted(run, labelled, tmp_path):
    run("import", str(labelled))
    run("train", "--config", str(tmp_path / "tiny.yaml"))
    summary = json.loads(run("train", "--config", str(tmp_path / "tiny.yaml"), "--json").stdout)
    assert summary["production"] == "v1" and summary["production_metrics"] is not None
    assert summary["promoted"] is False  # seeded: identical metrics do not beat production


def test_a_pause_holds_back_tuesday_train_as_it_holds_back_a_queued_retrain(run, labelled, tmp_path):
    """`tuesday train` goes through the same gate-and-route as a queued run: paused, nothing goes live."""
    run("import", str(labelled))
    run("pause", "--by", "ann")
    summary = json.loads(run("train", "--config", str(tmp_path / "tiny.yaml"), "--json").stdout)
    assert summary["promoted"] is False and summary["why"] == "retraining was paused while it trained; not promoted"
    assert json.loads(run("models", "--json").stdout)[0]["status"] == "candidate"
    run("resume", "--by", "ann")
    assert json.loads(run("train", "--config", str(tmp_path / "tiny.yaml"), "--json").stdout)["promoted"] is True


def test_train_from_data_file_and_bad_config(run, labelled, tmp_path):
    (tmp_path / "bad.yaml").write_text("rank: 0\n")
    result = run("train", "--data", str(labelled), "--config", str(tmp_path / "bad.yaml"), ok=False)
    assert result.exit_code == 1 and "rank must be >= 1" in result.output
    summary = json.loads(run("train", "--data", str(labelled), "--config", str(tmp_path / "tiny.yaml"),
                             "--no-promote", "--json").stdout)
    assert summary["promoted"] is False
    assert json.loads(run("models", "--json").stdout)[0]["status"] == "candidate"


def test_eval_and_predict_without_models_say_what_to_do(run):
    result = run("predict", "hello", ok=False)
    assert result.exit_code == 1 and "tuesday train" in result.output


def test_demo_runs_end_to_end_on_tiny_model(run, tmp_path, two_tasks):
    # both families by name: "auto" would train the decoder only where a GPU is
    (tmp_path / "both.yaml").write_text(json.dumps({**TINY_CONFIG, "families": ["encoder", "decoder"]}))
    result = run("demo", "--config", str(tmp_path / "both.yaml"), "--json")
    payload = json.loads(result.stdout[result.stdout.index("\n{\n") + 1:])
    assert payload["version"] == "v1" and payload["promoted"] is True
    assert set(payload["metrics"]) == {"base (zero-shot)", "v1 encoder", "v1 decoder"}
    assert payload["family"] in ("encoder", "decoder") and payload["choice"]
    assert payload["calibration"]["max_wrong"] == 0.05
    assert len(payload["examples"]) == 3
    assert all(len(example["evidence"]) == 3 for example in payload["examples"])
    assert "similar: [" in result.output
    assert "before / after on the holdout" in result.output
    # the demo deployment's second field: its own version, gated on its own holdout, shown on every example
    assert payload["fields"]["urgency"]["version"] == "v2" and payload["fields"]["urgency"]["promoted"] is True
    assert all(set(example["fields"]) == {"urgency"} for example in payload["examples"])
    assert "urgency: " in result.output and "field 'urgency': training a head on v1's encoder" in result.output


def test_a_retrain_after_the_task_changed_scores_production_with_its_own_labels(run, labelled, tmp_path):
    """An encoder in production trained on the old labels is scored with them, and the report says what changed."""
    import yaml

    from inference.task import demo_task_path, load_task

    (tmp_path / "enc.yaml").write_text(json.dumps({**TINY_CONFIG, "families": ["encoder"]}))
    run("import", str(labelled))
    first = json.loads(run("train", "--config", str(tmp_path / "enc.yaml"), "--json").stdout)
    assert first["promoted"] and first["family"] == "encoder"

    spec = yaml.safe_load(load_task(demo_task_path()).to_yaml())  # the routing task alone, as the tests run
    spec["labels"]["travel_claim"] = "a claim for something that happened while travelling abroad"
    (tmp_path / "task2.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    second = json.loads(run("--task", str(tmp_path / "task2.yaml"), "train", "--config", str(tmp_path / "enc.yaml"),
                            "--json").stdout)
    assert second["production"] == "v1" and second["production_metrics"]["n"] == second["metrics"]["n"]
    assert second["label_changes"] == {"added": ["travel_claim"], "removed": []}
