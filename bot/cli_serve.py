"""`tuesday serve` (the webhook endpoints) and `tuesday worker` (RQ workers for suggest and train)."""

from __future__ import annotations

import os

import click

from bot.runtime import Runtime


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.pass_obj
def serve(rt: Runtime, host: str, port: int) -> None:
    """Serve the helpdesk webhooks and /healthz over HTTP."""
    import uvicorn

    from bot.queues import Queues
    from bot.web import create_app

    queues = Queues.from_settings(rt.settings)
    try:
        uvicorn.run(create_app(rt, queues), host=host, port=port)
    finally:
        queues.close()


@click.command()
@click.option("--queue", "queue_name", type=click.Choice(["suggest", "train"]), default="suggest", show_default=True,
              help="Which queue to work on.")
@click.option("--burst", is_flag=True, help="Work until the queue is empty, then exit.")
@click.pass_obj
def worker(rt: Runtime, queue_name: str, burst: bool) -> None:
    """Run jobs from a queue: suggestions on CPU, or training on a GPU node."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from bot.queues import Queues

    # Jobs build their dependencies from TUESDAY_* variables; hand them --data-dir/--task too.
    os.environ["TUESDAY_DATA_DIR"] = str(rt.settings.data_dir)
    if rt.settings.task_file:
        os.environ["TUESDAY_TASK_FILE"] = str(rt.settings.task_file)
    queues = Queues.from_settings(rt.settings)
    # SimpleWorker runs jobs in this process: no fork, so CUDA stays usable for training, and
    # the suggest worker keeps its loaded model between tickets (a forked child would not).
    # with_scheduler runs the delayed retries that queues.enqueue_suggest asks for.
    try:
        SimpleWorker([queues[queue_name]], connection=queues.connection, serializer=JSONSerializer).work(
            burst=burst, with_scheduler=True)
    finally:
        queues.close()
