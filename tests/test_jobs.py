"""What a worker runs: Tuesday's own job functions by name, the last release's names for one release, nothing else."""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rq import Callback, Webhook

from bot.lifecycle.jobs import CONCLUDE_JOB, PREPARE_JOB, QUEUED_TRAIN_JOB
from bot.lifecycle.runs import request_retrain
from bot.queues import SUGGEST_JOB, Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.runs import finish_run, get_run, set_paused
from bot.worker.jobs import JOBS, LAST_RELEASE, TuesdayJob, UnknownJob, job_function, worker

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


def test_each_job_runs_only_from_its_own_queue(parts, tmp_path):
    """A train job copied onto a CPU host's queue, or a control job onto the GPU node's, fails unrun."""
    runtime, queues = parts
    queues["suggest"].enqueue_call(QUEUED_TRAIN_JOB, kwargs={"signed": {}}, job_id="train-on-cpu")
    queues["train"].enqueue_call(PREPARE_JOB, args=[1], job_id="prepare-on-gpu")
    queues["train"].enqueue_call("bot.retrain.prepare_job", args=[1], job_id="old-prepare-on-gpu")
    worker(queues, ["suggest"]).work(burst=True)
    worker(queues, ["train"]).work(burst=True)
    for job_id, said in (("train-on-cpu", "runs on the train queue, not on suggest"),
                         ("prepare-on-gpu", "runs on the control queue, not on train"),
                         ("old-prepare-on-gpu", "runs on the control queue, not on train")):
        job = queues.fetch(job_id)
        assert job.get_status() == "failed" and said in job.latest_result().exc_string, job_id
    assert job_function(QUEUED_TRAIN_JOB, "train") is job_function(QUEUED_TRAIN_JOB)


def hostile_callback(job, connection, *rest):
    """What a callback named in Redis would run: it leaves a mark where TUESDAY_TEST_MARK says."""
    Path(os.environ["TUESDAY_TEST_MARK"]).write_text(job.id)


def test_a_worker_runs_every_job_as_a_tuesday_job(parts):
    """Every worker Tuesday builds (tuesday worker, the demos, the tests) comes from worker(): it reads jobs as TuesdayJob."""
    _, queues = parts
    for names in (["suggest"], ["train"], ["control", "writeback"]):
        w = worker(queues, names)
        assert w.job_class is TuesdayJob and all(q.job_class is TuesdayJob for q in w.queues)
        assert w.serializer.__name__ == "JSONSerializer"  # never rq's default, pickle


def test_callbacks_named_in_redis_are_never_imported(parts, stand_in_jobs, tmp_path, monkeypatch):
    """on_success / on_failure / on_stopped are dotted paths rq imports too: a job carrying one fails unrun, none is called."""
    _, queues = parts
    mark = tmp_path / "called"
    monkeypatch.setenv("TUESDAY_TEST_MARK", str(mark))
    hostile = Callback(f"{__name__}.hostile_callback")
    queues["control"].enqueue_call("json.loads", args=["[1]"], job_id="on-success", on_success=hostile)
    queues["control"].enqueue_call("os.system", args=["true"], job_id="on-failure", on_failure=hostile)
    queues["control"].enqueue_call("json.loads", args=["[2]"], job_id="on-stopped", on_stopped=hostile)
    queues["control"].enqueue_call("json.loads", args=["[3]"], job_id="plain")
    worker(queues, ["control"]).work(burst=True)
    for job_id, kind in (("on-success", "success"), ("on-failure", "failure"), ("on-stopped", "stopped")):
        job = queues.fetch(job_id)
        assert job.get_status() == "failed", job_id
        assert f"carries an on_{kind} callback; Tuesday's jobs carry none; not run" in job.latest_result().exc_string
    assert queues.fetch("plain").return_value() == [3]  # the same job without a callback runs
    assert not mark.exists()


def test_an_abandoned_jobs_failure_callback_is_never_imported(parts, stand_in_jobs, tmp_path, monkeypatch):
    """rq's started-job cleanup (any worker's upkeep) calls an abandoned job's on_failure: it too reads jobs as TuesdayJob."""
    _, queues = parts
    mark = tmp_path / "called"
    monkeypatch.setenv("TUESDAY_TEST_MARK", str(mark))
    job = queues["control"].enqueue_call("json.loads", args=["[1]"], job_id="abandoned",
                                         on_failure=Callback(f"{__name__}.hostile_callback"))
    queues["control"].remove(job)  # as if a worker had taken it and died: started, long past its heartbeat
    job.set_status("started")
    queues.connection.zadd(queues["control"].started_job_registry.key, {"abandoned:execution": 1})
    worker(queues, ["control"]).work(burst=True)  # its upkeep cleans the started registries first
    assert queues.fetch("abandoned").get_status() == "failed"  # found abandoned
    assert not mark.exists()


class _Unpickled:
    """A pickle that, once loaded, touches a file: what rq's default serializer would run."""

    def __init__(self, mark: Path):
        self.mark = mark

    def __reduce__(self):
        return (os.system, (f"touch {self.mark}",))


def test_a_pickle_written_into_redis_is_never_loaded(parts, stand_in_jobs, tmp_path):
    """Workers and Queues.fetch read jobs with the JSON serializer: a pickled meta or result is just bad JSON."""
    import pickle

    _, queues = parts
    mark = tmp_path / "unpickled"
    queues["control"].enqueue_call("json.loads", args=["[1]"], job_id="pickled")
    queues.connection.hset("rq:job:pickled", "meta", pickle.dumps(_Unpickled(mark)))
    queues.connection.hset("rq:job:pickled", "result", pickle.dumps(_Unpickled(mark)))
    worker(queues, ["control"]).work(burst=True)
    queues.fetch("pickled").get_status()
    assert not mark.exists()


class _Recorder(BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_webhooks_named_in_redis_are_never_sent(parts, stand_in_jobs):
    """rq 3 sends a job's webhooks (URL, headers, a failed job's traceback): from Redis, that is a request to anywhere."""
    _, queues = parts
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        queues["control"].enqueue_call("json.loads", args=["[1]"], job_id="hooked",
                                       webhooks=[Webhook(url, "finished"), Webhook(url, "failed", method="POST")])
        worker(queues, ["control"]).work(burst=True)
        job = queues.fetch("hooked")
        assert job.get_status() == "failed" and "carries webhooks" in job.latest_result().exc_string
        TuesdayJob.send_webhooks(job, "failed", exc_string="trace")  # even asked directly, nothing is sent
        time.sleep(0.2)
        assert _Recorder.hits == []
    finally:
        server.shutdown()
        server.server_close()
