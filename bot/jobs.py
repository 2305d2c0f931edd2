"""How bot reaches the trainer: by the dotted path of a job function, never by import."""

from __future__ import annotations

import importlib

TRAIN_JOB = "trainer.jobs.train_candidate"


def run_job(dotted: str, **kwargs):
    """Run a job function in this process (the CLI does; workers get the same path from a queue)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)
