"""SIGTERM, as systemd, Docker and Kubernetes send it: each process finishes what it holds, closes what
it started and exits, leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bot.demo.online import _free_port
from bot.queues import Queues
from tests.conftest import local_redis

REDIS_DB = 6
ROOT = Path(__file__).resolve().parent.parent
# `tuesday`, with stand-in jobs (one sleeps, one fails) that its workers run beside Tuesday's own
TUESDAY = [sys.executable, "-m", "tests.stand_ins"]


def start(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TUESDAY_")}
    (tmp_path / "run").mkdir(exist_ok=True)
    return subprocess.Popen([*TUESDAY, *args], cwd=tmp_path / "run",
                            env={**clean, "TUESDAY_DATA_DIR": str(tmp_path / "run" / "d"), "PYTHONPATH": str(ROOT),
                                 **env},
                            stdout=open(tmp_path / "out.log", "ab"), stderr=subprocess.STDOUT)


def started_here(tmp_path: Path) -> list[psutil.Process]:
    """Processes running in this test's process folder (an embedded redis-server runs in its data folder)."""
    found = []
    for proc in psutil.process_iter(["pid", "cwd"]):
        try:
            if proc.info["cwd"] and Path(proc.info["cwd"]).is_relative_to(tmp_path / "run"):
                found.append(proc)
        except (psutil.Error, ValueError):
            continue
    return found


def wait_until(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def stop(proc: subprocess.Popen, tmp_path: Path) -> int:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    wait_until(lambda: not started_here(tmp_path), timeout=15)  # nothing left behind
    return code


def test_serve_with_its_embedded_redis_stops_cleanly(tmp_path):
    port = _free_port()
    proc = start(tmp_path, "serve", "--port", str(port))

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()["redis"] == "ok"
        except (httpx.HTTPError, ValueError):
            return False

    wait_until(up)
    names = {p.name() for p in started_here(tmp_path)}
    assert "redis-server" in names  # the embedded server this process started
    assert stop(proc, tmp_path) in (0, 128 + signal.SIGTERM)


def test_a_worker_finishes_the_job_in_hand_then_exits(tmp_path, redis_url):
    proc = start(tmp_path, "worker", "--queue", "suggest", TUESDAY_REDIS_URL=redis_url)
    queues = Queues(local_redis(REDIS_DB))
    try:
        job = queues.suggest.enqueue_call("time.sleep", args=(3,), job_id="slow-job")
        wait_until(lambda: job.get_status(refresh=True) == "started")
        assert stop(proc, tmp_path) == 0
        assert job.get_status(refresh=True) == "finished"  # warm shutdown: the job in hand was finished
    finally:
        queues.close()


def test_an_embedded_worker_stops_its_redis(tmp_path):
    proc = start(tmp_path, "worker", "--queue", "suggest")
    wait_until(lambda: any(p.name() == "redis-server" for p in started_here(tmp_path)))
    time.sleep(2)
    assert stop(proc, tmp_path) == 0


def test_a_worker_killed_outright_leaves_no_process_behind(tmp_path, redis_url):
    """SIGKILL cannot be handled: what the worker started must die with it (rq's scheduler was a forked child)."""
    from rq import Worker

    proc = start(tmp_path, "worker", "--queue", "suggest", TUESDAY_REDIS_URL=redis_url)
    conn = local_redis(REDIS_DB)
    wait_until(lambda: Worker.all(connection=conn))
    time.sleep(3)  # past the scheduler's start
    proc.kill()
    proc.wait(timeout=10)
    wait_until(lambda: not started_here(tmp_path), timeout=10)
    conn.close()


def test_delayed_retries_run_in_the_workers_scheduler_thread(tmp_path, redis_url):
    from rq import Retry

    proc = start(tmp_path, "worker", "--queue", "suggest", TUESDAY_REDIS_URL=redis_url)
    queues = Queues(local_redis(REDIS_DB))
    try:
        job = queues.suggest.enqueue_call("builtins.int", args=("x",), job_id="retried",
                                          retry=Retry(max=2, interval=[1, 1]))
        def done():
            job.refresh()
            return job.get_status(refresh=False) == "failed" and job.retries_left == 0

        wait_until(done, timeout=60)  # tried three times: the two delayed retries were queued when due
        assert stop(proc, tmp_path) == 0
    finally:
        queues.close()


@pytest.fixture(autouse=True)
def _kill_leftovers(tmp_path):
    yield
    for leftover in started_here(tmp_path):
        leftover.kill()
