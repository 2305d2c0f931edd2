"""A local stand-in for Zendesk's Tickets API: records every request and keeps each ticket's tags and comments."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeZendesk:
    """Serve http://127.0.0.1:<port>/api/v2/tickets/... in a thread, checking basic auth like Zendesk."""

    def __init__(self, email: str, api_token: str):
        self.expected_auth = "Basic " + base64.b64encode(f"{email}/token:{api_token}".encode()).decode()
        # Each request: {"method", "path", "headers", "body", "at" (time.time() when it arrived)}.
        self.requests: list[dict] = []
        self.tags: dict[str, list[str]] = {}
        self.comments: dict[str, list[dict]] = {}
        # Trouble to play: the next requests get these answers (status, headers), in order; while
        # `failing` is set every request gets it; `delay` seconds pass before any answer.
        self.scripted: list[tuple[int, dict]] = []
        self.failing: tuple[int, dict] | None = None
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeZendesk:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, status: int, headers: dict | None = None, times: int = 1) -> None:
        """Answer the next `times` requests with this status (and headers, e.g. Retry-After)."""
        with self._lock:
            self.scripted.extend([(status, headers or {})] * times)

    def _answer(self, method: str, path: str, headers: dict, body: dict) -> tuple[int, dict, dict]:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body, "at": time.time()})
            if headers.get("Authorization") != self.expected_auth:
                return 401, {"error": "Couldn't authenticate you"}, {}
            trouble = self.scripted.pop(0) if self.scripted else self.failing
            if trouble is not None:
                return trouble[0], {"error": "played trouble", "status": trouble[0]}, trouble[1]
            if m := re.fullmatch(r"/api/v2/tickets/(\d+)/tags\.json", path):
                tags = self.tags.setdefault(m.group(1), [])
                if method == "POST":  # Zendesk: POST sets the tags, replacing the old ones
                    tags.clear()
                tags.extend(t for t in body.get("tags", []) if t not in tags)  # PUT adds
                return 200, {"tags": list(tags)}, {}
            if (m := re.fullmatch(r"/api/v2/tickets/(\d+)\.json", path)) and method == "PUT":
                comment = (body.get("ticket") or {}).get("comment")
                if comment:
                    self.comments.setdefault(m.group(1), []).append(comment)
                return 200, {"ticket": {"id": int(m.group(1)), "tags": self.tags.get(m.group(1), [])}}, {}
            return 404, {"error": "InvalidEndpoint"}, {}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer, extra = fake._answer(self.command, self.path, dict(self.headers),
                                                     json.loads(raw or b"{}"))
                if fake.delay:
                    time.sleep(fake.delay)  # outside the lock: a slow helpdesk still takes other requests
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_PUT = do_POST = _serve  # noqa: N815 (http.server's naming)

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler
