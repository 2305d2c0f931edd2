"""A local stand-in for the Slack Web API: records every call, answers like Slack does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl


class FakeSlack:
    """Serve http://127.0.0.1:<port>/api/<method> in a thread; `calls` holds what arrived."""

    def __init__(self):
        # Each call: {"method", "headers", "body"}, the body decoded from JSON or a form.
        self.calls: list[dict] = []
        # Slack error codes (e.g. "internal_error") the next calls answer with, {"ok": false, ...}.
        self.fail_next: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls_to(self, method: str) -> list[dict]:
        with self._lock:
            return [c for c in self.calls if c["method"] == method]

    def _answer(self, method: str, headers: dict, body: dict) -> dict:
        with self._lock:
            self.calls.append({"method": method, "headers": headers, "body": body})
            if self.fail_next:
                return {"ok": False, "error": self.fail_next.pop(0)}
            ts = f"1764489600.{len(self.calls):06d}"
        if method == "chat.postMessage":
            # Slack answers with the channel's id even when a name was given.
            return {"ok": True, "channel": body.get("channel"), "ts": ts,
                    "message": {"ts": ts, "text": body.get("text")}}
        return {"ok": True}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw or b"{}")
                else:
                    body = dict(parse_qsl(raw.decode()))
                method = self.path.rsplit("/", 1)[-1]
                answer = json.dumps(fake._answer(method, dict(self.headers), body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler
