"""What a worker runs: Tuesday's own job functions by name, the last release's names for one release, nothing else."""

from __future__ import annotations

import time

import pytest

from bot.lifecycle.jobs import CONCLUDE_JOB, PREPARE_JOB, QUEUED_TRAIN_JOB
from bot.lifecycle.runs import request_retrain
from bot.queues import SUGGEST_JOB, Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.runs import finish_run, get_run, set_paused
from bot.worker.jobs import JOBS, LAST_RELEASE, UnknownJob, job_function, worker

OLD_NAMES = {"bot.suggest.suggest_ticket": SUGGEST_JOB, "bot.retrain.prepare_job": PREPARE_JOB,
             "bot.retrain.conclude_job": CONCLUDE_JOB, "bot.jobs.train_job": QUEUED_TRAIN_JOB}


@pytest.fixture
def parts(monkeypatch, redis_url):
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    settings = Settings()
    runtime, queues = Runtime(settings), Queues.from_settings(settings)
    yield runtime, queues
    queues.close()


def test_every_name_a_job_is_queued_under_is_a_tuesday_job():
    # The names the code enqueues are the names the table runs, each a module-level function at that path.
    for name, function in JOBS.items():
        assert f"{function.__module__}.{function.__name__}" == name
    assert LAST_RELEASE == OLD_NAMES
    for old, new in OLD_NAMES.items():
        assert job_function(old) is job_function(new)


def test_jobs_queued_by_the_last_release_run(parts):
    """An upgrade finds jobs in Redis under the old dotted paths: the new worker runs them."""
    runtime, queues = parts
    queued, _ = request_retrain(runtime, queues, requested_by="ann", trigger="cli")
    queues["control"].empty()  # it waits in Redis under last release's name instead
    queues["control"].enqueue_call("bot.retrain.prepare_job", args=[queued.id], job_id="old-prepare")
    set_paused(runtime.sessions, True, by="ann")  # so that preparing it is quick and says so
    worker(queues, ["control"]).work(burst=True)
    assert queues.fetch("old-prepare").get_status() == "finished"
    run = get_run(runtime.sessions, queued.id)
    assert (run.status, run.error) == ("failed", "paused before the run started")  # prepare_run decided it

    set_paused(runtime.sessions, False, by="ann")
    done, _ = request_retrain(runtime, queues, requested_by="ann", trigger="cli")
    finish_run(runtime.sessions, done.id, "cancelled")
    queues["control"].empty()
    queues["control"].enqueue_call("bot.retrain.conclude_job", args=[done.id], job_id="old-conclude")
    worker(queues, ["control"]).work(burst=True)
    job = queues.fetch("old-conclude")
    assert job.get_status() == "finished" and job.return_value()["status"] == "cancelled"


def test_a_job_naming_anything_else_fails_without_running(parts, tmp_path):
    """Write access to Redis is not code execution: a job naming os.system is refused by the worker."""
    runtime, queues = parts
    marker = tmp_path / "ran"
    queues["suggest"].enqueue_call("os.system", args=[f"touch {marker}"], job_id="hostile")
    queues["suggest"].enqueue_call("bot.worker.jobs.worker", args=[], job_id="not-a-job")
    worker(queues, ["suggest"]).work(burst=True)
    for job_id in ("hostile", "not-a-job"):
        job = queues.fetch(job_id)
        assert job.get_status() == "failed"
        assert "is not one of Tuesday's jobs; not run" in job.latest_result().exc_string
    assert not marker.exists()
    with pytest.raises(UnknownJob):
        job_function("subprocess.run")


def test_a_workers_command_channel_wakes_every_second(parts):
    """rq polls its command channel for 60 s, and a warm shutdown waits for that poll: ours polls for 1 s."""
    runtime, queues = parts
    w = worker(queues, ["suggest"])
    w.subscribe()
    try:
        assert w.pubsub_thread.is_alive() and w.pubsub_thread.sleep_time <= 1.0
    finally:
        started = time.monotonic()
        w.unsubscribe()
        assert time.monotonic() - started < 5
