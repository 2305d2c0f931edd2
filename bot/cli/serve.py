"""`tuesday serve` (the webhook endpoints), `tuesday socket` (Slack over Socket Mode) and `tuesday worker` (RQ workers)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import click
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.queues import WORKER_QUEUES, SchedulerThread
from bot.runtime import Runtime

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes serving the port (each masks tickets on a core of its own); more than 1 needs "
                   "TUESDAY_REDIS_URL (an embedded Redis belongs to one process).")
@click.pass_obj
def serve(rt: Runtime, host: str, port: int, workers: int) -> None:
    """Serve the helpdesk webhooks, Slack clicks (/slack/events), /livez, /readyz and /healthz over HTTP."""
    import uvicorn

    from bot.queues import Queues
    from bot.web.app import create_app

    if workers > 1 and not rt.settings.redis_url:
        raise click.UsageError("--workers above 1 needs TUESDAY_REDIS_URL: every process must share one Redis")
    rt.sessions  # brings the schema up to date (if behind) before the first request
    check_artifacts(rt, write=False)
    if workers > 1:
        # Each process builds its app (and its PII detector) from the environment before it serves.
        export_options(rt.settings)
        uvicorn.run("bot.web.app:app_from_environment", factory=True, host=host, port=port, workers=workers)
        return
    warm_detector()
    queues = Queues.from_settings(rt.settings)
    exit_on_sigterm()
    try:
        uvicorn.run(create_app(rt, queues), host=host, port=port)
    finally:
        queues.close()


def warm_detector() -> None:
    """Build both PII detectors before the first request or job, not during it: the door's (patterns) and
    the full one (spaCy's model, about 3 s; the worker's stage, and the reasons people write in Slack)."""
    from inference.pii import detector, door_detector

    started = time.perf_counter()
    door_detector()
    detector()
    log.info("PII detectors ready in %.1f s", time.perf_counter() - started)


def check_artifacts(rt: Runtime, *, write: bool) -> None:
    """Stop at start, with one clear message, when the artifact store is missing or out of reach."""
    from inference.artifacts import ArtifactError

    try:
        rt.registry.store.check(write=write)
    except ArtifactError as exc:
        raise click.ClickException(str(exc)) from None


def exit_on_sigterm() -> None:
    """Let SIGTERM end the process through SystemExit, so `finally` blocks close what it started."""
    # uvicorn finishes the requests in hand on SIGTERM, then raises the signal again; with the
    # default handler that kills the process before our clean-up, leaving an embedded Redis behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@click.command()
@click.option("--queue", "queue_name", type=click.Choice(sorted(WORKER_QUEUES)), default="suggest", show_default=True,
              help="suggest: a CPU host (suggestions, then retrain snapshots, gate and reports, then helpdesk "
                   "write-backs); train: the GPU node; control or writeback: only those jobs.")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@click.pass_obj
def worker(rt: Runtime, queue_name: str, burst: bool) -> None:
    """Run jobs from a queue: suggestions on CPU, or training on a GPU node."""
    from bot.queues import QueueRefused, Queues, QueueUnreachable
    from bot.worker.jobs import worker as tuesday_worker

    # Jobs build their dependencies from TUESDAY_* variables; hand them --data-dir/--task too.
    export_options(rt.settings)
    check_artifacts(rt, write=True)  # every worker writes: snapshots, candidates, review sheets
    names = WORKER_QUEUES[queue_name]
    if "suggest" in names:
        # The masking stage of the first ticket does not wait for spaCy; built before anything is started
        # (an embedded Redis), so a SIGTERM meanwhile leaves nothing behind.
        warm_detector()
    queues = Queues.from_settings(rt.settings)
    try:
        queues.check()  # a refused password or TLS on one side only is a setting to fix: say which, and stop
    except QueueRefused:
        queues.close()
        raise
    except QueueUnreachable as exc:  # an outage: the loop below works once Redis answers
        log.warning("%s; working once it answers", exc)
    # The GPU node holds no SQL credentials: only hosts that work "control" touch the store.
    upkeep = None
    if "control" in names:
        from bot.runtime import slack_client
        from bot.worker.upkeep import Upkeep

        rt.sessions  # brings the schema up to date (if behind) before the first job
        # Once now (so a burst run sees what is due), then every minute while working.
        upkeep = Upkeep(rt, queues, slack_client(rt.settings))
        upkeep.tick()
        if not burst:
            upkeep.start()
    # The scheduler thread runs the delayed retries that queues.enqueue_suggest asks for.
    exit_on_sigterm()  # between work loops; rq handles SIGTERM itself while working (warm shutdown)
    scheduler = SchedulerThread(queues, names).start()
    try:
        delay = 1.0
        while True:
            try:
                tuesday_worker(queues, names).work(burst=burst, with_scheduler=False)
                break
            except RedisConnectionError as exc:
                # rq gives up when Redis goes away in the middle of finishing a job; the process
                # stays and works again once Redis is back (the store says what is left to do).
                if burst:
                    raise
                log.warning("Redis unreachable (%s); working again in %.0f s", exc, delay)
                time.sleep(delay)
                delay = min(2 * delay, 30.0)
    finally:
        scheduler.stop()
        if upkeep is not None:
            upkeep.stop()
        queues.close()


def export_options(settings) -> None:
    """Put --data-dir and --task where jobs run in this process look for them (TUESDAY_* variables)."""
    os.environ["TUESDAY_DATA_DIR"] = str(settings.data_dir)
    if settings.task_file:
        os.environ["TUESDAY_TASK_FILE"] = str(settings.task_file)


def socket_handler(rt: Runtime, queues):
    """The bolt app of `tuesday serve`, wired to Slack over Socket Mode instead of HTTP (nothing connects yet)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.slack.app import create_slack_app, web_client

    check_socket_tokens(rt.settings)
    # Socket Mode requests arrive over the app token's websocket, so bolt skips the signature
    # check; the signing secret may be empty here.
    client = web_client(rt.settings)
    return SocketModeHandler(create_slack_app(rt, queues, client), app_token=rt.settings.slack_app_token,
                             web_client=client)


def check_socket_tokens(settings) -> None:
    """Refuse, with what to set, when a token Socket Mode needs is missing or of the wrong kind."""
    missing = [name for name, value in (("TUESDAY_SLACK_BOT_TOKEN", settings.slack_bot_token),
                                        ("TUESDAY_SLACK_APP_TOKEN", settings.slack_app_token)) if not value]
    if missing:
        raise click.ClickException(f"Socket Mode needs {' and '.join(missing)} (see deploy/README.md).")
    if not settings.slack_app_token.startswith("xapp-"):
        raise click.ClickException("TUESDAY_SLACK_APP_TOKEN must be an app-level token (xapp-...), "
                                   "made under Basic Information > App-Level Tokens with connections:write.")


@click.command()
@click.pass_obj
def socket(rt: Runtime) -> None:
    """Connect to Slack over Socket Mode (no public URL): the same listeners as `tuesday serve`'s /slack/events."""
    from bot.queues import Queues

    check_socket_tokens(rt.settings)  # before Redis, so a missing token is the first thing said
    queues = Queues.from_settings(rt.settings)
    exit_on_sigterm()
    try:
        socket_handler(rt, queues).start()
    finally:
        queues.close()
