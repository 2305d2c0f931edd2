"""/metrics and the /dashboard pages of `tuesday serve` over a constructed store (SQLite and PostgreSQL) and
real Redis; `/tuesday dashboard` through a bolt App with requests signed as Slack signs them."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from datetime import datetime, timezone
from html import unescape
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bot.cli.main import main
from bot.links import Links
from bot.monitor import charts
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.app import create_app
from tests import dashboard_data as data
from tests.slash import SIGNING_SECRET, GroupSlack, Parts
from tests.demo_names import DEMO_TASK

REDIS_DB = 8  # this module's own database on the local Redis, flushed around every test
LINK_SECRET, PUBLIC = "dashboard-link-secret", "https://tuesday.example.test"
ADMIN, MANAGER = "U0ADMIN", "U0MANAGER"
NOW = 1_800_000_000.0  # the app's clock: every page and link is judged at this instant


@pytest.fixture
def env(monkeypatch, redis_url, store_url):
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_DATABASE_URL", store_url)
    monkeypatch.setenv("TUESDAY_LINK_SECRET", LINK_SECRET)
    monkeypatch.setenv("TUESDAY_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("TUESDAY_ADMINS", ADMIN)
    monkeypatch.setenv("TUESDAY_MANAGERS", MANAGER)
    return monkeypatch


@pytest.fixture
def served(env):
    """(runtime, queues, web client at NOW) over the constructed store."""
    runtime = Runtime(Settings())
    queues = Queues.from_settings(runtime.settings)
    data.fill(runtime, datetime.fromtimestamp(NOW, timezone.utc))
    yield runtime, queues, TestClient(create_app(runtime, queues, clock=lambda: NOW))
    queues.close()


def signed(path: str, ttl_s: float = 3600, *, clock=lambda: NOW, secret: str = LINK_SECRET) -> str:
    """The relative signed link to path, as the app at NOW checks it (the epoch read from the test's store)."""
    url = Links.for_runtime(Runtime(Settings(link_secret=secret, link_ttl_hours=ttl_s / 3600)), clock=clock).url(path)
    return url[len(PUBLIC):]


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


LABEL_ORDER = ("version", "label", "routing", "action", "queue")


def samples(family, name: str | None = None) -> dict:
    """{label values in LABEL_ORDER: value} of a family's samples (of one sample name)."""
    return {tuple(s.labels[k] for k in LABEL_ORDER if k in s.labels): s.value
            for s in family.samples if name is None or s.name == name}


# -- /metrics -------------------------------------------------------------------------------------------

def test_metrics_parse_and_equal_the_constructed_store(served):
    runtime, queues, web = served
    with runtime.sessions() as s:
        waiting = s.query(data.Ticket).filter_by(external_id="waiting").one()
    queues.enqueue_suggest(waiting.id)
    response = web.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    m = families(response.text)

    assert m["tuesday_suggestions"].type == "counter"
    assert samples(m["tuesday_suggestions"], "tuesday_suggestions_total") == data.EXPECTED["suggestions"]
    assert samples(m["tuesday_feedback"], "tuesday_feedback_total") == data.EXPECTED["feedback"]

    latency = m["tuesday_suggestion_latency_seconds"]
    assert latency.type == "histogram"
    buckets = {float(s.labels["le"]): s.value for s in latency.samples if s.name.endswith("_bucket")}
    assert buckets == {float(k): v for k, v in data.EXPECTED["latency_buckets"].items()}
    assert samples(latency, "tuesday_suggestion_latency_seconds_count") == {(): 24}
    latency_sum = samples(latency, "tuesday_suggestion_latency_seconds_sum")[()]
    assert latency_sum == pytest.approx(data.EXPECTED["latency_sum_s"])

    review = m["tuesday_review_time_seconds"]
    buckets = {float(s.labels["le"]): s.value for s in review.samples if s.name.endswith("_bucket")}
    assert buckets == {float(k): v for k, v in data.EXPECTED["review_buckets"].items()}
    assert samples(review, "tuesday_review_time_seconds_sum")[()] == pytest.approx(data.EXPECTED["review_sum_s"],
                                                                                  rel=1e-6)

    assert m["tuesday_override_ratio"].type == "gauge"
    expected_ratio = {(k,): v for k, v in data.EXPECTED["override_7d"].items()}
    assert samples(m["tuesday_override_ratio"]) == pytest.approx(expected_ratio)
    reviews = samples(m["tuesday_reviews_7d"])
    assert {k: v for k, v in reviews.items() if v} == {(k,): v for k, v in data.EXPECTED["reviews_7d"].items()}
    assert samples(m["tuesday_drift_share"]) == {("v2",): pytest.approx(data.EXPECTED["drift_share"])}
    assert samples(m["tuesday_suggestion_cpu_seconds"], "tuesday_suggestion_cpu_seconds_total") == pytest.approx(
        {(k,): v for k, v in data.EXPECTED["cpu_s"].items()})
    assert samples(m["tuesday_production_info"]) == {("v2",): 1.0}
    assert samples(m["tuesday_tickets_waiting"]) == {(): 1.0}
    assert samples(m["tuesday_queue_depth"]) == {("suggest",): 1, ("train",): 0, ("control",): 0, ("writeback",): 0}
    assert samples(m["tuesday_workers"]) == {("suggest",): 0, ("train",): 0, ("control",): 0, ("writeback",): 0}
    assert samples(m["tuesday_redis_up"]) == {(): 1.0}
    # Nothing per process: the scrape carries no python_* or process_* series that differ per host.
    assert all(name.startswith("tuesday_") for name in m)
    # Every series of a model names its task (the store's one task here; tests/test_fields_flow.py has two).
    per_task = [m[name] for name in ("tuesday_suggestions", "tuesday_feedback", "tuesday_suggestion_latency_seconds",
                                     "tuesday_review_time_seconds", "tuesday_suggestion_cpu_seconds",
                                     "tuesday_override_ratio", "tuesday_reviews_7d", "tuesday_drift_share",
                                     "tuesday_production_info")]
    assert all(s.labels.get("task") == DEMO_TASK for family in per_task for s in family.samples)
    assert all(family.samples for family in per_task)


def test_metrics_move_with_the_store_not_with_the_process(served):
    runtime, queues, _ = served
    # Aggregates read at every scrape (tests/test_metrics_access.py tests the cache that `tuesday serve` keeps).
    web = TestClient(create_app(Runtime(Settings(metrics_cache_s=0)), queues, clock=lambda: NOW))
    before = samples(families(web.get("/metrics").text)["tuesday_suggestions"], "tuesday_suggestions_total")
    # A second app (another web host) over the same store answers the same numbers.
    other = TestClient(create_app(runtime, queues, clock=lambda: NOW))
    assert samples(families(other.get("/metrics").text)["tuesday_suggestions"], "tuesday_suggestions_total") == before
    with runtime.sessions() as s:
        ticket = data.Ticket(source="test", external_id="late", text="x")
        s.add(ticket)
        s.flush()
        s.add(data.Suggestion(task=DEMO_TASK, ticket_id=ticket.id, label=data.C, routing="suggested", confidence=0.9,
                              model_version="v2", latency_ms=10.0))
        s.commit()
    after = samples(families(web.get("/metrics").text)["tuesday_suggestions"], "tuesday_suggestions_total")
    assert after[("v2", data.C, "suggested")] == before[("v2", data.C, "suggested")] + 1


def test_metrics_token_is_required_when_set(served, env):
    runtime, queues, _ = served
    web = TestClient(create_app(Runtime(Settings(metrics_token="scrape-me")), queues))
    assert web.get("/metrics").status_code == 401
    assert web.get("/metrics").headers["www-authenticate"].startswith("Bearer")
    assert web.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert web.get("/metrics", headers={"Authorization": "Basic scrape-me"}).status_code == 401
    ok = web.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200 and "tuesday_suggestions_total" in ok.text


def test_metrics_without_redis_still_answer_the_stores_numbers(served):
    from tests.test_web import unreachable_queues

    runtime, _, _ = served
    web = TestClient(create_app(runtime, unreachable_queues()))
    m = families(web.get("/metrics").text)
    assert samples(m["tuesday_redis_up"]) == {(): 0.0} and samples(m["tuesday_queue_depth"]) == {}
    assert samples(m["tuesday_production_info"]) == {("v2",): 1.0}


# -- the dashboard's pages ---------------------------------------------------------------------------------

def page(web, path: str, **params):
    url = signed(path) + "".join(f"&{k}={v}" for k, v in params.items())
    return web.get(url)


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_pages_show_the_constructed_numbers_with_charts(served):
    _, _, web = served
    overview = page(web, "/dashboard")
    assert overview.status_code == 200, overview.text
    words = " ".join(text_of(overview.text).split())
    assert "acceptance 73.7% of 19 reviewed suggestions" in words
    assert "production v2" in words
    assert "review time" in words and "latency" in words and "cost / 1,000 tickets" in words
    assert overview.text.count("<svg") == 5 and "no data yet" not in overview.text

    labels = page(web, "/dashboard/labels", days=7)
    rows = {cells[0]: cells for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row)
                                          for row in re.findall(r"<tr>(.*?)</tr>", labels.text)) if cells}
    assert rows[data.B][1:8] == ["10", "10", "6", "3", "1", "0", "40.0%"]
    assert unescape(rows[data.B][10]) == "→ claim_status (3); → policy_change (1)"
    assert rows[data.H][7] == "50.0%" and rows[data.C][7] == "0.0%"
    assert labels.text.count("<svg") == 2

    drift = page(web, "/dashboard/drift", days=7)
    words = " ".join(text_of(drift.text).split())
    assert "drift share 25.0% 5 of 20 tickets below the holdout's p05" in words
    assert "quantumpay" in words and "QuantumPay charged my card twice" in words
    assert drift.text.count("<svg") == 4

    versions = page(web, "/dashboard/versions")
    words = " ".join(text_of(versions.text).split())
    assert "v2 (production)" in words and "cli:ana" in words and "slack:U0ADMIN" in words
    assert "82.0% 75.0% 90.0%" in words


def test_page_html_is_escaped_and_styled_only_by_its_hash(served):
    runtime, _, web = served
    with runtime.sessions() as s:
        s.query(data.Ticket).filter(data.Ticket.text.like("QuantumPay%")).update(
            {"text": "QuantumPay <script>alert(1)</script> charged twice"}, synchronize_session=False)
        s.commit()
    drift = page(web, "/dashboard/drift", days=7)
    assert "<script>" not in drift.text and "&lt;script&gt;" in drift.text
    csp = drift.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    style = re.search(r"<style>(.*?)</style>", drift.text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert drift.headers["cache-control"] == "private, no-store" and drift.headers["referrer-policy"] == "no-referrer"


def test_navigation_links_are_signed_with_the_same_expiry(served):
    _, _, web = served
    first = signed("/dashboard", ttl_s=600)
    expires = re.search(r"expires=(\d+)", first).group(1)
    html = web.get(first).text
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]
    assert {urlsplit(h).path for h in hrefs} == {"/dashboard", "/dashboard/labels", "/dashboard/drift",
                                                 "/dashboard/versions", "/dashboard/people"}
    for href in hrefs:
        assert f"expires={expires}" in href and "epoch=1" in href
        assert web.get(href).status_code == 200


def test_unsigned_forged_expired_and_other_pages_links_are_refused(served):
    runtime, queues, web = served
    url = signed("/dashboard/labels")
    for path in ("/dashboard", "/dashboard/labels", "/dashboard/drift", "/dashboard/versions"):
        assert web.get(path).status_code == 403
    fields = dict(p.split("=") for p in urlsplit(url).query.split("&"))
    forged = {**fields, "sig": fields["sig"][:-1] + ("0" if fields["sig"][-1] != "0" else "1")}
    assert web.get("/dashboard/labels", params=forged).status_code == 403
    later = {**fields, "expires": str(int(fields["expires"]) + 86400)}
    assert web.get("/dashboard/labels", params=later).status_code == 403
    assert web.get("/dashboard/drift", params=fields).status_code == 403  # another page's signature
    assert web.get(signed("/dashboard", secret="another-secret")).status_code == 403
    refused = web.get("/dashboard", params=forged)
    assert "/tuesday dashboard" in refused.text and "v2" not in refused.text
    assert web.get(url).status_code == 200
    expired = TestClient(create_app(runtime, queues, clock=lambda: NOW + 3601))
    assert expired.get(url).status_code == 403
    assert web.get(url + "&days=0").status_code == 400 and web.get(url + "&days=x").status_code == 400
    assert web.get(url + "&days=366").status_code == 200
    off = TestClient(create_app(Runtime(Settings(link_secret="")), queues, clock=lambda: NOW))
    assert off.get(url).status_code == 404


def test_an_empty_store_renders_every_page(env):
    runtime = Runtime(Settings())
    queues = Queues.from_settings(runtime.settings)
    web = TestClient(create_app(runtime, queues, clock=lambda: NOW))
    for path in ("/dashboard", "/dashboard/labels", "/dashboard/drift", "/dashboard/versions"):
        response = web.get(signed(path))
        assert response.status_code == 200, (path, response.text)
    assert "no data yet" in web.get(signed("/dashboard")).text
    assert "No production version yet" in web.get(signed("/dashboard/drift")).text
    m = families(web.get("/metrics").text)
    assert samples(m["tuesday_suggestions"], "tuesday_suggestions_total") == {}
    assert samples(m["tuesday_production_info"]) == {}
    queues.close()


# -- how a link is handed out ------------------------------------------------------------------------------

@pytest.fixture
def fake_slack():
    slack = GroupSlack({}).start()
    yield slack
    slack.stop()


def test_slash_dashboard_gives_admins_a_link_that_opens_and_refuses_others(env, fake_slack):
    env.setenv("TUESDAY_SLACK_BOT_TOKEN", "xoxb-test-token")
    env.setenv("TUESDAY_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    env.setenv("TUESDAY_SLACK_API_URL", fake_slack.url)
    env.setenv("TUESDAY_DASHBOARD_LINK_HOURS", "2")
    parts = Parts(fake_slack)
    try:
        status, reply = parts.slash(MANAGER, "dashboard")
        assert status == 200 and "only Tuesday's admins" in reply and PUBLIC not in reply
        status, reply = parts.slash(ADMIN, "dashboard")
        assert status == 200 and "works for 2 h" in reply
        url = re.search(r"<(https://[^|>]+)\|open>", reply).group(1)
        assert url.startswith(f"{PUBLIC}/dashboard?expires=")
        expires = int(re.search(r"expires=(\d+)", url).group(1))
        assert abs(expires - (time.time() + 2 * 3600)) < 60
        web = TestClient(create_app(parts.runtime, parts.queues))
        assert web.get(url[len(PUBLIC):]).status_code == 200
        assert "dashboard" in parts.slash(ADMIN, "help")[1]
    finally:
        parts.close()


def test_cli_prints_a_working_link(env):
    result = CliRunner().invoke(main, ["dashboard", "--link", "--page", "drift", "--days", "7", "--hours", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith(f"{PUBLIC}/dashboard/drift?expires=") and url.endswith("&days=7")
    split = urlsplit(url)
    assert Links.for_runtime(Runtime(Settings())).verify(split.path, dict(p.split("=") for p in split.query.split("&")))
    env.setenv("TUESDAY_PUBLIC_URL", "")
    refused = CliRunner().invoke(main, ["dashboard", "--link"])
    assert refused.exit_code == 1 and "TUESDAY_PUBLIC_URL" in refused.output


# -- charts ---------------------------------------------------------------------------------------------

def test_charts_escape_text_leave_gaps_and_say_when_empty():
    svg = charts.line_chart("a <b>", ["d1", "d2", "d3", "d4"], {"x<y": [0.5, None, 0.2, 0.3]}, unit="%")
    assert "<b>" not in svg and "a &lt;b&gt;" in svg
    assert svg.count("<path") == 1 and svg.count("<circle") == 3  # the gap splits the line; a lone point is a dot
    assert "no data yet" in charts.line_chart("t", ["d1"], {"x": [None]})
    bars = charts.stacked_bars("t", ["a", "b"], {"one": [1, 2], "two": [3, 0]})
    heights = [float(h) for h in re.findall(r'height="([^"]+)" fill="[^"]+" class="bar"', bars)]
    assert len(heights) == 3 and all(h > 0 for h in heights)  # a zero part draws nothing
    assert "no data yet" in charts.hbar_chart("t", [("a", 0), ("b", None)])
