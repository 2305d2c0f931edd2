"""Every wait has a bound: a full connection pool is a 503 with Retry-After (not a 500), a long statement is
cancelled on PostgreSQL, `/tuesday status` waits at most 1.5 s on an artifact store that does not answer
(real SQLite and PostgreSQL, real Redis; the silent bucket is a real TCP socket that never answers)."""

from __future__ import annotations

import socket
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bot.lifecycle.status import gather_status, status_text
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.base import make_session_factory
from bot.store.production import ProductionPointer
from bot.web.app import create_app
from inference import artifacts
from tests.conftest import S3_KEYS, postgres_url
from tests.test_web import GENERIC_SECRET, post_generic

REDIS_DB = 10


def test_a_full_connection_pool_is_503_with_retry_after(store_url, redis_url, monkeypatch):
    monkeypatch.setenv("TUESDAY_GENERIC_WEBHOOK_SECRET", GENERIC_SECRET)
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    settings = Settings(database_url=store_url)
    runtime = Runtime(settings)
    runtime.__dict__["sessions"] = make_session_factory(store_url, connect_timeout_s=0.5, pool_size=1,
                                                        max_overflow=0)
    client = TestClient(create_app(runtime, Queues.from_settings(settings)))
    with runtime.sessions() as busy:
        busy.execute(text("SELECT 1"))  # holds the pool's only connection, as 15 slow requests did
        started = time.monotonic()
        response = post_generic(client, {"id": "1", "text": "hello"})
        assert time.monotonic() - started < 5  # the pool wait is bounded by TUESDAY_SQL_TIMEOUT_S
    assert (response.status_code, response.json()) == (503, {"error": "store busy, retry later"})
    assert response.headers["Retry-After"] == "2"
    assert post_generic(client, {"id": "1", "text": "hello"}).status_code == 202  # free again: stored


def test_a_statement_longer_than_its_bound_is_cancelled_on_postgresql():
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL here (CI has one)")
    sessions = make_session_factory(url, statement_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="statement timeout"):
        with sessions() as session:
            session.execute(text("SELECT pg_sleep(5)"))
    assert time.monotonic() - started < 3


@pytest.fixture
def silent_bucket(monkeypatch):
    """An S3 endpoint that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    monkeypatch.setattr(artifacts, "S3_READ_TIMEOUT_S", 2)  # the read the status left behind ends soon after
    monkeypatch.setattr(artifacts, "S3_ATTEMPTS", 1)
    for key, value in {**S3_KEYS, "TUESDAY_S3_ENDPOINT_URL": f"http://127.0.0.1:{listener.getsockname()[1]}",
                       "TUESDAY_ARTIFACTS_URL": "s3://tuesday/models"}.items():
        monkeypatch.setenv(key, value)
    yield
    listener.close()


def test_status_answers_in_slacks_time_when_the_artifact_store_does_not(silent_bucket, redis_url,
                                                                                monkeypatch):
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    runtime = Runtime(Settings())
    with runtime.sessions() as session:
        session.add(ProductionPointer(slot=runtime.task.name, version="v4", event_id=1))
        session.commit()
    started = time.monotonic()
    data = gather_status(runtime, Queues.from_settings(runtime.settings))
    assert time.monotonic() - started < 2.5  # Slack's 3 s: answered without waiting out the bucket
    assert data["production"]["version"] == "v4" and data["production"]["metrics"] is None
    assert "artifact store did not answer" in status_text(data) and data["labels_since_training"].startswith("unknown")


def test_a_ticket_is_masked_outside_any_database_session(tmp_path, monkeypatch):
    from inference import pii
    from bot.store.masking import finish_masking
    from bot.store.tickets import Ticket, add_ticket

    sessions = make_session_factory(f"sqlite:///{tmp_path / 'store.db'}")
    pool = sessions.kw["bind"].pool
    seen = []
    door, full = pii.mask_door, pii.mask_fields
    monkeypatch.setattr(pii, "mask_door", lambda text: seen.append(pool.checkedout()) or door(text))
    monkeypatch.setattr(pii, "mask_fields", lambda *texts: seen.append(pool.checkedout()) or full(*texts))
    ticket, created = add_ticket(sessions, source="generic", external_id="1", text="mail j.doe@example.com, Ann Lee",
                                 subject="Hi")
    assert created and len(seen) == 2  # the door's stage: text and subject
    assert finish_masking(sessions, ticket.id) and len(seen) == 3  # the worker's: the fields together
    with sessions() as session:
        assert session.get(Ticket, ticket.id).text == "mail [EMAIL], [PERSON]"
    assert set(seen) == {0}  # no pooled connection held while masking, at either stage


def test_webhooks_beyond_the_masking_bound_are_503_with_retry_after(redis_url, monkeypatch):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from inference import pii

    monkeypatch.setenv("TUESDAY_GENERIC_WEBHOOK_SECRET", GENERIC_SECRET)
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_MASKING_IN_FLIGHT", "1")
    settings = Settings()
    runtime = Runtime(settings)
    runtime.sessions  # the schema, before the requests race
    release, masking = threading.Event(), threading.Event()
    real = pii.mask_door

    def slow(text):  # the first ticket's masking takes long (a huge body, a slow core)
        masking.set()
        release.wait(10)
        return real(text)

    monkeypatch.setattr(pii, "mask_door", slow)
    client = TestClient(create_app(runtime, Queues.from_settings(settings)))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_generic, client, {"id": "1", "text": "first"})
        assert masking.wait(10)
        second = post_generic(client, {"id": "2", "text": "second"})
        release.set()
        assert first.result(timeout=30).status_code == 202
    assert second.status_code == 503 and second.headers["Retry-After"] == "2"
    assert "being masked" in second.json()["error"]
    monkeypatch.setattr(pii, "mask_door", real)
    assert post_generic(client, {"id": "2", "text": "second"}).status_code == 202  # the retry is stored


def test_serve_with_two_workers_runs_two_processes_that_take_webhooks(redis_url, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    from bot.demo.online import _free_port

    port = _free_port()
    env = {**os.environ, "TUESDAY_REDIS_URL": redis_url, "TUESDAY_DATA_DIR": str(tmp_path / "data"),
           "TUESDAY_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}
    exe = str(Path(sys.executable).parent / "tuesday")
    proc = subprocess.Popen([exe, "serve", "--port", str(port), "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("tuesday serve --workers 2 did not answer /livez")
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        servers = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(servers) == 2  # two processes serve the port (besides multiprocessing's resource tracker)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            response = post_generic(http, {"id": "w-1", "text": "hello from a worker"})
        assert response.status_code == 202
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_more_than_one_worker_needs_a_shared_redis(tmp_path):
    from click.testing import CliRunner

    from bot.cli.main import main

    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "serve", "--workers", "2"])
    assert result.exit_code == 2 and "TUESDAY_REDIS_URL" in result.output


def test_a_sqlite_file_store_writes_ahead_so_readers_do_not_wait_for_the_door(tmp_path):
    import sqlite3
    import threading

    from bot.store.tickets import Ticket, add_ticket

    sessions = make_session_factory(f"sqlite:///{tmp_path / 'store.db'}")
    with sqlite3.connect(tmp_path / "store.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: an acked ticket survives a power cut
    writing = sqlite3.connect(tmp_path / "store.db", timeout=0.1, check_same_thread=False)
    writing.execute("BEGIN IMMEDIATE")  # a writer holds the file (the door storing a ticket)
    writing.execute("INSERT INTO tickets (source, external_id, subject, text, created_at) "
                    "VALUES ('generic', 'w', '', '', '2026-12-07 00:00:00')")
    read = []
    reader = threading.Thread(target=lambda: read.append(len(sessions().query(Ticket).all())))
    reader.start()
    reader.join(5)
    assert read == [0]  # a reader (a worker, the dashboard) was answered at once, without the uncommitted row
    writing.rollback()
    writing.close()
    assert add_ticket(sessions, source="generic", external_id="1", text="hello")[1]
