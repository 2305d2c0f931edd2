"""The GPU node's job: the trainer's signed job called by its dotted path (never imported), with a heartbeat.

The "train" queue runs `train_job`, which calls the trainer's job by its dotted path (the trainer
checks the control side's signature before anything loads) and, while
it trains, beats a heartbeat into Redis every half minute, so a CPU host can tell a long
training from a dead training worker within minutes (bot.lifecycle.retrain.check_training), and
cancels it when an admin asks (`/tuesday retrain cancel`).
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import nullcontext
from datetime import datetime, timezone

from bot.lifecycle.jobs import DEAD_AFTER_S, HEARTBEAT_EVERY_S, SIGNED_TRAIN_JOB, RunCancelled, cancel_key, run_job


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
    """Queued job (the GPU node): the trainer's signed train job, with a heartbeat while it runs.

    Its only argument is `signed`, the envelope the control side signed for this job id; the trainer
    checks it before anything loads (inference.job_signing) and refuses anything else.
    """
    from rq import get_current_job

    job = get_current_job()
    # Plain arguments (a forged job, or one queued by a release before signing) are handed on as they
    # are, to be refused as unsigned: nothing the control side did not sign reaches the trainer.
    envelope = kwargs["signed"] if set(kwargs) == {"signed"} else kwargs
    with Heartbeat(job) if job is not None else nullcontext():
        return run_job(SIGNED_TRAIN_JOB, job_id=job.id if job is not None else "", signed=envelope)
