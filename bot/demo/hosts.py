"""`tuesday demo --hosts`: the three-host layout on one machine, sharing only Redis, SQL and S3.

Each host is a set of real `tuesday` processes with its own data folder and its own settings:

    web  tuesday serve                    SQL, Redis, artifact store (reads manifests), Slack secrets
    cpu  tuesday worker --queue suggest   SQL, Redis, artifact store, Slack bot token, a model cache
    gpu  tuesday worker --queue train     Redis and the artifact store only: no SQL, no Slack

This process plays the outside world: a local stand-in for Slack's Web API, a helpdesk that
sends signed webhooks, and people who click and type `/tuesday`, signed as Slack signs them.
It reads the shared SQL store only to see what happened.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import click
import httpx

from inference.base_models import BUILT_IN_NOTES
from inference.errors import TuesdayError
from inference.job_signing import new_key_pair

CHANNEL, MANAGER, ADMIN, AGENT = "C0TRIAGE", "U0MANAGER", "U0ADMIN", "U0AGENT"
HOSTS = ("web", "cpu", "gpu")
HOSTS_CONFIG = Path(str(resources.files("inference") / "demo" / "hosts.yaml"))  # the demo's training config


def _tuesday() -> list[str]:
    script = Path(sys.executable).parent / "tuesday"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from bot.cli import main; main()"]


class Host:
    """One machine of the layout: a data folder, an environment, and the processes it runs."""

    def __init__(self, name: str, root: Path, env: dict[str, str]):
        self.name, self.dir = name, root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        # Nothing from this shell's TUESDAY_* (or a .env: the processes run in the host's folder) leaks in.
        base = {k: v for k, v in os.environ.items() if not k.startswith("TUESDAY_")}
        self.env = {**base, **env, "TUESDAY_DATA_DIR": str(self.dir)}
        self.processes: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        log = open(self.dir / f"{args[0]}.log", "ab")
        proc = subprocess.Popen([*_tuesday(), *args], cwd=self.dir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc

    def run(self, *args: str) -> str:
        done = subprocess.run([*_tuesday(), *args], cwd=self.dir, env=self.env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise TuesdayError(f"{self.name}: tuesday {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.processes.clear()


def wait_for(check: Callable[[], object], what: str, timeout: float = 600.0, hosts: list[Host] = ()):
    """Poll check() until it returns something true; a host process that died ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for host in hosts:
            for proc in host.processes:
                if proc.poll() is not None:
                    raise TuesdayError(f"{host.name}: {' '.join(proc.args[-3:])} exited ({proc.returncode}) "
                                       f"while waiting for {what}; see {host.dir}")
        if time.monotonic() > deadline:
            raise TuesdayError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


def web_healthy(url: str) -> bool:
    """Whether `tuesday serve` at url answers /healthz with 200 (its store and Redis answer)."""
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class ThreeHosts:
    """Start web, CPU and GPU hosts under `root` against shared services; stop them on exit."""

    def __init__(self, root: Path, *, shared: dict[str, str], slack_url: str, web_port: int,
                 cpu: dict[str, str] | None = None, gpu: dict[str, str] | None = None):
        self.signing, self.webhook = secrets.token_hex(16), secrets.token_hex(16)
        services = {k: v for k, v in shared.items() if k != "TUESDAY_DATABASE_URL"}
        slack = {"TUESDAY_SLACK_BOT_TOKEN": "xoxb-hosts-demo", "TUESDAY_SLACK_API_URL": slack_url,
                 "TUESDAY_TRIAGE_CHANNEL": CHANNEL}
        sql = {"TUESDAY_DATABASE_URL": shared["TUESDAY_DATABASE_URL"]}
        self.web = Host("web", root, {**services, **sql, **slack, "TUESDAY_SLACK_SIGNING_SECRET": self.signing,
                                      "TUESDAY_GENERIC_WEBHOOK_SECRET": self.webhook, "TUESDAY_MANAGERS": MANAGER,
                                      "TUESDAY_ADMINS": ADMIN, "TUESDAY_LABELLERS": AGENT, "TUESDAY_RETRAIN_AFTER_LABELS": "0"})
        # The CPU host signs train jobs; the GPU host holds only the public key that checks them.
        signing, verifying = new_key_pair()
        self.cpu = Host("cpu", root, {**services, **sql, **slack, "TUESDAY_RETRAIN_AFTER_LABELS": "0",
                                      "TUESDAY_JOB_SIGNING_KEY": signing, **(cpu or {})})
        self.gpu = Host("gpu", root, {**services, "TUESDAY_JOB_VERIFY_KEY": verifying, **(gpu or {})})  # Redis, the bucket
        self.hosts = [self.web, self.cpu, self.gpu]
        self.url = f"http://127.0.0.1:{web_port}"
        self.port = web_port

    def __enter__(self) -> ThreeHosts:
        self.web.run("db", "upgrade")  # migrations first, as in a release
        self.web.start("serve", "--port", str(self.port))
        self.cpu.start("worker", "--queue", "suggest")
        self.gpu.start("worker", "--queue", "train")
        wait_for(self._web_up, "the web host's /healthz", timeout=120, hosts=self.hosts)
        return self

    def __exit__(self, *exc) -> None:
        for host in self.hosts:
            host.stop()

    def _web_up(self) -> bool:
        return web_healthy(self.url)

    def wait(self, check, what: str, timeout: float = 600.0):
        return wait_for(check, what, timeout, self.hosts)

    def agent(self, http: httpx.Client):
        from bot.demo.online import Agent

        return Agent(http, self.signing)

    def send_ticket(self, http: httpx.Client, external_id: str, text: str) -> httpx.Response:
        """A helpdesk ticket through the signed generic webhook."""
        from bot.intake import GENERIC_SIGNATURE, GENERIC_TIMESTAMP, generic_signature

        body = json.dumps({"id": external_id, "subject": text[:60], "text": text}).encode()
        ts = str(int(time.time()))
        return http.post("/webhooks/generic", content=body, headers={
            "Content-Type": "application/json", GENERIC_TIMESTAMP: ts,
            GENERIC_SIGNATURE: generic_signature(self.webhook, ts, body)})


def _step(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


def _finished_run(runtime, run_id: int):
    from bot.store.runs import get_run

    run = get_run(runtime.sessions, run_id)
    return run if run is not None and run.status in ("promoted", "kept", "passed", "failed") else None


def _suggestion_for(runtime, source: str, external_id: str):
    """The ticket's posted suggestion of the routing task (its message carries the other fields too)."""
    from sqlalchemy import select

    from bot.store.tickets import Suggestion, Ticket

    with runtime.sessions() as session:
        return session.scalar(select(Suggestion).join(Ticket, Ticket.id == Suggestion.ticket_id)
                              .where(Ticket.source == source, Ticket.external_id == external_id,
                                     Suggestion.task == runtime.task.name, Suggestion.slack_ts.is_not(None)))


def _fields_of(runtime, ticket_id: int) -> dict[str, str]:
    """{task: model version} of every other field suggested for the ticket."""
    from sqlalchemy import select

    from bot.store.tickets import Suggestion

    with runtime.sessions() as session:
        return {s.task: s.model_version for s in session.scalars(
            select(Suggestion).where(Suggestion.ticket_id == ticket_id, Suggestion.task != runtime.task.name))}


def _feedback_count(runtime) -> int:
    from sqlalchemy import func, select

    from bot.store.feedback import Feedback

    with runtime.sessions() as session:
        return session.scalar(select(func.count(Feedback.id)))


def _retrain(three: ThreeHosts, runtime, agent, who: str, text: str = "retrain") -> list[dict]:
    """`/tuesday retrain [task]`: one run per task it covers, each waited for; the runs, in order."""
    reply = agent.slash(who, text)
    click.echo(f"  {who}: {reply}")
    done = []
    for part in reply.split("queued as run ")[1:]:
        run_id = int(part.split(".")[0])
        run = three.wait(lambda: _finished_run(runtime, run_id), f"retrain run {run_id}")
        click.echo(f"  run {run.id} ({run.task}): {run.status} {run.candidate_version or ''} ({run.why or run.error})")
        if run.status == "failed":  # nothing after it can come: stop now, not after the next 10-minute wait
            raise TuesdayError(f"retrain run {run.id} ({run.task}) failed: {run.error or run.why}; the demo stops")
        done.append(run.to_dict())
    return done


def drive(three: ThreeHosts, runtime, *, first_rows: list[dict], later_rows: list[dict], tickets: list[dict],
          bases: tuple[str, ...] = tuple(n.name for n in BUILT_IN_NOTES)) -> dict:
    """The loop across the three hosts (four tickets: one before any model); returns what happened at each step.

    Every task of the deployment is retrained twice (the first `/tuesday retrain` builds each one's
    first version, the second a better one); then the admin rolls back the *second* task alone (the
    demo's urgency), and the routing task's production stays where its own gate put it.
    bases: the names of the base models the GPU host trains from, which the admin approves first.
    """
    from bot.slack.blocks import ACCEPT, CHANGE, option_value
    from bot.slack.fields import ACCEPT_ALL

    out: dict = {"runs": [], "suggestions": []}
    with httpx.Client(base_url=three.url, timeout=30) as http:
        agent = three.agent(http)

        _step(f"web host: import {len(first_rows)} labelled examples")
        (three.web.dir / "first.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first_rows))
        click.echo("  " + three.web.run("import", "first.jsonl", "--source", "hosts").strip())

        def send(row: dict) -> None:
            answer = three.send_ticket(http, row["id"], row["text"])
            click.echo(f"  webhook: {answer.status_code} {answer.json()}")

        def posted(row: dict) -> dict:
            row_ = three.wait(lambda: _suggestion_for(runtime, "generic", row["id"]), f"a suggestion for {row['id']}")
            click.echo(f"  cpu host posted {row_.label or '(asks for a label)'} {100 * row_.confidence:.0f}% "
                       f"by {row_.model_version} for {row['id']}")
            found = {"ticket": row["id"], "id": row_.id, "label": row_.label, "model_version": row_.model_version,
                     "slack_ts": row_.slack_ts, "fields": _fields_of(runtime, row_.ticket_id)}
            out["suggestions"].append(found)
            return found

        def suggest(row: dict) -> dict:
            send(row)
            return posted(row)

        _step("admin: /tuesday base approve, for each base model the GPU host trains from")
        for name in bases:
            click.echo(f"  {ADMIN}: " + agent.slash(ADMIN, f"base approve {name}").splitlines()[0])

        _step("a webhook ticket before any model exists: it waits")
        early, tickets = tickets[0], tickets[1:]
        send(early)

        _step("manager: /tuesday retrain → cpu snapshots → gpu trains and uploads → cpu gates (one run per task)")
        out["runs"] += _retrain(three, runtime, agent, MANAGER)
        posted(early)  # the first promotion queued the waiting ticket

        _step("a webhook ticket: the cpu host downloads the production version, verifies it, suggests")
        first = suggest(tickets[0])
        if first["label"] is not None:
            action = {"type": "button", "action_id": ACCEPT_ALL if len(runtime.tasks) > 1 else ACCEPT,
                      "value": str(first["id"])}
        else:  # Tuesday asked for a label: the agent picks the ticket's own
            action = {"type": "static_select", "action_id": CHANGE, "selected_option": {
                "text": {"type": "plain_text", "text": tickets[0]["label"]},
                "value": option_value(first["id"], tickets[0]["label"])}}
        agent.click(SimpleNamespace(id=first["id"], slack_ts=first["slack_ts"]), action, AGENT)
        three.wait(lambda: _feedback_count(runtime) > 0, "the click to be stored")
        click.echo(f"  {AGENT} clicked {'Accept' if first['label'] else 'Change label'}; the web host stored it")

        _step(f"web host: {len(later_rows)} more labelled examples; a second retrain")
        (three.web.dir / "later.jsonl").write_text("".join(json.dumps(r) + "\n" for r in later_rows))
        click.echo("  " + three.web.run("import", "later.jsonl", "--source", "hosts").strip())
        out["runs"] += _retrain(three, runtime, agent, MANAGER)
        suggest(tickets[1])

        # The task rolled back: the second one when there are several (the first keeps its newer version).
        task = runtime.tasks.names[-1]
        first, second = [[r for r in out["runs"] if r["task"] == task][i] for i in (0, 1)]
        if second["status"] == "promoted":
            named = f"{task} " if len(runtime.tasks) > 1 else ""
            _step(f"admin: /tuesday rollback {named}{first['candidate_version']} from the web host")
            out["rollback"] = agent.slash(ADMIN, f"rollback {named}{first['candidate_version']} hosts demo")
            click.echo(f"  {out['rollback']}")
            suggest(tickets[2])
        else:
            click.echo(f"\nthe second version of {task} was kept, so there is nothing to roll back")
        _step("/tuesday status")
        click.echo(agent.slash(ADMIN, "status"))
    return out


def local_bucket(rt) -> None:
    """Create the demo's bucket when the S3 endpoint is on this machine (a moto or MinIO for the demo) and
    it lacks it; then check the store as every host does at start (one clear error otherwise)."""
    from urllib.parse import urlsplit

    from inference.artifacts import ArtifactError

    settings, store = rt.settings, rt.registry.store
    try:
        store.check(write=True)
        return
    except ArtifactError as exc:
        host = urlsplit(settings.s3_endpoint_url or "").hostname
        if "does not exist" not in str(exc) or host not in ("127.0.0.1", "localhost", "::1"):
            raise
    click.echo(f"creating the bucket {store.bucket!r} on the local S3 endpoint {settings.s3_endpoint_url}")
    store.client.create_bucket(Bucket=store.bucket)
    store.check(write=True)


def run_hosts_demo(rt, *, root: Path, config_file: Path | None = None) -> dict:
    """`tuesday demo --hosts` on this machine's Redis, PostgreSQL and S3 endpoint (from the settings)."""
    from bot.demo.local_slack import LocalSlack
    from bot.demo.online import _free_port, echo
    from bot.runtime import Runtime
    from bot.settings import Settings
    from inference.task import demo_examples_path

    s = rt.settings
    missing = [name for name, value in (("TUESDAY_DATABASE_URL", s.database_url), ("TUESDAY_REDIS_URL", s.redis_url),
                                        ("TUESDAY_ARTIFACTS_URL", s.artifacts_url)) if not value]
    if missing or not s.artifacts_url.startswith("s3://"):
        raise TuesdayError("the three hosts share nothing but services: set " + ", ".join(missing or [
            "TUESDAY_ARTIFACTS_URL=s3://..."]) + " (see docs/operations.md; e.g. `moto_server -p 5000` and "
            "TUESDAY_S3_ENDPOINT_URL=http://127.0.0.1:5000 for a local S3 API)")
    local_bucket(rt)
    shared = {f"TUESDAY_{k.upper()}": str(getattr(s, k)) for k in (
        "database_url", "redis_url", "artifacts_url", "s3_endpoint_url", "s3_region", "s3_access_key_id",
        "s3_secret_access_key", "threads")}
    rows = [json.loads(line) for line in demo_examples_path().read_text(encoding="utf-8").splitlines()]
    from inference.splits import in_holdout

    holdout = [r for r in rows if in_holdout(r["text"], s.holdout_fraction)]
    tickets = [{"id": f"hosts-ticket-{r['id']}", "text": r["text"], "label": r["label"]} for r in holdout[:4]]
    slack = LocalSlack(echo=echo).start()
    shutil.rmtree(root, ignore_errors=True)
    config = str((config_file or HOSTS_CONFIG).resolve())
    try:
        with ThreeHosts(root, shared=shared, slack_url=slack.url, web_port=_free_port(),
                        cpu={"TUESDAY_RETRAIN_CONFIG": config}) as three:
            observer = Runtime(Settings(**{k.removeprefix("TUESDAY_").lower(): v for k, v in three.web.env.items()
                                           if k.startswith("TUESDAY_")}))
            return drive(three, observer, first_rows=rows[: len(rows) // 2], later_rows=rows[len(rows) // 2:],
                         tickets=tickets)
    finally:
        slack.stop()
