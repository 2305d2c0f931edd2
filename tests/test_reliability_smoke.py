"""`make reliability` keeps working: its set-up (license approvals, training, promotion) and the load scenario run
end to end on a tiny model, a few requests, real Redis and PostgreSQL (the real figures: docs/reliability.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import postgres_url

pytestmark = pytest.mark.slow


def test_the_reliability_load_scenario_runs_on_a_fresh_checkout(tmp_path):
    if postgres_url() is None:
        pytest.skip("no PostgreSQL here (CI has one)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUESDAY_")}
    env["TUESDAY_BENCH_OUT"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "bench.reliability", "load", "--tiny", "--seconds", "2",
                           "--rates", "5", "--postgres", "shared"], env=env, capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "promoted: True" in done.stdout
    [row] = json.loads((tmp_path / "reliability-load.json").read_text())["runs"]
    assert row["sent"] > 0 and row["stored"] == row["sent"] and row["lost"] == 0
