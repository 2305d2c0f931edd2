"""The jobs a Tuesday worker runs, looked up by the dotted name they were queued under; nothing else runs.

RQ imports whatever function a job names, so write access to Redis would be code execution. A
Tuesday worker looks the name up in JOBS instead: a job naming anything else fails without running,
and so does one carrying callbacks (more dotted names rq would import) or webhooks. Jobs are read with
the JSON serializer only (rq's default is pickle). What the GPU node trusts in a train job's
arguments is signed besides (inference.job_signing).

Names of the last release stay in LAST_RELEASE for one release, so jobs already sitting in Redis
when the hosts are upgraded still run; remove them in the release after.
"""

from __future__ import annotations

import logging
import sys

from rq import SimpleWorker
from rq.job_lifecycle import call_exception_handlers
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.error_ids import logged, ours, withheld_traceback
from bot.helpdesk.delivery import DELIVER_JOB, deliver_job, write_back_job
from bot.lifecycle.jobs import CONCLUDE_JOB, PREPARE_JOB, QUEUED_TRAIN_JOB
from bot.lifecycle.retrain import conclude_job, prepare_job
from bot.queues import SUGGEST_JOB
from bot.worker.suggest import suggest_ticket
from bot.worker.train_job import train_job
from inference.errors import TuesdayError

log = logging.getLogger(__name__)

JOBS = {
    SUGGEST_JOB: suggest_ticket,
    PREPARE_JOB: prepare_job,
    CONCLUDE_JOB: conclude_job,
    QUEUED_TRAIN_JOB: train_job,
    DELIVER_JOB: deliver_job,
}

# The queue each job is queued on; found on another, it fails unrun: the GPU node runs only training (no
# SQL job there), and a CPU host never trains, even on a train job copied onto its queue.
HOME = {SUGGEST_JOB: "suggest", PREPARE_JOB: "control", CONCLUDE_JOB: "control", QUEUED_TRAIN_JOB: "train",
        DELIVER_JOB: "writeback"}

# One release: the dotted paths the last release queued its jobs under (bot/ was flat then).
LAST_RELEASE = {
    "bot.suggest.suggest_ticket": SUGGEST_JOB,
    "bot.retrain.prepare_job": PREPARE_JOB,
    "bot.retrain.conclude_job": CONCLUDE_JOB,
    "bot.jobs.train_job": QUEUED_TRAIN_JOB,
}
OLDER = {"bot.helpdesk.write_back_job": write_back_job}  # write-backs recorded before the outbox (revision 0003)


class UnknownJob(TuesdayError):
    """A queued job names a function that is not one of Tuesday's jobs."""


def job_function(name: str | None, queue: str | None = None):
    """The function a job name stands for (on `queue`, when given); UnknownJob for anything that is not a Tuesday job
    or not one of that queue's."""
    name = LAST_RELEASE.get(name, name)
    home = HOME.get(name)  # OLDER's write-backs were queued on "suggest" then: they run where they wait
    if queue is not None and home is not None and queue != home:
        raise UnknownJob(f"{name!r} runs on the {home} queue, not on {queue}; not run")
    if name in JOBS:
        return JOBS[name]
    if name in OLDER:
        return OLDER[name]
    raise UnknownJob(f"{name!r} is not one of Tuesday's jobs; not run")


class TuesdayJob(Job):
    """An RQ job whose function comes from JOBS, never from importing the name it carries.

    rq imports three more names a job may carry (its success, failure and stopped callbacks) and
    sends HTTP requests to the webhooks it may carry; Tuesday queues neither, so a job carrying any
    fails before its function runs, and none of them is ever imported or called.
    """

    @property
    def func(self):
        extras = self.extras()
        if extras:
            raise UnknownJob(f"job {self.id} carries {', '.join(extras)}; Tuesday's jobs carry none; not run")
        return job_function(self.func_name, self.origin)

    def extras(self) -> list[str]:
        """What this job carries besides a function and its arguments (callbacks, webhooks), by kind."""
        found = [f"an on_{kind} callback" for kind, name in (("success", self._success_callback_name),
                                                              ("failure", self._failure_callback_name),
                                                              ("stopped", self._stopped_callback_name)) if name]
        return found + (["webhooks"] if self.webhooks else [])

    # rq resolves these by import_attribute; here they are never resolved.
    @property
    def success_callback(self):
        return None

    @property
    def failure_callback(self):
        return None

    @property
    def stopped_callback(self):
        return None

    def send_webhooks(self, status, *, exc_string=None) -> None:
        # A webhook is a URL anyone with Redis write access could point at an internal service, and a
        # failed job's payload carries its traceback: never sent.
        return None


class TuesdayWorker(SimpleWorker):
    """rq's SimpleWorker whose command channel thread wakes every second, so a SIGTERM ends it in seconds."""

    PUBSUB_WAKE_S = 1.0

    # rq logs a failed job's whole traceback and keeps it in Redis, message included; a foreign error's message
    # can quote a ticket (PostgreSQL's "Failing row contains (…)"). Logged and kept instead: its type, an error id
    # and its frames (bot.error_ids); our own errors (TuesdayError) keep their message, which the reports show.
    def handle_exception(self, job, *exc_info):
        exc = exc_info[1]
        if exc is None or ours(exc):
            return super().handle_exception(job, *exc_info)
        eid = logged(log, exc, f"job {job.id} ({job.origin})", level=logging.ERROR)
        self._withheld = (exc, withheld_traceback(exc, eid))
        call_exception_handlers(self._exc_handlers, job, *exc_info)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        withheld, self._withheld = getattr(self, "_withheld", None), None
        if withheld is not None and exc_string and withheld[0] is sys.exc_info()[1]:
            exc_string = withheld[1]
        return super().handle_job_failure(job, queue, started_job_registry=started_job_registry,
                                          exc_string=exc_string, execution=execution)

    def subscribe(self):
        # rq listens on its command channel with a 60 s poll; redis-py 8's PubSubWorkerThread.stop()
        # joins that thread, which, once unsubscribed, can sit out the whole poll: a warm shutdown
        # then took a minute (seen under load), past a container's grace period.
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=self.PUBSUB_WAKE_S, daemon=True,
                                                       exception_handler=self._pubsub_exception_handler)


def worker(queues, names) -> SimpleWorker:
    """A worker over the named queues (in priority order) that runs only Tuesday's jobs.

    SimpleWorker runs jobs in this process: no fork, so CUDA stays usable for training, and the
    suggest worker keeps its loaded model between tickets (a forked child would not).
    """
    # Queue names, not Queue objects: rq then builds each queue (and the registries its upkeep cleans,
    # which call an abandoned job's on_failure) with job_class=TuesdayJob too.
    return TuesdayWorker([queues[name].name for name in names], connection=queues.connection,
                         serializer=JSONSerializer, job_class=TuesdayJob)
