"""How bot reaches the trainer: by the dotted path of a job function, never by import.

The "train" queue runs `train_job`, which calls the trainer's job by its dotted path and, while
it trains, beats a heartbeat into Redis every half minute, so a CPU host can tell a long
training from a dead training worker within minutes (bot/sweeper.py), and cancels it when an
admin asks (`/tuesday retrain cancel`).
"""

from __future__ import annotations

import ctypes
import importlib
import threading
from contextlib import nullcontext
from datetime import datetime, timezone

from inference.errors import TuesdayError

TRAIN_JOB = "trainer.jobs.train_candidate"
QUEUED_TRAIN_JOB = "bot.jobs.train_job"
HEARTBEAT_EVERY_S = 30.0
DEAD_AFTER_S = 180.0  # no heartbeat for this long: the training host is gone


class RunCancelled(TuesdayError):
    """An admin cancelled the retrain this job belongs to."""


def run_job(dotted: str, **kwargs):
    """Run a job function in this process (the CLI does; workers get the same path from a queue)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def cancel_key(job_id: str) -> str:
    return f"tuesday:cancel:{job_id}"


class Heartbeat:
    """A thread that stamps the job's last_heartbeat in Redis until the job ends, and cancels it when asked."""

    def __init__(self, job, every_s: float = HEARTBEAT_EVERY_S):
        self.job, self.every_s = job, every_s
        self._stop = threading.Event()
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def beat(self) -> None:
        self.job.heartbeat(datetime.now(timezone.utc), ttl=int(DEAD_AFTER_S))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat()
                cancelled = self.job.connection.exists(cancel_key(self.job.id))
            except Exception:  # noqa: BLE001  a Redis blip must not end the training; the next beat retries
                continue
            if cancelled and not self._stop.is_set():
                # Training runs in C for long stretches; an exception raised asynchronously in the
                # job's thread surfaces at its next Python step and fails the job like any error.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target), ctypes.py_object(RunCancelled))
                return


def train_job(**kwargs) -> dict:
    """Queued job (the GPU node): the trainer's train job, with a heartbeat while it runs."""
    from rq import get_current_job

    job = get_current_job()
    with Heartbeat(job) if job is not None else nullcontext():
        return run_job(TRAIN_JOB, **kwargs)
