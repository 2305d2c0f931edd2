"""`tuesday serve`'s monitoring routes: `GET /metrics` for Prometheus and the `/dashboard` pages.

The dashboard shows ticket excerpts (new terms), so it opens only through a signed link that
expires (bot.links, the review sheets' scheme, its own key and epoch): `/tuesday dashboard` hands one
to an admin. Each page's navigation links are signed with the same expiry and epoch (a revoke ends
them all); `days` (the window) is left out of the signature on purpose, so whoever holds a link may
look at any window until it expires. So is
`task` (with several tasks, the field a page shows; the routing task when absent): the task picker.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from bot.links import LinkRefused, LinkRevoked, Links
from bot.monitor import pages
from bot.monitor.drift import drift
from bot.monitor.exporter import authorized, metrics_collector, registry_of, scrape
from bot.monitor.measures import overview, per_label, timeline, versions, window
from bot.monitor.promise import summary as promise_summary
from bot.monitor.pages import DEFAULT_DAYS, MAX_DAYS
from bot.trail.labellers import people
from inference.artifacts import ArtifactError
from inference.errors import RegistryError

log = logging.getLogger(__name__)

WEEKLY_AFTER_DAYS = 60  # longer windows are charted per week, not per day

HEADERS = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": pages.CSP}

REFUSED = ("This dashboard link is unsigned, altered or expired. Ask Tuesday for a new one: "
           "<code>/tuesday dashboard</code> (admins) or <code>tuesday dashboard --link</code>.")
REVOKED = ("This dashboard link was revoked. Ask Tuesday for a new one: "
           "<code>/tuesday dashboard</code> (admins) or <code>tuesday dashboard --link</code>.")


def _promise(runtime, since, until) -> dict | None:
    """The production version's promise and its realised rates over the page's window."""
    name, calibration = runtime.production.name(), None
    if name is not None:
        try:
            calibration = runtime.registry.get(name).manifest.get("calibration")
        except RegistryError:
            pass  # not in this host's view of the artifact store yet: the rates without the promise
    return promise_summary(runtime, name, calibration, since, until)


def _refusal(status: int, message: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Tuesday</title></head>"
                        f"<body><p>{message}</p></body></html>", status_code=status, headers=HEADERS)


def register(app: FastAPI, runtime, queues, links: Links, clock: Callable[[], float]) -> None:
    """Add /metrics and the /dashboard pages to the app."""
    settings = runtime.settings
    # One collector per app: its cached aggregates are this process's, refreshed in the background.
    app.state.metrics_collector = metrics_collector(runtime, queues, clock, cache_s=settings.metrics_cache_s,
                                                    wait_s=settings.metrics_wait_s)
    registry = registry_of(app.state.metrics_collector)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        """Prometheus' scrape: counts and versions, no ticket text. It needs TUESDAY_METRICS_TOKEN as a bearer
        token, or TUESDAY_METRICS_OPEN=true; with neither set, nobody may scrape."""
        if not authorized(settings.metrics_token, request.headers.get("authorization"), open_=settings.metrics_open):
            why = ("send Authorization: Bearer <TUESDAY_METRICS_TOKEN>" if settings.metrics_token else
                   "/metrics is closed: set TUESDAY_METRICS_TOKEN (or TUESDAY_METRICS_OPEN=true on a closed network)")
            return JSONResponse({"error": why}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="tuesday-metrics"'})
        return Response(scrape(registry), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    def render(name: str, title: str, request: Request, build: Callable[..., str], windowed: bool = True):
        """build(scoped runtime, since, until, days, bucket) -> the page body for the picked task."""
        if not links.enabled:
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            epoch = links.check(request.url.path, request.query_params)
        except LinkRevoked:
            return _refusal(410, REVOKED)
        except LinkRefused:
            return _refusal(403, REFUSED)
        raw = request.query_params.get("days") or str(DEFAULT_DAYS)
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_DAYS):
            return _refusal(400, f"days must be a whole number from 1 to {MAX_DAYS}.")
        days = int(raw)
        names = runtime.tasks.names
        task = request.query_params.get("task") or runtime.tasks.routing_name
        if task not in names:
            return _refusal(400, f"task must be one of {', '.join(names)}.")
        expires = int(request.query_params["expires"])
        now = datetime.fromtimestamp(clock(), timezone.utc)
        since, until = window(days, now)
        bucket = "week" if days > WEEKLY_AFTER_DAYS else "day"
        try:
            body = build(runtime.for_task(task), since, until, days, bucket)
        except ArtifactError as exc:
            log.error("dashboard %s: artifact store unavailable: %s", name, exc)
            return _refusal(503, "The artifact store is unavailable; retry in a moment.")

        def href(path: str, window_days: int, field: str = task) -> str:
            signed = links.relative(path, expires, epoch)
            return f"{signed}&days={window_days}" + (f"&task={field}" if len(names) > 1 else "")

        heading = f"{title}, last {days} days" if windowed else f"{title}, all time"
        order = [scoped.task.name for scoped in runtime.each_task()]
        picker = [(n, None if n == task else href(request.url.path, days, n)) for n in order] if len(names) > 1 else []
        html = pages.page(name, heading + (f" · {task}" if picker else ""), body, href=href, days=days, tasks=picker,
                          expires_at=datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%d %H:%M"),
                          generated_at=now.strftime("%Y-%m-%d %H:%M"))
        return HTMLResponse(html, headers=HEADERS)

    # Plain `def`s: FastAPI runs them in its thread pool, so the SQL they wait on blocks no other request.
    @app.get("/dashboard")
    def dashboard(request: Request) -> Response:
        return render("overview", "Overview", request, lambda rt, since, until, days, bucket: pages.overview_body(
            overview(rt, since, until), timeline(rt, since, until, bucket=bucket), rt.production.name(), bucket,
            _promise(rt, since, until)))

    @app.get("/dashboard/labels")
    def dashboard_labels(request: Request) -> Response:
        return render("labels", "Labels", request,
                      lambda rt, since, until, days, bucket: pages.labels_body(per_label(rt, since, until)))

    @app.get("/dashboard/drift")
    def dashboard_drift(request: Request) -> Response:
        return render("drift", "Drift", request,
                      lambda rt, since, until, days, bucket: pages.drift_body(drift(rt, since, until)))

    @app.get("/dashboard/versions")
    def dashboard_versions(request: Request) -> Response:
        return render("versions", "Versions", request, lambda rt, since, until, days, bucket: pages.versions_body(
            versions(rt), rt.production.history()), windowed=False)

    @app.get("/dashboard/people")
    def dashboard_people(request: Request) -> Response:
        return render("people", "People", request, lambda rt, since, until, days, bucket: pages.people_body(
            people(rt.sessions, since, until, task=rt.task.name), rt.settings.labellers or "managers and admins"))
