"""The labellers' queries at scale: the flood alert's check and the People page over a store of many clicks.

    python -m bench.labellers --clicks 600000

Fills a fresh SQLite store at head with clicks from 40 people over 90 days (raw INSERTs), then times
`correction_floods` (the alert check, every TUESDAY_ALERT_CHECK_MINUTES on a CPU worker) and `people`
(the dashboard's People page, 7 days), with and without the index on feedback.created_at (revision 0011).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from bot.store.base import make_session_factory
from bot.store.schema import upgrade
from bot.trail.labellers import correction_floods, people


def fill(path: str, clicks: int, now: datetime, seed: int = 1) -> None:
    rng = random.Random(seed)
    rows = [(i, i, i, "topic", f"U{rng.randrange(40)}", "", rng.choice(["accept", "change", "reject"]), "x", "v1",
             (now - timedelta(seconds=rng.randrange(90 * 86400))).strftime("%Y-%m-%d %H:%M:%S.%f"), 0, "labeller")
            for i in range(1, clicks + 1)]
    con = sqlite3.connect(path)
    con.executemany("INSERT INTO feedback (id, suggestion_id, ticket_id, task, user_id, user_name, action, label, "
                    "model_version, created_at, conflict, trust) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.execute("ANALYZE")
    con.commit()
    con.close()


def median_ms(step, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=600_000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="tuesday-bench-labellers-")
    url = f"sqlite:///{folder}/store.db"
    upgrade(url)
    now = datetime.now(timezone.utc)
    fill(f"{folder}/store.db", args.clicks, now)
    sessions = make_session_factory(url)
    print("| index on feedback.created_at | flood check p50 (ms, 7 runs) | People page, 7 days, p50 (ms, 3 runs) |")
    print("|---|---|---|")
    for label in ("yes", "no"):
        flood = median_ms(lambda: correction_floods(sessions, now, over=30), 7)
        page = median_ms(lambda: people(sessions, now - timedelta(days=7), now), 3)
        print(f"| {label} | {flood:.1f} | {page:.1f} |")
        with sessions() as session:
            session.execute(text("DROP INDEX IF EXISTS ix_feedback_created_at"))
            session.commit()


if __name__ == "__main__":
    main()
