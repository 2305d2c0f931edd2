"""Reliability figures: Tuesday under load and faults, as real processes on real Redis and PostgreSQL.

    python -m bench.reliability all                      # every scenario, the figures of docs/reliability.md
    python -m bench.reliability load --rates 100,300 --seconds 60
    python -m bench.reliability redis-restart            # Redis SIGKILLed at 10 s, back at 15 s, under 100 req/s
    python -m bench.reliability postgres-restart         # PostgreSQL restarted at 10 s under 100 req/s
    python -m bench.reliability kill-suggest             # a suggest worker SIGKILLed mid-job, 300 tickets queued
    python -m bench.reliability kill-train               # the train worker SIGKILLed mid-training
    python -m bench.reliability fuzz --fuzz-count 1000   # generated bad requests on the three endpoints
    python -m bench.reliability all --tiny --seconds 5 --fault-at 2 --fault-for 2 --queued 60 --fuzz-count 30
                                                         # a smoke run: a tiny random encoder, seconds of load

Each scenario starts its own hosts (`tuesday serve`, `tuesday worker --queue suggest|train`) on a
fresh copy of a database that holds the demo examples and one promoted encoder version, with
the bench's own redis-server and (by default) its own PostgreSQL server, which it kills and
restarts. It prints a Markdown table and writes bench/out/reliability-<scenario>.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager

import httpx
from redis import Redis

from bench.reliability_fuzz import SHAPES, fuzz, secrets_of
from bench.reliability_load import Backoff, Fault, GenericSender, run_load, summarize
from bench.reliability_report import GOAL_P99_MS, OUT, machine, report
from bench.reliability_services import RedisServer, postgres
from bench.reliability_stack import (
    MANAGER,
    Observer,
    Stack,
    post_counts,
    prepare_model,
    stored_counts,
    ticket_texts,
    tiny_encoder,
    write_config,
)
from bot.demo.hosts import Host
from bot.demo.local_slack import LocalSlack
from bot.demo.online import Agent, _free_port
from bot.lifecycle.jobs import train_job_id

SCENARIOS = ("load", "redis-restart", "postgres-restart", "kill-suggest", "kill-train", "fuzz")
TEMPLATE = "tuesday_bench"  # the database every scenario's own is copied from
GOAL_RATE = 300
ENDED = ("promoted", "kept", "failed", "cancelled")  # a retrain run's final states


class Bench:
    """The services and the trained model every scenario starts from; each scenario gets fresh hosts and a fresh database."""

    def __init__(self, args):
        self.args = args
        self.root = OUT / "reliability-hosts"  # the hosts' data folders and logs, kept for reading afterwards
        self.artifacts = self.root / "artifacts"
        self.redis = RedisServer(self.root / "redis.log")
        self.pg = postgres(args.postgres)
        self.gpu_env: dict[str, str] = {}

    def __enter__(self) -> Bench:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.pg.start()
        self.redis.start()
        try:
            self.model = self._prepare_model()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.redis.stop()
        try:
            self.pg.drop(TEMPLATE)
        finally:
            self.pg.stop()

    def _prepare_model(self) -> dict:
        if self.args.tiny:
            self.gpu_env["TUESDAY_ENCODER_MODEL"] = str(tiny_encoder(self.root))
        database_url = self.pg.create(TEMPLATE)
        setup = Host("setup", self.root, {"TUESDAY_DATABASE_URL": database_url, "TUESDAY_REDIS_URL": self.redis.url,
                                          "TUESDAY_ARTIFACTS_URL": str(self.artifacts), **self.gpu_env})
        started = time.monotonic()
        summary = prepare_model(setup, self.root, tiny=self.args.tiny)
        if not summary.get("promoted"):
            raise RuntimeError(f"the bench's model was not promoted ({summary.get('why')}); nothing would be suggested")
        kind = "tiny random encoder" if self.args.tiny else "all-MiniLM-L6-v2 encoder, 1 epoch"
        return {"version": summary.get("version"), "promoted": summary.get("promoted"),
                "description": f"{kind} ({summary.get('version')}, trained in {time.monotonic() - started:.0f} s)"}

    @contextmanager
    def scenario(self, name: str):
        """(stack, observer) on a fresh database copy, an empty Redis and a new local Slack."""
        database = f"{TEMPLATE}_{name.replace('-', '_')}"
        database_url = self.pg.create(database, template=TEMPLATE)
        self.redis.flush()
        slack = LocalSlack().start()
        stack = Stack(self.root / name, database_url=database_url, redis_url=self.redis.url, artifacts=self.artifacts,
                      slack_url=slack.url, web_port=_free_port(), gpu=self.gpu_env,
                      retrain_config=write_config(self.root, tiny=self.args.tiny))
        observer = Observer(database_url, Redis.from_url(self.redis.url), slack)
        try:
            with stack:
                yield stack, observer
        finally:
            observer.close()
            slack.stop()
            self.pg.drop(database)


# -- what the scenarios share ------------------------------------------------------------------------

def sender(stack: Stack) -> GenericSender:
    return GenericSender(stack.generic_secret, ticket_texts()[1])


@contextmanager
def pinned_apart(server_pid: int):
    """The server's threads on core 0 and this process (the sender) on core 1 while the block runs, so a figure
    is the server's and not the sender's; says what it did (nothing on one core or without taskset)."""
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        yield "not pinned (one core, or no taskset)"
        return
    subprocess.run(["taskset", "-a", "-p", "-c", "0", str(server_pid)], check=True, stdout=subprocess.DEVNULL)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    try:
        yield "server on core 0, sender on core 1 (taskset); Redis and PostgreSQL not pinned"
    finally:
        os.sched_setaffinity(0, before)


def warm_up(stack: Stack) -> None:
    """Two seconds at 50 requests/s, not counted: first connections and first-request imports."""
    run_load(stack.url, sender(stack), prefix="warmup", rate=50, seconds=2)


def drain(stack: Stack, observer: Observer, prefix: str, timeout: float,
          watch: tuple[int, float] | None = None) -> dict:
    """Wait until every stored ticket is posted and Redis holds no suggest job; restart processes that died.

    watch=(ticket id, monotonic time) also reports how long after that time the ticket was posted.
    """
    start, restarted, watched_s = time.monotonic(), [], None
    while True:
        restarted += stack.restart_exited()
        stored = observer.tickets(prefix)
        posted = observer.posted_rows(stored.values())
        if watch is not None and watched_s is None and posted[watch[0]]:
            watched_s = round(time.monotonic() - watch[1], 1)
        jobs = observer.suggest_jobs()
        done = len(posted) == len(stored) and not any(jobs.values())
        if done or time.monotonic() - start > timeout:
            return {"drained": done, "drain_s": round(time.monotonic() - start, 1), "jobs_left": jobs,
                    "restarted": restarted, **({"watched_posted_after_s": watched_s} if watch is not None else {})}
        time.sleep(1.0)


def delivered(run) -> tuple[list[str], set[str]]:
    """(every ticket id sent, those acknowledged with a 2xx)."""
    return [d.ticket for d in run.deliveries], {d.ticket for d in run.deliveries if d.acked}


def load_under_fault(bench: Bench, name: str, faults: list[Fault]) -> dict:
    """Steady load with retries while the faults strike, then wait for every ticket to be posted; count."""
    args = bench.args
    with bench.scenario(name) as (stack, observer):
        server = stack.serve()
        for _ in range(args.suggest_workers):
            stack.suggest_worker()
        warm_up(stack)
        run = run_load(stack.url, sender(stack), prefix=name, rate=args.fault_rate, seconds=args.seconds,
                       backoff=Backoff(), faults=faults, server_pid=server.pid)
        exited = stack.exited()  # processes the fault took down, before drain() restarts them
        settled = drain(stack, observer, name, args.drain_timeout)
        sent, acked = delivered(run)
        return {**summarize(run), **stored_counts(observer, name, sent, acked), **post_counts(observer, name),
                "exited_during_load": exited, **settled}


def retrain(agent: Agent) -> int:
    """`/tuesday retrain` as a manager; returns the run id."""
    reply = agent.slash(MANAGER, "retrain")
    match = re.search(r"as run (\d+)", reply)
    if match is None:
        raise RuntimeError(f"/tuesday retrain was not queued: {reply!r}")
    return int(match.group(1))


def wait_run(stack: Stack, observer: Observer, run_id: int, timeout: float) -> tuple[object, float]:
    """The retrain run once it ended (promoted, kept, failed or cancelled), and how many seconds that took."""
    def ended():
        run = observer.run(run_id)
        return run if run is not None and run.status in ENDED else None

    start = time.monotonic()
    run = stack.wait(ended, f"retrain run {run_id} to end", timeout)
    return run, round(time.monotonic() - start, 1)


def wait_training(stack: Stack, observer: Observer, run_id: int) -> str:
    """The id of the run's train job once a train worker has started it."""
    job_id = train_job_id(run_id)
    stack.wait(lambda: observer.job_status(job_id) == "started", "the train job to start", timeout=600)
    return job_id


# -- scenarios --------------------------------------------------------------------------------------

def scenario_load(bench: Bench) -> dict:
    """Signed webhooks at each rate for --seconds against `tuesday serve` alone: ack latency, stored vs sent."""
    args, runs = bench.args, []
    with bench.scenario("load") as (stack, observer):
        server = stack.serve()
        with pinned_apart(server.pid) as pinning:
            warm_up(stack)
            for rate in args.rates:
                prefix = f"load{rate}"
                run = run_load(stack.url, sender(stack), prefix=prefix, rate=rate, seconds=args.seconds,
                               server_pid=server.pid)
                sent, acked = delivered(run)
                summary = summarize(run)
                runs.append({**summary, **stored_counts(observer, prefix, sent, acked), "goal_met": goal_met(summary)})
    return {"runs": runs, "pinning": pinning, "bodies": ticket_texts()[0]}


def goal_met(summary: dict) -> bool | None:
    """Whether ack p99 ≤ 50 ms held, for runs at the goal's rate or above (None below it)."""
    p99 = summary["ack_ms"]["p99"]
    return None if summary["rate"] < GOAL_RATE else p99 is not None and p99 <= GOAL_P99_MS


def scenario_redis_restart(bench: Bench) -> dict:
    """Redis SIGKILLed at --fault-at and started again --fault-for seconds later (empty: it saved nothing)."""
    args = bench.args
    return load_under_fault(bench, "redis-restart", [
        Fault(args.fault_at, "SIGKILL redis-server", bench.redis.kill),
        Fault(args.fault_at + args.fault_for, "start redis-server", bench.redis.start)])


def scenario_postgres_restart(bench: Bench) -> dict:
    """PostgreSQL restarted (fast mode: connections cut) at --fault-at."""
    return load_under_fault(bench, "postgres-restart", [
        Fault(bench.args.fault_at, f"restart PostgreSQL ({bench.pg.name})", bench.pg.restart)])


def _kill_mid_job(stack: Stack, observer: Observer, prefix: str, tries: int = 5) -> dict:
    """Start a suggest worker, let it post a few, SIGKILL it while Redis shows a job in its hands."""
    for attempt in range(1, tries + 1):
        worker = stack.suggest_worker()
        stack.wait(lambda: sum(observer.posted_rows(observer.tickets(prefix).values()).values()) >= 10 * attempt,
                   "the worker to post its first suggestions", timeout=600)
        stack.wait(observer.started_suggest_job, "a started suggest job", timeout=60)
        killed_at = time.monotonic()
        orphans = stack.kill(worker)
        # What Redis shows started after the kill is the job that died with the worker.
        job = observer.started_suggest_job()
        if job is not None:
            return {"killed_job": job, "ticket_id": int(job.removeprefix("suggest-")), "killed_at": killed_at,
                    "kills": attempt, "orphaned_children": len(orphans)}
    raise RuntimeError(f"{tries} kills all fell between two jobs")


def scenario_kill_suggest(bench: Bench) -> dict:
    """--queued tickets stored and queued with no worker; one worker is SIGKILLed mid-job and another takes over."""
    args, prefix = bench.args, "kill-suggest"
    with bench.scenario("kill-suggest") as (stack, observer):
        stack.serve()
        run = run_load(stack.url, sender(stack), prefix=prefix, rate=100, seconds=args.queued / 100, backoff=Backoff())
        killed = _kill_mid_job(stack, observer, prefix)
        stack.suggest_worker()
        settled = drain(stack, observer, prefix, args.drain_timeout, watch=(killed["ticket_id"], killed.pop("killed_at")))
        sent, acked = delivered(run)
        return {**stored_counts(observer, prefix, sent, acked), **post_counts(observer, prefix), **killed,
                "killed_ticket_posts": observer.slack_posts()[killed["ticket_id"]], **settled}


def scenario_kill_train(bench: Bench) -> dict:
    """/tuesday retrain, the train worker SIGKILLed mid-training; how long until the run is failed; then a retrain that succeeds."""
    args = bench.args
    with bench.scenario("kill-train") as (stack, observer), httpx.Client(base_url=stack.url, timeout=30) as http:
        stack.serve()
        stack.suggest_worker()  # its Upkeep notices the dead training
        gpu = stack.train_worker()
        agent, before = Agent(http, stack.signing_secret), observer.production()
        run_id = retrain(agent)
        job_id = wait_training(stack, observer, run_id)
        time.sleep(args.train_kill_after)
        still_training = observer.job_status(job_id) == "started"
        orphans = stack.kill(gpu)
        killed, failed_after_s = wait_run(stack, observer, run_id, args.drain_timeout)
        after_kill = observer.production()
        stack.train_worker()
        next_id = retrain(agent)
        following, next_s = wait_run(stack, observer, next_id, args.drain_timeout)
        return {"killed_run": run_id, "killed_while_training": still_training, "killed_run_status": killed.status,
                "killed_run_error": killed.error, "failed_after_s": failed_after_s, "orphaned_children": len(orphans),
                "production_before": before, "production_after_kill": after_kill,
                "next_run": next_id, "next_run_status": following.status, "next_run_s": next_s,
                "next_run_version": following.candidate_version, "production_after": observer.production()}


def scenario_fuzz(bench: Bench) -> dict:
    """--fuzz-count generated bad requests per endpoint; every 5xx or unanswered request saved to bench/out/."""
    args = bench.args
    with bench.scenario("fuzz") as (stack, _):
        stack.serve()
        keys = secrets_of(stack)
        results = [fuzz(stack.url, endpoint, keys[endpoint], count=args.fuzz_count, out=OUT / "reliability-fuzz")
                   .to_dict() for endpoint in SHAPES]
        return {"endpoints": results, "exited": stack.exited()}


RUNNERS = {"load": scenario_load, "redis-restart": scenario_redis_restart,
           "postgres-restart": scenario_postgres_restart, "kill-suggest": scenario_kill_suggest,
           "kill-train": scenario_kill_train, "fuzz": scenario_fuzz}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=(*SCENARIOS, "all"))
    parser.add_argument("--seconds", type=float, default=60, help="seconds of load per rate and per fault run")
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[100, 300],
                        help="requests/s of the load scenario, comma-separated")
    parser.add_argument("--fault-rate", type=int, default=100, help="requests/s during the fault scenarios")
    parser.add_argument("--fault-at", type=float, default=10, help="seconds into the load when the fault strikes")
    parser.add_argument("--fault-for", type=float, default=5, help="seconds Redis stays down")
    parser.add_argument("--suggest-workers", type=int, default=1, help="suggest workers during the fault scenarios")
    parser.add_argument("--queued", type=int, default=300, help="tickets queued before a suggest worker is killed")
    parser.add_argument("--train-kill-after", type=float, default=3, help="seconds into the train job to kill it")
    parser.add_argument("--fuzz-count", type=int, default=1000, help="generated requests per endpoint")
    parser.add_argument("--drain-timeout", type=float, default=1200, help="longest wait for posts or a run's end (s)")
    parser.add_argument("--postgres", choices=("private", "shared"), default="private",
                        help="private: a server of the bench's own (initdb); shared: 127.0.0.1:5432, restarted too")
    parser.add_argument("--tiny", action="store_true", help="a tiny random encoder instead of all-MiniLM-L6-v2 (smoke)")
    args = parser.parse_args(argv)
    if args.scenario in ("redis-restart", "postgres-restart", "all") and args.fault_at + args.fault_for >= args.seconds:
        parser.error("--fault-at + --fault-for must end before --seconds of load")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    names = SCENARIOS if args.scenario == "all" else (args.scenario,)
    if "fuzz" in names:
        import hypothesis  # noqa: F401  (fail before the minutes of set-up, not after; pip install hypothesis)
    with Bench(args) as bench:
        print(f"model: {bench.model['description']}, promoted: {bench.model['promoted']}", flush=True)
        for name in names:
            print(f"\n== {name}", flush=True)
            measured_on = machine(args, bench.model["description"])
            report(name, RUNNERS[name](bench), measured_on)


if __name__ == "__main__":
    main()
