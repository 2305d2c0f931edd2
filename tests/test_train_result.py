"""The gate trusts the training host's stored result, not Redis: a train job's result rewritten in Redis (another
version, better numbers) promotes nothing. Real Redis, a real store and the local artifact folder."""

from __future__ import annotations

import json

import pytest
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

from bot.lifecycle.jobs import QUEUED_TRAIN_JOB, train_job_id
from bot.lifecycle.retrain import conclude_run, stored_result
from bot.lifecycle.runs import request_retrain
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.runs import get_run, start_run
from inference.registry import RESULT

REDIS_DB = 5  # shared with tests/test_hosts.py (every database is taken); flushed around each test


@pytest.fixture
def parts(monkeypatch, store_url):
    from tests.conftest import local_redis

    conn = local_redis(REDIS_DB)
    conn.flushdb()
    monkeypatch.setenv("TUESDAY_REDIS_URL", f"redis://127.0.0.1:6379/{REDIS_DB}")
    monkeypatch.setenv("TUESDAY_DATABASE_URL", store_url)
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    yield runtime, queues
    queues.close()
    conn.flushdb()


def _version(runtime, run_id: int, metrics: dict) -> str:
    """A committed version as a training host leaves one: its manifest names the run, its result beside it."""
    staging = runtime.registry.stage()
    (staging / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    info = runtime.registry.commit(staging, {"run": run_id, "family": "encoder"})
    runtime.registry.add_paper(info.name, RESULT, json.dumps(
        {"version": info.name, "run": run_id, "metrics": metrics, "production": None}).encode("utf-8"))
    return info.name


def _finished_train_job(queues, run_id: int, result: dict) -> None:
    """The train job of run_id as Redis would hold it once finished, with `result` as its return value."""
    job = Job.create(QUEUED_TRAIN_JOB, id=train_job_id(run_id), connection=queues.connection,
                     serializer=JSONSerializer)
    job.save()
    job.set_status(JobStatus.FINISHED)
    Result.create(job, Result.Type.SUCCESSFUL, ttl=600, return_value=result)


def _running_run(runtime, queues) -> int:
    run, _ = request_retrain(runtime, queues, requested_by="U1", trigger="command")
    start_run(runtime.sessions, run.id)
    return run.id


def test_a_result_naming_a_version_another_run_trained_promotes_nothing(parts):
    runtime, queues = parts
    run_id = _running_run(runtime, queues)
    old = _version(runtime, run_id + 40, {"macro_f1": 0.41})  # an older run's candidate
    _finished_train_job(queues, run_id, {"version": old, "run": run_id, "metrics": {"macro_f1": 0.99},
                                         "production": None})
    done = conclude_run(runtime, queues, None, run_id)
    assert done["status"] == "failed" and f"version {old} was not trained by run {run_id}" in done["error"]
    assert runtime.production.name() is None  # nothing went live


def test_a_result_naming_no_stored_result_promotes_nothing(parts):
    runtime, queues = parts
    run_id = _running_run(runtime, queues)
    _finished_train_job(queues, run_id, {"version": "v9", "run": run_id, "metrics": {"macro_f1": 0.99}})
    done = conclude_run(runtime, queues, None, run_id)
    assert done["status"] == "failed" and "names no version with a stored result" in done["error"]
    assert runtime.production.name() is None


def test_the_gate_reads_the_stored_numbers_not_the_ones_in_redis(parts):
    runtime, queues = parts
    run_id = _running_run(runtime, queues)
    name = _version(runtime, run_id, {"macro_f1": 0.41})
    stored = stored_result(runtime, {"version": name, "run": run_id, "metrics": {"macro_f1": 0.99}}, run_id)
    assert stored["metrics"] == {"macro_f1": 0.41} and stored["version"] == name
    assert get_run(runtime.sessions, run_id).status == "running"
