"""`/tuesday` through a real bolt App with signed requests: the fixtures and helpers the command tests share."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from sqlalchemy import select

from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.listeners.commands import register
from bot.store.examples import Example
from bot.store.runs import RetrainRun
from tests.fake_slack import FakeSlack
from tests.demo_names import DEMO_TASK

REDIS_DB = 14  # this module's own database on the local Redis, flushed around every test
SIGNING_SECRET = "slack-signing-secret"
CHANNEL = "C0TRIAGE"
MANAGER, LEAD, ADMIN, AGENT = "U0MANAGER", "U0LEAD", "U0ADMIN", "U0AGENT"
GROUP = "S0LEADS"


class GroupSlack(FakeSlack):
    """FakeSlack that also answers usergroups.users.list (a GET with query parameters)."""

    def __init__(self, groups: dict[str, list[str]]):
        self.groups = groups
        self.group_delay_s = 0.0  # how long usergroups.users.list takes to answer (a slow Slack)
        super().__init__()

    def _answer(self, method: str, headers: dict, body: dict) -> dict:
        if method == "usergroups.users.list":
            time.sleep(self.group_delay_s)
        answer = super()._answer(method, headers, body)
        if method != "usergroups.users.list" or not answer["ok"]:
            return answer
        if body.get("usergroup") not in self.groups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": self.groups[body["usergroup"]]}

    def _handler(self):
        fake, base = self, super()._handler()

        class Handler(base):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                answer = json.dumps(fake._answer(url.path.rsplit("/", 1)[-1], dict(self.headers),
                                                 dict(parse_qsl(url.query)))).encode()
                BaseHTTPRequestHandler.send_response(self, 200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return Handler


@pytest.fixture
def fake_slack():
    slack = GroupSlack({GROUP: [LEAD, "U0OTHER"]}).start()
    yield slack
    slack.stop()


@pytest.fixture
def env(monkeypatch, redis_url, fake_slack):
    """Settings of a Tuesday process with managers, a manager group and an admin."""
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("TUESDAY_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("TUESDAY_SLACK_API_URL", fake_slack.url)
    monkeypatch.setenv("TUESDAY_TRIAGE_CHANNEL", CHANNEL)
    monkeypatch.setenv("TUESDAY_MANAGERS", f"{MANAGER}, {GROUP}")
    monkeypatch.setenv("TUESDAY_ADMINS", ADMIN)
    return monkeypatch


class Parts:
    """Runtime, queues and a bolt App with /tuesday registered, as bot.slack.app wires them."""

    def __init__(self, fake_slack: FakeSlack):
        self.settings = Settings()
        self.runtime, self.queues = Runtime(self.settings), Queues.from_settings(self.settings)
        self.app = App(client=WebClient(token=self.settings.slack_bot_token, base_url=fake_slack.url),
                       signing_secret=self.settings.slack_signing_secret, token_verification_enabled=False)
        register(self.app, self.runtime, self.queues)
        self.fake = fake_slack

    def slash(self, user: str, text: str, *, secret: str = SIGNING_SECRET):
        """Send `/tuesday text` as Slack would; returns (HTTP status, ephemeral text or raw body)."""
        body = urlencode({"token": "legacy", "team_id": "T0TEAM", "team_domain": "harbor", "channel_id": CHANNEL,
                          "channel_name": "triage", "user_id": user, "user_name": user.lower(),
                          "command": "/tuesday", "text": text, "api_app_id": "A0TUESDAY",
                          "response_url": f"{self.fake.url}response", "trigger_id": "1.2.3"})
        ts = str(int(time.time()))
        signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        response = self.app.dispatch(BoltRequest(body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature}))
        if response.status != 200:
            return response.status, response.body
        reply = json.loads(response.body)
        assert reply["response_type"] == "ephemeral"
        return response.status, reply["text"]

    def runs(self) -> list[RetrainRun]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(RetrainRun).order_by(RetrainRun.id)))

    def close(self):
        self.queues.close()


@pytest.fixture
def parts(env, fake_slack):
    p = Parts(fake_slack)
    yield p
    p.close()


def add_examples(runtime, n: int, start: int = 0, at: datetime | None = None) -> None:
    at = at or datetime.now(timezone.utc)
    with runtime.sessions() as session:
        session.add_all([Example(task=DEMO_TASK, source="test", external_id=str(i), text=f"where is my claim {i}", label="claim_status",
                                 created_at=at) for i in range(start, start + n)])
        session.commit()


def fake_version(registry, macro_f1: float, run: int | None = None):
    """A committed version with metrics only (enough for the registry, status and rollback); with `run`, as that
    retrain run's candidate."""
    return registry.commit(registry.stage(), {"metrics": {"n": 40, "accuracy": macro_f1 + 0.1, "macro_f1": macro_f1,
                                                          "handoff_recall": 0.5}, "files": {},
                                              **({"run": run} if run is not None else {})})
