"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) against a real
`tuesday serve` app (uvicorn on a free port) over a constructed store: pages render with the data,
charts are drawn, the stylesheet passes the page's CSP, unsigned, forged and expired links are refused.

Skips without chromium or Playwright, except under CI=true, where it fails. A screenshot of the
overview is written to the test's folder, and to $SAVE_DASHBOARD_SCREENSHOT (relative to the
repository) when that is set: how docs/dashboard.png is made (docs/monitoring.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.links import Links
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.web.app import create_app
from tests import dashboard_data as data

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB = 8  # this module's own database on the local Redis (the app needs queues; the pages never use them)
LINK_SECRET, PUBLIC = "browser-link-secret", "http://127.0.0.1"
PAGES = ("/dashboard", "/dashboard/labels", "/dashboard/drift", "/dashboard/versions")


def chromium_path() -> str:
    """Debian's chromium, or a skip (a failure under CI=true)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    why = "no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found, why = None, "Playwright for Python is not installed (pip install playwright; `make test` installs it)"
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    return found


@pytest.fixture
def server(monkeypatch, redis_url, tmp_path):
    """(base URL, runtime) of the app served by uvicorn in a thread over a filled SQLite store."""
    import uvicorn

    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_LINK_SECRET", LINK_SECRET)
    runtime = Runtime(Settings())
    now = datetime.now(timezone.utc)
    data.fill(runtime, now)
    data.fill_history(runtime, now)
    queues = Queues.from_settings(runtime.settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(runtime, queues), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", runtime
    server.should_exit = True
    thread.join(10)
    queues.close()


@pytest.fixture
def browser():
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: chromium refuses to start its sandbox as root (CI containers run as root).
        launched = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def link(base: str, path: str, *, clock=time.time, ttl_s: float = 3600) -> str:
    return Links.for_runtime(Runtime(Settings(link_secret=LINK_SECRET, public_url=base, link_ttl_hours=ttl_s / 3600)),
                             clock=clock).url(path)


def save_small(png: Path, to: Path) -> None:
    """The screenshot with its colours reduced to a palette (a third of the bytes, the same to the eye)."""
    from PIL import Image

    with Image.open(png) as image:
        image.convert("RGB").quantize(colors=64, dither=Image.Dither.NONE).save(to, optimize=True)


def forged(url: str) -> str:
    """The same link with the signature's last digit changed."""
    return url[:-1] + ("0" if url[-1] != "0" else "1")


def drawn_marks(page) -> list[dict]:
    """Bounding boxes of each chart's bars, lines and points, per chart: [{title, marks: [(w, h)]}]."""
    return page.eval_on_selector_all("svg.chart", """charts => charts.map(svg => ({
        title: svg.querySelector('title').textContent,
        marks: [...svg.querySelectorAll('rect.bar, path.series, circle')].map(el => {
            const box = el.getBoundingClientRect(); return [box.width, box.height]; })}))""")


def test_pages_render_with_charts_and_refuse_bad_links(server, browser, tmp_path):
    base, runtime = server
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    problems = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    response = page.goto(link(base, "/dashboard"))
    assert response.status == 200
    assert page.title() == "Tuesday · Overview, last 30 days"
    names = page.locator(".tile .name").all_text_contents()
    values = page.locator(".tile .value").all_text_contents()
    tiles = dict(zip(names, values))
    assert tiles["production"] == "v2" and tiles["acceptance"].endswith("%") and tiles["tickets"] != "0"
    # The stylesheet is allowed by its hash: the header is dark, not the browser's default.
    assert page.eval_on_selector("header", "el => getComputedStyle(el).backgroundColor") == "rgb(29, 43, 58)"
    charts = drawn_marks(page)
    assert len(charts) == 5
    for chart in charts:
        assert chart["marks"], f"nothing drawn in {chart['title']}"
        assert all(w > 0 and h > 0 for w, h in chart["marks"] if w or h), chart["title"]
        assert any(w > 1 and h > 1 for w, h in chart["marks"]), chart["title"]
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SAVE_DASHBOARD_SCREENSHOT"):
        save_small(shot, ROOT / os.environ["SAVE_DASHBOARD_SCREENSHOT"])

    # The navigation's links are signed: following them opens every page.
    page.click("nav >> text=Labels")
    page.wait_for_load_state()
    assert page.title() == "Tuesday · Labels, last 30 days" and "expires=" in page.url
    assert page.locator("td", has_text="→ claim_status").count() >= 1
    assert len(drawn_marks(page)) == 2 and all(c["marks"] for c in drawn_marks(page))
    page.click("text=7 days")
    page.wait_for_load_state()
    assert page.title() == "Tuesday · Labels, last 7 days"

    page.click("nav >> text=Drift")
    page.wait_for_load_state()
    assert "quantumpay" in page.inner_text("table")
    drift_charts = {c["title"]: c["marks"] for c in drawn_marks(page)}
    assert all(drift_charts.values()), drift_charts.keys()
    assert page.locator("svg.chart line.ref").count() == 2  # the holdout's p05 and median

    page.click("nav >> text=Versions")
    page.wait_for_load_state()
    assert page.locator("tr.live td").first.inner_text() == "v2 (production)"
    assert all(c["marks"] for c in drawn_marks(page))
    assert problems == []  # no CSP violation, no script error

    # Refused: no signature, a forged one, an expired one, another page's.
    for url in (f"{base}/dashboard",
                forged(link(base, "/dashboard")),
                link(base, "/dashboard", clock=lambda: time.time() - 7200),
                link(base, "/dashboard/drift").replace("/dashboard/drift", "/dashboard/versions")):
        refused = page.goto(url)
        assert refused.status == 403, url
        assert "/tuesday dashboard" in page.inner_text("body") and page.locator("svg").count() == 0
    page.close()
