"""Stand-in jobs (one that sleeps, ones that fail or echo) for tests about workers rather than about any one job.

A Tuesday worker runs only the functions in bot.worker.jobs.JOBS; these are added to it in the test's
own process (the `stand_in_jobs` fixture) or in a `tuesday` started as `python -m tests.stand_ins ...`.
"""

from __future__ import annotations

import builtins
import json
import time

from bot.worker.jobs import JOBS

STAND_INS = {"time.sleep": time.sleep, "builtins.int": builtins.int, "json.loads": json.loads}


def main() -> None:
    """`tuesday` with the stand-in jobs registered: the same command, the same worker."""
    from bot.cli.main import main as tuesday

    JOBS.update(STAND_INS)
    tuesday()


if __name__ == "__main__":
    main()
