"""The HTTP face of Tuesday: helpdesk webhooks and Slack clicks in; a health check, metrics and pages out."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from redis.exceptions import RedisError
from slack_bolt.adapter.starlette.handler import to_starlette_response
from slack_sdk import WebClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool

from bot import intake
from bot.error_ids import logged, shown
from bot.intake import IncomingTicket, IntakeError
from bot.links import LinkRefused, LinkRevoked, Links
from bot.queues import Queues
from bot.runtime import Runtime
from bot.slack.app import create_slack_app, slack_request, web_client
from bot.store.tickets import add_ticket, latest_suggestion
from bot.trail.review import NoReview, load_review, review_csv, review_html
from bot.web.access_log import redact_access_log
from bot.web.dashboard import register
from inference.artifacts import ArtifactError
from inference.errors import RegistryError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2  # what a 503 asks the sender to wait (helpdesks retry on 503 by themselves)

# Every refusal is one of intake's named errors; this is the only place they become statuses.
STATUS = [
    (intake.NotConfigured, 503),
    (intake.Busy, 503),
    (intake.BadSignature, 401),
    (intake.StaleRequest, 401),
    (intake.TooLarge, 413),
    (intake.BadPayload, 400),
    (intake.InvalidTicket, 422),
]


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused as soon as it grows past max_bytes (whatever Content-Length claimed)."""
    intake.check_declared_size(request.headers.get("content-length"), max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise intake.TooLarge(f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


MASK_WAIT_S = 0.25  # how long a webhook waits for a masking slot before it is told to come back (503)


def accept_ticket(runtime: Runtime, queues: Queues, incoming: IncomingTicket,
                  masking: threading.BoundedSemaphore | None = None) -> JSONResponse:
    """Store the ticket once and queue its suggestion; a redelivery changes nothing.

    masking: the process's bound on tickets masked at once; beyond it the sender gets 503 + Retry-After
    instead of a request that waits behind all the others."""
    if masking is not None and not masking.acquire(timeout=MASK_WAIT_S):
        raise intake.Busy(f"{runtime.settings.masking_in_flight} tickets are being masked; retry shortly")
    try:
        ticket, created = add_ticket(runtime.sessions, source=incoming.source, external_id=incoming.external_id,
                                     text=incoming.text, subject=incoming.subject, requester=incoming.requester)
    finally:
        if masking is not None:
            masking.release()
    if created:
        # If Redis is down this raises and the sender gets 503 and retries; the ticket stays
        # stored, and the retry below queues the job it never got.
        job, _ = queues.enqueue_suggest(ticket.id)
        log.info("ticket %s (%s:%s) stored, job %s queued", ticket.id, ticket.source, ticket.external_id, job.id)
        return JSONResponse({"ticket_id": ticket.id, "status": "queued", "job_id": job.id}, status_code=202)
    with runtime.sessions() as session:
        suggested = latest_suggestion(session, ticket.id) is not None
    if not suggested:
        # No suggestion yet: the job is queued or running (then this collapses into it), or it
        # was lost with Redis (then this queues it again).
        job, enqueued = queues.enqueue_suggest(ticket.id)
        if enqueued:
            log.warning("ticket %s had no suggest job; queued %s again", ticket.id, job.id)
            return JSONResponse({"ticket_id": ticket.id, "status": "requeued", "job_id": job.id}, status_code=202)
    return JSONResponse({"ticket_id": ticket.id, "status": "duplicate"}, status_code=200)


class ErrorIds:
    """ASGI: an exception nothing else handled answers 500 with an error id; only its type, the id and where it was
    raised reach the log (Starlette and uvicorn would log its message and traceback, which can quote a ticket)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001  the edge: every other error is answered by a handler below
            eid = logged(log, exc, f"{scope.get('method', '')} {scope.get('path', '')}", level=logging.ERROR)
            if not started:  # else the client sees the answer cut short, and the log has the id
                await JSONResponse({"error": f"internal error ({shown(exc, eid)})"}, status_code=500)(
                    scope, receive, send)


def create_app(runtime: Runtime, queues: Queues, *, clock: Callable[[], float] = time.time,
               slack: WebClient | None = None) -> FastAPI:
    """The FastAPI app; dependencies come in built, clock is injectable for timestamp tests.

    slack is the Web API client for answering clicks (default: one from the settings' bot token).
    """
    settings = runtime.settings
    redact_access_log()  # a signed link's sig never reaches the access log
    runtime.sessions  # build the engine and tables at start-up, not on the first webhook
    app = FastAPI(title="Tuesday", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(ErrorIds)
    slack = slack or web_client(settings)
    slack_app = create_slack_app(runtime, queues, slack) if settings.slack_signing_secret and slack else None

    masking = threading.BoundedSemaphore(settings.masking_in_flight)

    @app.exception_handler(IntakeError)
    async def refuse(request: Request, exc: IntakeError) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(exc, kind))
        retry = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, intake.Busy) else None
        return JSONResponse({"error": str(exc)}, status_code=status, headers=retry)

    @app.exception_handler(RedisError)
    async def queue_down(request: Request, exc: RedisError) -> JSONResponse:
        eid = logged(log, exc, f"{request.method} {request.url.path}: Redis", level=logging.ERROR)
        return JSONResponse({"error": f"queue unavailable, retry later (error id {eid})"}, status_code=503)

    @app.exception_handler(SQLAlchemyError)
    async def store_failed(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # Any other store error (a constraint, a missing table): its type and an id in the log, never its message,
        # which on PostgreSQL can quote the whole row (ticket text); without this handler the server would log it.
        eid = logged(log, exc, f"{request.method} {request.url.path}: store", level=logging.ERROR)
        return JSONResponse({"error": f"the store refused the request ({shown(exc, eid)})"}, status_code=500)

    @app.exception_handler(OperationalError)
    async def store_down(request: Request, exc: OperationalError) -> JSONResponse:
        # The database restarting or unreachable: nothing was stored, so the sender must retry.
        log.error("store unavailable: %s", type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__)
        return JSONResponse({"error": "store unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(PoolTimeout)
    async def store_busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection in use for TUESDAY_SQL_TIMEOUT_S: nothing was stored; come back shortly.
        log.error("store busy: no free connection within %.0f s", settings.sql_timeout_s)
        return JSONResponse({"error": "store busy, retry later"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.post("/webhooks/zendesk")
    async def zendesk(request: Request) -> JSONResponse:
        body = await read_body(request, settings.webhook_max_bytes)
        intake.verify_zendesk(settings.zendesk_webhook_secret, request.headers.get(intake.ZENDESK_SIGNATURE),
                              request.headers.get(intake.ZENDESK_TIMESTAMP), body, now=clock(),
                              tolerance_s=settings.webhook_tolerance_s)
        incoming = intake.parse_zendesk(body)
        if incoming is None:
            return JSONResponse({"status": "ignored"}, status_code=200)
        return await run_in_threadpool(accept_ticket, runtime, queues, incoming, masking)

    @app.post("/webhooks/generic")
    async def generic(request: Request) -> JSONResponse:
        body = await read_body(request, settings.webhook_max_bytes)
        intake.verify_generic(settings.generic_webhook_secret, request.headers.get(intake.GENERIC_SIGNATURE),
                              request.headers.get(intake.GENERIC_TIMESTAMP), body, now=clock(),
                              tolerance_s=settings.webhook_tolerance_s)
        incoming = intake.parse_generic(body)
        return await run_in_threadpool(accept_ticket, runtime, queues, incoming, masking)

    @app.post("/slack/events")
    async def slack_events(request: Request) -> Response:
        if slack_app is None:
            return JSONResponse({"error": "Slack is not configured: set TUESDAY_SLACK_SIGNING_SECRET and "
                                          "TUESDAY_SLACK_BOT_TOKEN"}, status_code=503)
        # Not bolt's SlackRequestHandler.handle(): that reads an unbounded body, parses it before
        # bolt checks the signature (so unsigned garbage raised a 500), and dispatches on the
        # event loop. Here: size (413), signature and 5-minute window (401), then parse (400).
        body = await read_body(request, settings.webhook_max_bytes)
        intake.verify_slack(settings.slack_signing_secret, request.headers.get(intake.SLACK_SIGNATURE),
                            request.headers.get(intake.SLACK_TIMESTAMP), body, now=clock())
        bolt_request = slack_request(body, request.headers, request.url.query)
        bolt_response = await run_in_threadpool(slack_app.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    def sql_check() -> str:
        try:
            with runtime.sessions() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return f"error: {type(exc).__name__}"
        return "ok"

    @app.get("/livez")
    def livez() -> JSONResponse:
        """Liveness: the process answers (a restart would not bring back SQL or Redis)."""
        return JSONResponse({"ok": True})

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: what this host needs to take traffic, the store. Not Redis: intake stores a ticket without it
        (the sweeper queues it later), so a Redis outage must not take every web pod out of the Service."""
        sql = sql_check()
        return JSONResponse({"ok": sql == "ok", "sql": sql}, status_code=200 if sql == "ok" else 503)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """For humans: the store and Redis, each named."""
        checks = {"sql": sql_check(), "redis": "ok"}
        try:
            queues.ping()
        except RedisError as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)

    # The link epochs are read from SQL at most every TUESDAY_LINK_EPOCH_CACHE_S: a revoke takes effect within that.
    links = Links.for_runtime(runtime, clock=clock, epoch_cache_s=settings.link_epoch_cache_s)

    @app.get("/review/{name}")
    def review_sheet(name: str, request: Request) -> Response:
        """A candidate's review sheet as a page (/review/v3) or CSV (/review/v3.csv): signed links only."""
        if not links.enabled:
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            epoch = links.check(request.url.path, request.query_params)
        except LinkRevoked:
            return JSONResponse({"error": "this link was revoked: ask Tuesday for a new one "
                                          "(`/tuesday review <version>`)"}, status_code=410)
        except LinkRefused:
            return JSONResponse({"error": "this link is unsigned, altered or expired: ask Tuesday for a new one "
                                          "(`/tuesday review <version>`)"}, status_code=403)
        version, as_csv = (name[:-4], True) if name.endswith(".csv") else (name, False)
        try:
            review = load_review(runtime.registry, version)
        except (RegistryError, NoReview) as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except ArtifactError as exc:
            log.error("review sheet of %s: artifact store unavailable: %s", version, exc)
            return JSONResponse({"error": "artifact store unavailable, retry later"}, status_code=503)
        # Customer text: not cached, not framed, no scripts, and the signed URL not sent on as a referrer.
        headers = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer",
                   "X-Content-Type-Options": "nosniff"}
        if as_csv:
            return Response(review_csv(review), media_type="text/csv; charset=utf-8", headers={
                **headers, "Content-Disposition": f'attachment; filename="review-{version}.csv"'})
        csv_href = links.relative(f"{request.url.path}.csv", int(request.query_params["expires"]), epoch)
        return HTMLResponse(review_html(review, csv_url=csv_href), headers={
            **headers, "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"})

    register(app, runtime, queues, links, clock)  # /metrics and the /dashboard pages
    return app


def app_from_environment() -> FastAPI:
    """`tuesday serve --workers N`: each process's app, from the TUESDAY_* environment, its PII detector built
    before it takes a request."""
    from bot.settings import Settings
    from inference.pii import detector, door_detector

    runtime = Runtime(Settings())
    door_detector()
    detector()
    return create_app(runtime, Queues.from_settings(runtime.settings))
