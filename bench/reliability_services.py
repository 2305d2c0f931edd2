"""The services Tuesday's hosts share, run by the reliability bench so that it may kill and restart them.

Redis is always a redis-server of the bench's own on a free port. PostgreSQL is either a server
of the bench's own (initdb into a temporary folder: restarting it disturbs nobody) or the
machine's cluster at 127.0.0.1:5432 (restarting that one interrupts everyone who uses it).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from redis import Redis
from redis.exceptions import RedisError

from bot.demo.online import _free_port


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


class RedisServer:
    """A redis-server without persistence on a free port: a SIGKILL loses everything it held, as a crash would."""

    def __init__(self, log: Path):
        self.port, self.log = _free_port(), log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--daemonize", "no"],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        _wait(self._answers, f"redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; the queues are gone."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def flush(self) -> None:
        Redis.from_url(self.url).flushall()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except RedisError:
            return False


class Postgres:
    """Create, copy and drop databases on a PostgreSQL server reached as user postgres over TCP."""

    host, port = "127.0.0.1", 5432

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction.
        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres", connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
        finally:
            conn.close()

    def create(self, database: str, template: str | None = None) -> str:
        """A fresh database (a copy of template when given); returns its SQLAlchemy URL."""
        self.drop(database)
        self._admin(f'CREATE DATABASE "{database}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(database)

    def drop(self, database: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def answers(self) -> bool:
        try:
            psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres",
                             connect_timeout=1).close()
            return True
        except psycopg2.OperationalError:
            return False

    def start(self) -> Postgres:
        return self

    def stop(self) -> None:
        pass


class SharedPostgres(Postgres):
    """The machine's cluster at 127.0.0.1:5432; restart() interrupts every other user of it for a few seconds."""

    name = "shared (127.0.0.1:5432)"

    def restart(self) -> None:
        version = sorted(os.listdir("/etc/postgresql"))[0]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                       capture_output=True)


def _pg_bin(tool: str) -> str:
    found = shutil.which(tool) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{tool} not found: install PostgreSQL's server package, or use --postgres shared")
    return found


class PrivatePostgres(Postgres):
    """A PostgreSQL server of the bench's own: initdb in a temporary folder, a free port, removed on stop()."""

    name = "private (initdb by the bench)"

    def __init__(self):
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tuesday-bench-pg-"))
        # The server refuses to run as root; as root, run it as the postgres user.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres")

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self._as, _pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"),
                        "-w", "-t", "60", *args], check=True, capture_output=True)

    def start(self) -> PrivatePostgres:
        subprocess.run([*self._as, _pg_bin("initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                        "--auth=trust"], check=True, capture_output=True)
        self._ctl("-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}", "start")
        _wait(self.answers, f"PostgreSQL on port {self.port}")
        return self

    def restart(self) -> None:
        # -m fast, as pg_ctlcluster restart does: open connections are cut, not waited for.
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        try:
            self._ctl("-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres(kind: str) -> Postgres:
    """The PostgreSQL server the bench uses: "private" or "shared"."""
    return PrivatePostgres() if kind == "private" else SharedPostgres()
