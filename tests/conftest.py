"""Shared fixtures: isolated environment, a tiny random model, a trained tiny version, stores."""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.engine import Engine

from inference.task import Task, demo_examples_path, demo_task_path, load_task
from tests.tiny_model import build_tiny_bert, build_tiny_llama

TINY_CONFIG = {"epochs": 3, "batch_size": 8, "learning_rate": 0.05, "rank": 8, "alpha": 16, "dropout": 0.0}


# Every engine that ever connected, so each test can let go of its idle connections when it ends.
_ENGINES: weakref.WeakSet = weakref.WeakSet()


@event.listens_for(Engine, "engine_connect")
def _seen(connection) -> None:
    _ENGINES.add(connection.engine)


@pytest.fixture(autouse=True)
def closed_connections():
    """Each test's store engines close their pooled connections when it ends.

    A test's Runtime, app and threads keep its engines reachable after the test, and each pool kept
    its connections: a long run held dozens of idle PostgreSQL connections, and a later test that opens
    many at once met "too many clients" (max_connections 100). dispose() closes the idle ones only; an
    engine still in use opens new ones as it needs them."""
    yield
    for engine in list(_ENGINES):
        engine.dispose()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No TUESDAY_* variable or .env file from the developer's shell leaks into a test.

    A test runs with one task, the demo's routing task (topic), unless it asks for the demo's two
    (`two_tasks`): most tests are about one field's life; tests/test_fields*.py, the demos' and the
    three hosts' tests are about several."""
    for key in list(os.environ):
        if key.startswith("TUESDAY_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUESDAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TUESDAY_THREADS", "2")
    # Clicks in tests train unless a test says otherwise (tests/test_labellers.py tests the default: held).
    monkeypatch.setenv("TUESDAY_LABELLERS", "everyone")
    # Scrapes in tests need no token unless a test says otherwise (tests/test_metrics_access.py tests the default: closed).
    monkeypatch.setenv("TUESDAY_METRICS_OPEN", "true")
    one = tmp_path / "topic-task.yaml"
    one.write_text(load_task(demo_task_path()).to_yaml(), encoding="utf-8")
    monkeypatch.setenv("TUESDAY_TASK_FILE", str(one))


@pytest.fixture
def two_tasks(monkeypatch):
    """The built-in demo deployment as it ships: topic (routing) and urgency."""
    monkeypatch.delenv("TUESDAY_TASK_FILE")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> tuple[Path, Path]:
    """(HF folder, f16 GGUF) of a tiny random Llama with SmolLM2's tokenizer."""
    built = build_tiny_llama(tmp_path_factory.mktemp("tiny"))
    TINY_PATHS["tiny-base"] = built[1]
    return built


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """HF folder of a tiny random BERT with all-MiniLM-L6-v2's tokenizer."""
    TINY_PATHS["tiny-bert"] = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    return TINY_PATHS["tiny-bert"]


@pytest.fixture(scope="session")
def task() -> Task:
    return load_task(demo_task_path())


@pytest.fixture(scope="session")
def demo_rows() -> list[dict]:
    return [json.loads(line) for line in demo_examples_path().read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def trained_version(tiny_base, tiny_bert, task, demo_rows, tmp_path_factory):
    """A tiny decoder trained on a slice of the demo data (evidence from the tiny BERT), committed to a registry."""
    from inference.registry import Registry
    from inference.splits import in_holdout
    from trainer.config import TrainConfig
    from trainer.pipeline import build_version

    train = [r for r in demo_rows if not in_holdout(r["text"])][:120]
    holdout = [r for r in demo_rows if in_holdout(r["text"])][:60]
    registry = Registry.local(tmp_path_factory.mktemp("registry"))
    version = build_version(registry, task, tiny_base[1], train, holdout, TrainConfig(**TINY_CONFIG),
                            encoder_base=tiny_bert, progress=False, log=lambda _: None)
    return registry, version, train, holdout


TINY_BASES = ("tiny-base", "tiny-bert")  # base_name() of the tiny GGUF and the tiny BERT folder
TINY_PATHS: dict[str, Path] = {}  # where the session's tiny bases were built (set by their fixtures)


def approve_tiny_bases(sessions) -> None:
    """Record approved license notes for the tiny test bases, as an admin would for a real one: pinned to
    the files the tiny_base and tiny_bert fixtures built (request those fixtures first)."""
    from bot.trail.bases import approve
    from inference.base_models import RESTRICTIONS

    for name in TINY_BASES:
        approve(sessions, name, by="cli:test", path=TINY_PATHS[name], model=name, source="tests/tiny_model.py",
                version="0", obtained="2026-12-02", license="MIT", restrictions={key: "allowed" for key in RESTRICTIONS})


def local_redis(db: int) -> Redis:
    """The test Redis at 127.0.0.1:6379 (database db), or a skip where there is none (CI must have one)."""
    conn = Redis(host="127.0.0.1", port=6379, db=db, socket_connect_timeout=2)
    try:
        conn.ping()
    except RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Redis at 127.0.0.1:6379 is not reachable")
        pytest.skip("Redis not running on 127.0.0.1:6379")
    return conn


@pytest.fixture
def redis_url(request):
    """A flushed database on the local Redis: the test module's REDIS_DB (9 if it names none)."""
    db = getattr(request.module, "REDIS_DB", 9)
    conn = local_redis(db)
    conn.flushdb()
    yield f"redis://127.0.0.1:6379/{db}"
    conn.flushdb()


def postgres_url() -> str | None:
    """A fresh database on the local PostgreSQL, or None where there is none (CI must have one)."""
    try:
        import psycopg2
    except ImportError:
        psycopg2 = None
    # TESTS_PG_DB: another database on the same server, for runs side by side that must not share one.
    dbname = os.environ.get("TESTS_PG_DB", "test")
    if psycopg2 is not None:
        try:
            psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=dbname, connect_timeout=3).close()
            return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{dbname}"
        except psycopg2.OperationalError:
            pass
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but PostgreSQL at 127.0.0.1:5432 (user postgres, db test) is not reachable")
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A SQLAlchemy URL of an empty store, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not running on 127.0.0.1:5432")
    from sqlalchemy import create_engine, text

    import bot.helpdesk.outbox  # noqa: F401
    import bot.lifecycle.runs  # noqa: F401  (their tables join Base.metadata, so drop_all drops them too)
    import bot.lifecycle.shadow  # noqa: F401
    import bot.monitor.alerts  # noqa: F401
    import bot.store.production  # noqa: F401
    import bot.store.trail  # noqa: F401
    import bot.store.link_epochs  # noqa: F401
    import bot.store.promise_checks  # noqa: F401
    from bot.store.base import Base

    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    yield url


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's standalone S3 server on a free local port: a real S3 API over HTTP."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but moto_server is not installed (pip install 'moto[server]')")
        pytest.skip("moto_server not installed")
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"moto_server did not start on {url}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


S3_KEYS = {"TUESDAY_S3_ACCESS_KEY_ID": "testing", "TUESDAY_S3_SECRET_ACCESS_KEY": "testing",
           "TUESDAY_S3_REGION": "us-east-1"}


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh bucket on the S3 test server; returns its name."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", f"t-{request.node.name.lower()}")[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_env(monkeypatch, s3_endpoint, s3_bucket) -> str:
    """TUESDAY_* settings that put this test's artifacts in its own bucket; returns the artifacts URL."""
    url = f"s3://{s3_bucket}/tuesday"
    for key, value in {**S3_KEYS, "TUESDAY_S3_ENDPOINT_URL": s3_endpoint, "TUESDAY_ARTIFACTS_URL": url}.items():
        monkeypatch.setenv(key, value)
    return url


@pytest.fixture
def stand_in_jobs(monkeypatch):
    """time.sleep, builtins.int and json.loads as Tuesday jobs in this process, for tests about workers."""
    from bot.worker.jobs import JOBS
    from tests.stand_ins import STAND_INS

    for name, function in STAND_INS.items():
        monkeypatch.setitem(JOBS, name, function)
