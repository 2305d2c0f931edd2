"""/metrics is closed unless a bearer token or an explicit opening says otherwise, and its store aggregates are
cached: a scrape answers the last values until TUESDAY_METRICS_CACHE_S passes (SQLite and PostgreSQL, real Redis)."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient

from bot.monitor.exporter import metrics_collector, registry_of, scrape
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.app import create_app
from tests import dashboard_data as data
from tests.demo_names import DEMO_TASK
from tests.test_dashboard import NOW, env, families, samples, served  # noqa: F401  (fixtures)

REDIS_DB = 8  # test_dashboard's database: its fixtures are used here
TOKEN = "metrics-token-7f3a9c"


def app_with(served, **settings):  # noqa: F811
    runtime, queues, _ = served
    return TestClient(create_app(Runtime(Settings(**settings)), queues, clock=lambda: NOW))


def suggested(text: str, label: str = data.C) -> float:
    return samples(families(text)["tuesday_suggestions"], "tuesday_suggestions_total")[("v2", label, "suggested")]


def add_suggestions(runtime, n: int) -> None:
    with runtime.sessions() as s:
        for i in range(n):
            ticket = data.Ticket(source="test", external_id=f"late-{time.monotonic_ns()}-{i}", text="x")
            s.add(ticket)
            s.flush()
            s.add(data.Suggestion(task=DEMO_TASK, ticket_id=ticket.id, label=data.C, routing="suggested",
                                  confidence=0.9, model_version="v2", latency_ms=10.0))
        s.commit()


def test_metrics_are_closed_by_default(served, env):  # noqa: F811
    env.delenv("TUESDAY_METRICS_OPEN")  # the test suite's default opening, taken away: the shipped default
    web = app_with(served)
    refused = web.get("/metrics")
    assert refused.status_code == 401 and "TUESDAY_METRICS_TOKEN" in refused.json()["error"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "tuesday_" not in refused.text
    # An empty token is no token: "Bearer " with nothing after it opens nothing.
    assert web.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_metrics_open_only_when_explicitly_set(served, env):  # noqa: F811
    env.delenv("TUESDAY_METRICS_OPEN")
    assert app_with(served, metrics_open=False).get("/metrics").status_code == 401
    opened = app_with(served, metrics_open=True).get("/metrics")
    assert opened.status_code == 200 and "tuesday_suggestions_total" in opened.text
    # A token, once set, is required even where /metrics was opened.
    assert app_with(served, metrics_open=True, metrics_token=TOKEN).get("/metrics").status_code == 401


def test_metrics_need_the_right_bearer_token_and_never_log_it(served, env, caplog):  # noqa: F811
    env.delenv("TUESDAY_METRICS_OPEN")
    web = app_with(served, metrics_token=TOKEN)
    caplog.set_level(logging.DEBUG)
    assert web.get("/metrics").status_code == 401
    assert web.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}).status_code == 401
    assert web.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    ok = web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    names = families(ok.text)
    for name in ("tuesday_suggestions", "tuesday_feedback", "tuesday_production_info", "tuesday_queue_depth",
                 "tuesday_metrics_age_seconds"):
        assert name in names
    assert TOKEN not in caplog.text and TOKEN[:-1] not in caplog.text


def test_a_scrape_answers_the_cached_aggregates_until_the_period_passes(served):  # noqa: F811
    runtime, queues, _ = served
    now = [1000.0]
    collector = metrics_collector(runtime, queues, lambda: NOW, cache_s=30.0, wait_s=10.0, monotonic=lambda: now[0])
    registry = registry_of(collector)
    first = scrape(registry).decode()  # cold: waits (at most wait_s) for the first values
    before = suggested(first)
    assert samples(families(first)["tuesday_metrics_age_seconds"]) == {(): 0.0}

    add_suggestions(runtime, 3)
    now[0] += 29.0
    cached = scrape(registry).decode()
    assert suggested(cached) == before  # the rows are there, the cache is not 30 s old yet
    assert samples(families(cached)["tuesday_metrics_age_seconds"]) == {(): 29.0}
    assert collector.wait_idle(10) and suggested(scrape(registry).decode()) == before  # and no refresh was started

    now[0] += 2.0  # 31 s: stale; this scrape starts the refresh and still answers the last values at once
    assert suggested(scrape(registry).decode()) == before
    assert collector.wait_idle(10)
    fresh = scrape(registry).decode()
    assert suggested(fresh) == before + 3
    assert samples(families(fresh)["tuesday_metrics_age_seconds"]) == {(): 0.0}
    # The queue series are live at every scrape, cached or not.
    assert samples(families(cached)["tuesday_redis_up"]) == {(): 1.0}


def test_the_served_app_caches_and_zero_means_every_scrape(served):  # noqa: F811
    runtime, queues, _ = served
    cached, uncached = app_with(served, metrics_cache_s=30.0), app_with(served, metrics_cache_s=0.0)
    before = suggested(cached.get("/metrics").text)
    assert suggested(uncached.get("/metrics").text) == before
    add_suggestions(runtime, 2)
    assert suggested(cached.get("/metrics").text) == before  # 30 s have not passed
    assert suggested(uncached.get("/metrics").text) == before + 2
    assert cached.app.state.metrics_collector.snapshot is not None


def test_a_slow_or_failing_refresh_never_holds_a_scrape(served, caplog):  # noqa: F811
    runtime, queues, _ = served
    now = [0.0]
    collector = metrics_collector(runtime, queues, lambda: NOW, cache_s=5.0, wait_s=0.2, monotonic=lambda: now[0])
    registry = registry_of(collector)
    before = suggested(scrape(registry).decode())

    import threading

    release = threading.Event()
    real = collector.store.store_families

    def slow():
        release.wait(20)
        raise RuntimeError("database said: SELECT ... WHERE text = 'Jane Doe 4111'")

    collector.store.store_families = slow
    now[0] += 6.0
    try:
        started = time.perf_counter()
        for _ in range(5):  # while the refresh hangs, every scrape answers the last values at once
            assert suggested(scrape(registry).decode()) == before
        assert time.perf_counter() - started < 5.0  # not the 20 s the refresh hangs (a shared CPU is slow)
    finally:
        release.set()
    assert collector.wait_idle(10) and collector.failures == 1
    text = scrape(registry).decode()
    assert suggested(text) == before
    assert samples(families(text)["tuesday_metrics_refresh_failures"], "tuesday_metrics_refresh_failures_total") \
        == {(): 1.0}
    assert "RuntimeError" in caplog.text and "Jane Doe" not in caplog.text
    collector.store.store_families = real


def test_a_first_scrape_waits_at_most_the_bound(served):  # noqa: F811
    runtime, queues, _ = served
    collector = metrics_collector(runtime, queues, lambda: NOW, cache_s=30.0, wait_s=0.3)
    import threading

    release = threading.Event()
    collector.store.store_families = lambda: (release.wait(20), [])[1]
    try:
        started = time.perf_counter()
        text = scrape(registry_of(collector)).decode()
        took = time.perf_counter() - started
    finally:
        release.set()
    assert 0.25 <= took < 5.0  # the 0.3 s bound, not the 20 s the computation hangs
    m = families(text)
    assert "tuesday_suggestions" not in m and samples(m["tuesday_metrics_age_seconds"]) == {(): -1.0}
    assert samples(m["tuesday_redis_up"]) == {(): 1.0}
    assert collector.wait_idle(10)


@pytest.mark.parametrize("header", ["Bearer", "bearer  metrics-token-7f3a9c ", "Token metrics-token-7f3a9c"])
def test_authorized_reads_only_a_bearer_header(header):
    from bot.monitor.exporter import authorized

    assert authorized(TOKEN, header) is (header.split()[0].lower() == "bearer" and header.strip().endswith(TOKEN))
    assert authorized("", header) is False and authorized("", header, open_=True) is True
