"""The queued jobs of a version's life by dotted path, their ids and timeouts; bot reaches the trainer only by name.

A run moves through three queued jobs: its snapshot and the train job's hand-off on a CPU worker
("control"), the training on the GPU node ("train"), then the gate and report on a CPU worker.
Workers look these names up in bot.worker.jobs; nothing else runs. The train job's arguments are
signed by the control side (inference.job_signing): the GPU node trusts nothing else from Redis.
"""

from __future__ import annotations

import importlib

from inference.errors import TuesdayError
from inference.job_signing import sign_job, signing_key

PREPARE_JOB = "bot.lifecycle.retrain.prepare_job"
CONCLUDE_JOB = "bot.lifecycle.retrain.conclude_job"
QUEUED_TRAIN_JOB = "bot.worker.train_job.train_job"
TRAIN_JOB = "trainer.jobs.train_candidate"  # called in the process that trains, never imported by bot
SIGNED_TRAIN_JOB = "trainer.jobs.train_signed"  # the queued path: checks the control side's signature first

RETRAIN_TIMEOUT_S = 12 * 3600  # a large base on a busy GPU node; RQ kills the job after this
CONTROL_TIMEOUT_S = 3600  # a snapshot of the store, or the gate and report
HEARTBEAT_EVERY_S = 30.0
DEAD_AFTER_S = 180.0  # no heartbeat for this long: the training host is gone


class RunCancelled(TuesdayError):
    """An admin cancelled the retrain this job belongs to."""


def retrain_job_id(run_id: int) -> str:
    return f"retrain-{int(run_id)}"


def train_job_id(run_id: int) -> str:
    return f"train-{int(run_id)}"


def conclude_job_id(run_id: int) -> str:
    return f"gate-{int(run_id)}"


def cancel_key(job_id: str) -> str:
    return f"tuesday:cancel:{job_id}"


def signed_train_kwargs(settings, job_id: str, args: dict) -> dict:
    """The kwargs a train job is queued with: its arguments signed for `job_id` with the control side's key."""
    return {"signed": sign_job(args, job_id, signing_key(settings.job_signing_key, settings.data_dir))}


def run_job(dotted: str, **kwargs):
    """Run the trainer's job in this process by its dotted path (`tuesday train` does; the GPU worker too)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)
