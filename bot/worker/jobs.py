"""The jobs a Tuesday worker runs, looked up by the dotted name they were queued under; nothing else runs.

RQ imports whatever function a job names, so write access to Redis would be code execution. A
Tuesday worker looks the name up in JOBS instead: a job naming anything else fails without running.

Names of the last release stay in LAST_RELEASE for one release, so jobs already sitting in Redis
when the hosts are upgraded still run; remove them in the release after.
"""

from __future__ import annotations

from rq import SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.helpdesk.delivery import DELIVER_JOB, deliver_job, write_back_job
from bot.lifecycle.jobs import CONCLUDE_JOB, PREPARE_JOB, QUEUED_TRAIN_JOB
from bot.lifecycle.retrain import conclude_job, prepare_job
from bot.queues import SUGGEST_JOB
from bot.worker.suggest import suggest_ticket
from bot.worker.train_job import train_job
from inference.errors import TuesdayError

JOBS = {
    SUGGEST_JOB: suggest_ticket,
    PREPARE_JOB: prepare_job,
    CONCLUDE_JOB: conclude_job,
    QUEUED_TRAIN_JOB: train_job,
    DELIVER_JOB: deliver_job,
}

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


def job_function(name: str | None):
    """The function a job name stands for; UnknownJob for anything that is not a Tuesday job."""
    name = LAST_RELEASE.get(name, name)
    if name in JOBS:
        return JOBS[name]
    if name in OLDER:
        return OLDER[name]
    raise UnknownJob(f"{name!r} is not one of Tuesday's jobs; not run")


class TuesdayJob(Job):
    """An RQ job whose function comes from JOBS, never from importing the name it carries."""

    @property
    def func(self):
        return job_function(self.func_name)


class TuesdayWorker(SimpleWorker):
    """rq's SimpleWorker whose command channel thread wakes every second, so a SIGTERM ends it in seconds."""

    PUBSUB_WAKE_S = 1.0

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
    return TuesdayWorker([queues[name] for name in names], connection=queues.connection, serializer=JSONSerializer,
                         job_class=TuesdayJob)
