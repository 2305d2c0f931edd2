"""Tuesday as it runs in production, on one machine: web, CPU and GPU hosts as real `tuesday` processes.

The hosts share only the bench's Redis, a PostgreSQL database and an artifact folder; the bench
process plays Slack (bot.demo.local_slack.LocalSlack) and reads the SQL store to count what happened.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from bot.demo.hosts import Host, _tuesday, wait_for, web_healthy
from bot.store.production import production_name
from bot.store.runs import get_run
from bot.store.tickets import Suggestion, Ticket
from inference.task import demo_examples_path, demo_task_path, load_tasks

CHANNEL, MANAGER, ADMIN = "C0BENCH", "U0MANAGER", "U0ADMIN"
SUGGESTION_BLOCK = "tuesday_suggestion_"  # bot/slack/blocks.py: the actions block_id names the suggestion


class Stack:
    """The three hosts of one scenario; processes are started on demand and all stopped on exit."""

    def __init__(self, root: Path, *, database_url: str, redis_url: str, artifacts: Path, slack_url: str,
                 web_port: int, gpu: dict[str, str], retrain_config: Path):
        self.generic_secret, self.zendesk_secret, self.signing_secret = (secrets.token_hex(16) for _ in range(3))
        shared = {"TUESDAY_REDIS_URL": redis_url, "TUESDAY_ARTIFACTS_URL": str(artifacts)}
        # Retrains start only when a scenario asks for one.
        sql = {"TUESDAY_DATABASE_URL": database_url, "TUESDAY_RETRAIN_AFTER_LABELS": "0"}
        slack = {"TUESDAY_SLACK_BOT_TOKEN": "xoxb-bench", "TUESDAY_SLACK_API_URL": slack_url,
                 "TUESDAY_TRIAGE_CHANNEL": CHANNEL}
        self.web = Host("web", root, {**shared, **sql, **slack, "TUESDAY_SLACK_SIGNING_SECRET": self.signing_secret,
                                      "TUESDAY_GENERIC_WEBHOOK_SECRET": self.generic_secret,
                                      "TUESDAY_ZENDESK_WEBHOOK_SECRET": self.zendesk_secret,
                                      "TUESDAY_MANAGERS": MANAGER, "TUESDAY_ADMINS": ADMIN})
        self.cpu = Host("cpu", root, {**shared, **sql, **slack, "TUESDAY_RETRAIN_CONFIG": str(retrain_config)})
        self.gpu = Host("gpu", root, {**shared, **gpu})  # no SQL, no Slack, as on a real GPU node
        self.hosts = [self.web, self.cpu, self.gpu]
        self.url = f"http://127.0.0.1:{web_port}"
        self.port = web_port
        self.orphans: list[int] = []

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        for host in self.hosts:
            host.stop()
        for pid in self.orphans:  # children of processes the bench killed (rq's scheduler): theirs to end
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)

    def serve(self) -> subprocess.Popen:
        """`tuesday serve` on the web host, once /healthz answers 200."""
        proc = self.web.start("serve", "--port", str(self.port))
        self.wait(self.healthy, "the web host's /healthz", timeout=120)
        return proc

    def suggest_worker(self) -> subprocess.Popen:
        return self.cpu.start("worker", "--queue", "suggest")

    def train_worker(self) -> subprocess.Popen:
        return self.gpu.start("worker", "--queue", "train")

    def kill(self, proc: subprocess.Popen) -> list[int]:
        """SIGKILL one process, as the kernel's OOM killer would; returns its children that outlive it."""
        children = child_pids(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for host in self.hosts:
            if proc in host.processes:
                host.processes.remove(proc)
        time.sleep(1.0)
        orphans = [pid for pid in children if _alive(pid)]
        self.orphans += orphans
        return orphans

    def exited(self) -> list[str]:
        """Processes that ended by themselves (not killed by the bench): 'host: command (exit code)'."""
        return [f"{host.name}: {' '.join(proc.args[-3:])} ({proc.returncode})"
                for host in self.hosts for proc in host.processes if proc.poll() is not None]

    def restart_exited(self) -> list[str]:
        """Start again every process that ended by itself, as compose or Kubernetes would; returns what was restarted."""
        gone = self.exited()
        for host in self.hosts:
            for proc in [p for p in host.processes if p.poll() is not None]:
                host.processes.remove(proc)
                host.start(*proc.args[len(_tuesday()):])
        return gone

    def healthy(self) -> bool:
        return web_healthy(self.url)

    def wait(self, check, what: str, timeout: float = 600.0):
        return wait_for(check, what, timeout, self.hosts)


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is pid (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def prepare_model(setup: Host, root: Path, *, tiny: bool) -> dict:
    """Import the demo examples and train and promote an encoder-only version; returns its summary."""
    config = write_config(root, tiny=tiny)
    setup.run("db", "upgrade")
    # Training needs an approved license note for every base it uses, as an admin gives it.
    for name in ("all-minilm-l6-v2", "smollm2-135m-instruct"):
        setup.run("base", "approve", name, "--by", "bench")
    if tiny:
        setup.run("base", "approve", "tiny-bert", "--by", "bench", "--model", "tiny-bert", "--source",
                  "tests/tiny_model.py", "--version", "0", "--obtained", "2026-12-07", "--license", "MIT",
                  "--path", str(tiny_encoder(root)))  # the approval pins the folder's files
    setup.run("import", str(demo_examples_path()), "--source", "demo")
    routing = load_tasks(demo_task_path()).routing_name  # the field the bench's tickets are suggested and posted for
    return json.loads(setup.run("train", "--task", routing, "--config", str(config), "--json"))


def write_config(root: Path, *, tiny: bool) -> Path:
    """The training config of the bench's versions: encoder only, one epoch (a minute or two on 2 cores)."""
    encoder = {"epochs": 1, **({"batch_size": 32} if tiny else {})}
    path = root / "train.json"
    path.write_text(json.dumps({"families": ["encoder"], "encoder": encoder}))
    return path


def tiny_encoder(root: Path) -> Path:
    """A tiny random BERT folder (the tests' own), for smoke runs."""
    from tests.tiny_model import build_tiny_bert

    folder = root / "tiny-bert"
    return folder if folder.exists() else build_tiny_bert(root)


def ticket_texts() -> tuple[str, list[str]]:
    """(what they are, realistic ticket bodies cycled by the senders): support_tickets' test e-mails (median ~430
    characters) where the shared datasets are, else the demo task's example emails (shorter)."""
    from bench.datasets import load_split

    try:
        return "support_tickets test texts", [row["text"] for row in load_split("support_tickets", "test")]
    except FileNotFoundError:
        rows = [json.loads(line) for line in demo_examples_path().read_text(encoding="utf-8").splitlines()]
        return "the demo's example emails", [row["text"] for row in rows]


class Observer:
    """Reads what happened: tickets and suggestions in SQL, jobs in Redis, posts in the local Slack."""

    def __init__(self, database_url: str, redis, slack):
        # pre_ping: the bench's own connections must survive the PostgreSQL restart it causes.
        self.engine = create_engine(database_url, pool_pre_ping=True)
        self.sessions = sessionmaker(self.engine)
        self.redis, self.slack = redis, slack

    def close(self) -> None:
        self.engine.dispose()

    def tickets(self, prefix: str) -> dict[str, int]:
        """external_id -> ticket id of the stored tickets whose id starts with prefix."""
        with self.sessions() as session:
            rows = session.execute(select(Ticket.external_id, Ticket.id)
                                   .where(Ticket.external_id.startswith(f"{prefix}-", autoescape=True)))
            return dict(rows.all())

    def posted_rows(self, ticket_ids) -> Counter:
        """ticket id -> suggestion rows that record a Slack message."""
        with self.sessions() as session:
            rows = session.execute(select(Suggestion.ticket_id, func.count()).where(
                Suggestion.slack_ts.is_not(None), Suggestion.ticket_id.in_(list(ticket_ids)))
                .group_by(Suggestion.ticket_id))
            return Counter(dict(rows.all()))

    def slack_posts(self) -> Counter:
        """ticket id -> chat.postMessage calls that carried one of its suggestions."""
        suggestion_ids = Counter()
        for call in self.slack.calls_to("chat.postMessage"):
            blocks = call["body"].get("blocks") or []
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            for block in blocks:
                if str(block.get("block_id", "")).startswith(SUGGESTION_BLOCK):
                    suggestion_ids[int(block["block_id"].removeprefix(SUGGESTION_BLOCK))] += 1
        with self.sessions() as session:
            owner = dict(session.execute(select(Suggestion.id, Suggestion.ticket_id)
                                         .where(Suggestion.id.in_(list(suggestion_ids)))).all())
        posts = Counter()
        for suggestion_id, n in suggestion_ids.items():
            posts[owner[suggestion_id]] += n
        return posts

    # Registries are read with cleanup=False: rq's cleanup is what requeues a dead worker's job,
    # and the bench must not do for Tuesday what no process of Tuesday's would do.
    def suggest_jobs(self) -> dict[str, int]:
        """Suggest jobs Redis still holds as queued, started (in a worker's hands) or scheduled (a retry waiting)."""
        queue = Queue("suggest", connection=self.redis)
        return {"queued": queue.count, "started": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
                "scheduled": ScheduledJobRegistry(queue=queue).get_job_count(cleanup=False)}

    def started_suggest_job(self) -> str | None:
        ids = StartedJobRegistry(queue=Queue("suggest", connection=self.redis)).get_job_ids(cleanup=False)
        return ids[0] if ids else None

    def job_status(self, job_id: str) -> str | None:
        """A job's status as Redis holds it, None when Redis holds no such job."""
        if not Job.exists(job_id, connection=self.redis):
            return None
        return Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer).get_status(refresh=False)

    def production(self) -> str | None:
        return production_name(self.sessions, load_tasks(demo_task_path()).routing_name)

    def run(self, run_id: int):
        return get_run(self.sessions, run_id)


def stored_counts(observer: Observer, prefix: str, sent: list[str], acked: set[str]) -> dict:
    """Sent, acknowledged and stored; lost is every ticket acknowledged with a 2xx that the store lacks."""
    stored = observer.tickets(prefix)
    return {"sent": len(sent), "acked": len(acked), "stored": len(stored), "lost": len(acked - set(stored)),
            "lost_ids": sorted(acked - set(stored))[:20], "never_acked": len(set(sent) - acked)}


def post_counts(observer: Observer, prefix: str) -> dict:
    """How often each stored ticket was suggested in Slack: by chat.postMessage calls and by SQL rows."""
    ids = set(observer.tickets(prefix).values())
    posts, rows = observer.slack_posts(), observer.posted_rows(ids)
    return {"unsuggested": sum(1 for t in ids if posts[t] == 0),
            "posted_twice": sum(1 for t in ids if posts[t] > 1),
            "rows_posted_twice": sum(1 for t in ids if rows[t] > 1),
            "slack_posts": sum(posts[t] for t in ids)}
