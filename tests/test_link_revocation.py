"""Signed links: one key per page kind, an epoch in SQL that `tuesday links revoke` bumps; tested through the real
web app (SQLite and PostgreSQL, real Redis) and the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bot.cli.main import main
from bot.links import Epochs, LinkRefused, LinkRevoked, Links, page_key, signature
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store import audit
from bot.store.link_epochs import bump_epochs, current_epochs
from bot.web.app import create_app

REDIS_DB = 14  # this module's own database on the local Redis, flushed around every test
LINK_SECRET, PUBLIC = "link-revocation-secret", "https://tuesday.example.test"


@pytest.fixture
def served(monkeypatch, redis_url, store_url):
    """(runtime, web client) over an empty store; the app reads the epochs on every page view (cache 0)."""
    for key, value in {"REDIS_URL": redis_url, "DATABASE_URL": store_url, "LINK_SECRET": LINK_SECRET,
                       "PUBLIC_URL": PUBLIC, "LINK_EPOCH_CACHE_S": "0"}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    runtime = Runtime(Settings())
    queues = Queues.from_settings(runtime.settings)
    yield runtime, TestClient(create_app(runtime, queues))
    queues.close()


def relative(url: str) -> str:
    assert url.startswith(PUBLIC)
    return url[len(PUBLIC):]


def fields(url: str) -> dict:
    return dict(p.split("=") for p in urlsplit(url).query.split("&"))


def cli(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_a_link_from_before_a_revoke_is_gone_and_a_fresh_one_works(served):
    runtime, web = served
    # Links handed out as Slack and the CLI hand them out; a review link to a version that does not exist passes
    # the link check and then answers 404, so 404 here means "the link was accepted".
    dashboard = relative(cli("dashboard", "--link"))
    review = relative(Links.for_runtime(runtime).url("/review/v9"))
    assert "epoch=1" in dashboard and web.get(dashboard).status_code == 200
    assert web.get(review).status_code == 404

    # The dashboard's links are revoked (as after one was found in a log): that link is gone, review links stay.
    assert "dashboard links revoked: epoch 2" in cli("links", "revoke", "--page", "dashboard", "--by", "alice")
    gone = web.get(dashboard)
    assert gone.status_code == 410 and "revoked" in gone.text
    assert web.get(dashboard.replace("epoch=1", "epoch=2")).status_code == 403  # the new epoch, the old signature
    assert web.get(review).status_code == 404
    fresh = relative(cli("dashboard", "--link"))
    assert "epoch=2" in fresh and web.get(fresh).status_code == 200
    # A page's navigation links carry the page's epoch: they work now, and go with it.
    nav = [h.replace("&amp;", "&") for h in web.get(fresh).text.split('href="')[1:]]
    assert nav and all("epoch=2" in h for h in nav)

    # Every kind (the default): the review link goes too, and so does the fresh dashboard link.
    cli("links", "revoke", "--by", "bob")
    assert web.get(review).status_code == 410 and web.get(fresh).status_code == 410
    assert web.get(relative(Links.for_runtime(runtime).url("/review/v9"))).status_code == 404
    assert current_epochs(runtime.sessions, ["review", "dashboard"]) == {"review": 2, "dashboard": 3}

    # Audited: who revoked which kinds, and the epochs they moved to.
    rows = audit.entries(runtime.sessions, action="links.revoke")
    assert [(r["actor"], r["target"], r["detail"]["epochs"]) for r in rows] == [
        ("cli:bob", "review,dashboard", {"review": 2, "dashboard": 3}),
        ("cli:alice", "dashboard", {"dashboard": 2})]
    status = {row["page"]: (row["epoch"], row["changed_by"]) for row in json.loads(cli("links", "status", "--json"))}
    assert status == {"review": (2, "cli:bob"), "dashboard": (3, "cli:bob")}


def test_a_signature_for_one_page_kind_is_never_valid_for_another(served):
    runtime, web = served
    links = Links.for_runtime(runtime)
    dashboard = links.url("/dashboard")
    signed = fields(dashboard)
    assert web.get("/review/v9", params=signed).status_code == 403  # a dashboard signature on a review URL

    # Per-page keys, not only the path: the very same message signed with the dashboard's key is refused on a review
    # path, and with the review key it is accepted. Neither key is the secret itself.
    expires, epoch = int(signed["expires"]), int(signed["epoch"])
    as_dashboard = signature(LINK_SECRET, "dashboard", "/review/v9", expires, epoch)
    as_review = signature(LINK_SECRET, "review", "/review/v9", expires, epoch)
    assert as_dashboard != as_review
    query = {"expires": str(expires), "epoch": str(epoch)}
    assert web.get("/review/v9", params={**query, "sig": as_dashboard}).status_code == 403
    assert web.get("/review/v9", params={**query, "sig": as_review}).status_code == 404
    assert page_key(LINK_SECRET, "review") != page_key(LINK_SECRET, "dashboard")
    assert LINK_SECRET.encode() not in (page_key(LINK_SECRET, "review"), page_key(LINK_SECRET, "dashboard"))
    with pytest.raises(ValueError):
        links.url("/metrics")  # not a signed page: no link is made for it


def test_links_made_before_epochs_are_refused(served):
    runtime, web = served
    # The last release's link: HMAC-SHA256 of "<path>\n<expires>" under the secret itself, no epoch.
    expires = int(time.time()) + 3600
    old = hmac.new(LINK_SECRET.encode(), f"/dashboard\n{expires}".encode(), hashlib.sha256).hexdigest()
    assert web.get("/dashboard", params={"expires": str(expires), "sig": old}).status_code == 403
    assert web.get("/dashboard", params={"expires": str(expires), "epoch": "1", "sig": old}).status_code == 403
    with pytest.raises(LinkRefused) as refused:
        Links.for_runtime(runtime).check("/dashboard", {"expires": str(expires), "sig": old})
    assert not isinstance(refused.value, LinkRevoked)


def test_the_web_hosts_epoch_cache_is_bounded(served):
    runtime, _ = served
    now = [1000.0]
    cached = Epochs(runtime.sessions, max_age_s=5.0, monotonic=lambda: now[0])
    links = Links(LINK_SECRET, PUBLIC, clock=time.time, epochs=cached)
    url = Links.for_runtime(runtime).url("/review/v9")
    assert links.check("/review/v9", fields(url)) == 1
    bump_epochs(runtime.sessions, ["review"], by="cli:test")
    now[0] += 4.9
    assert links.verify("/review/v9", fields(url))  # within the documented bound the old epoch may still be seen
    now[0] += 0.2
    with pytest.raises(LinkRevoked):
        links.check("/review/v9", fields(url))


def test_revoking_needs_a_store_that_is_at_head_and_the_migration_seeds_both_kinds(served):
    runtime, _ = served
    assert current_epochs(runtime.sessions, ["review", "dashboard"]) == {"review": 1, "dashboard": 1}
    assert "review: epoch 1, set by migration 0012" in cli("links", "status")
