"""`tuesday demo --online`: the whole online loop in one terminal, without a Slack workspace.

A local stand-in for Slack's Web API prints every message Tuesday posts; tickets arrive through
the signed generic webhook of a real `tuesday serve` app on localhost; a suggest worker and a
train worker run in this process (RQ, burst mode); a scripted agent clicks Accept or Change
label with requests signed exactly as Slack signs them, then a manager asks `/tuesday retrain`.
With several fields (the demo's topic and urgency) the agent also changes a wrong urgency, and
the manager retrains that field alone: its report names it, and topic's production stays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import click
import httpx

from bot.demo.local_slack import LocalSlack
from inference.errors import TuesdayError

CHANNEL, MANAGER, AGENT, STRANGER = "C0TRIAGE", "U0MANAGER", "U0AGENT", "U0STRANGER"


def slack_signature(secret: str, timestamp: str, body: str) -> str:
    """X-Slack-Signature as Slack computes it."""
    return "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()


def echo(method: str, body: dict) -> None:
    """Print what Tuesday sent to Slack, as a person in the channel would read it."""
    if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
        kind = {"chat.postMessage": "posts", "chat.update": "updates its message",
                "chat.postEphemeral": "whispers"}[method]
        click.secho(f"\n[slack] Tuesday {kind} in {body.get('channel')}:", fg="cyan")
        blocks = body.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        for line in _block_lines(blocks) or [body.get("text", "")]:
            click.echo(f"  {line}")


def _block_lines(blocks) -> list[str]:
    lines = []
    for block in blocks or []:
        if block.get("type") == "section" and block.get("text"):
            lines += block["text"]["text"].splitlines()
        elif block.get("type") == "context":
            lines += [e.get("text", "") for e in block.get("elements", [])]
        elif block.get("type") == "actions":
            lines.append("[ " + " | ".join(e.get("text", {}).get("text", e.get("placeholder", {}).get("text", ""))
                                           for e in block.get("elements", [])) + " ]")
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _environment(values: dict[str, str]):
    """Workers build their settings from TUESDAY_* at call time, so the demo's go in the environment."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _serving(app, port: int):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _work(queues, name: str) -> None:
    """Run one worker over a queue until it is empty (no fork, as on the GPU node)."""
    from bot.queues import WORKER_QUEUES
    from bot.worker.jobs import worker

    worker(queues, WORKER_QUEUES[name]).work(burst=True)


class Agent:
    """Clicks and slash commands, signed exactly as Slack signs them."""

    def __init__(self, http: httpx.Client, secret: str):
        self.http, self.secret = http, secret

    def _post(self, body: str):
        ts = str(int(time.time()))
        response = self.http.post("/slack/events", content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": slack_signature(self.secret, ts, body)})
        response.raise_for_status()
        return response

    def click(self, suggestion, action: dict, user: str) -> None:
        action = {**action, "block_id": f"tuesday_suggestion_{suggestion.id}", "action_ts": f"{time.time():.6f}"}
        payload = {"type": "block_actions", "team": {"id": "T0LOCAL", "domain": "local"},
                   "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0LOCAL"},
                   "api_app_id": "A0LOCAL", "token": "unused", "trigger_id": "1.2.3",
                   "container": {"type": "message", "message_ts": suggestion.slack_ts, "channel_id": CHANNEL},
                   "channel": {"id": CHANNEL, "name": "triage"},
                   "message": {"type": "message", "ts": suggestion.slack_ts, "text": ""}, "actions": [action]}
        self._post(urlencode({"payload": json.dumps(payload)}))

    def slash(self, user: str, text: str) -> str:
        body = urlencode({"team_id": "T0LOCAL", "team_domain": "local", "channel_id": CHANNEL, "channel_name": "triage",
                          "user_id": user, "user_name": user.lower(), "command": "/tuesday", "text": text,
                          "api_app_id": "A0LOCAL", "response_url": "http://127.0.0.1:9/unused", "trigger_id": "1.2.3"})
        response = self._post(body)
        return response.json().get("text", "") if response.content else ""


def run_online_demo(rt, *, tickets: int = 6, retrain_config: Path | None = None) -> dict:
    """Drive ticket → suggestion → click → retrain → promotion against local stand-ins; returns a summary."""
    from bot.demo.pipeline import DEMO_CONFIG
    from bot.intake import GENERIC_SIGNATURE, GENERIC_TIMESTAMP, generic_signature
    from bot.queues import Queues
    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.slack.blocks import ACCEPT, CHANGE, option_value
    from bot.slack.fields import ACCEPT_ALL
    from bot.store.tickets import Suggestion, Ticket
    from bot.trail.curation import holdout_rows
    from bot.web.app import create_app

    if rt.production.name() is None:
        raise TuesdayError("no production model yet: run `tuesday demo` first (it trains and promotes one)")
    rows = holdout_rows(rt.sessions, rt.task, rt.settings.holdout_fraction,
                        approval_required=rt.settings.data_approval)[:tickets]
    fields = [scoped for scoped in rt.each_task()[1:] if scoped.production.name() is not None]
    field_gold = _field_gold(rt, fields)  # {task: {text: label}} from the examples labelled for each field
    slack = LocalSlack(echo=echo).start()
    signing, webhook = secrets.token_hex(16), secrets.token_hex(16)
    env = {"TUESDAY_SLACK_API_URL": slack.url, "TUESDAY_SLACK_BOT_TOKEN": "xoxb-local-demo",
           "TUESDAY_SLACK_SIGNING_SECRET": signing, "TUESDAY_TRIAGE_CHANNEL": CHANNEL,
           "TUESDAY_GENERIC_WEBHOOK_SECRET": webhook, "TUESDAY_MANAGERS": MANAGER, "TUESDAY_ADMINS": MANAGER,
           "TUESDAY_LABELLERS": AGENT, "TUESDAY_RETRAIN_AFTER_LABELS": "0", "TUESDAY_DATA_DIR": str(rt.settings.data_dir.resolve()),
           "TUESDAY_RETRAIN_CONFIG": str(retrain_config or DEMO_CONFIG)}
    if rt.settings.database_url:
        env["TUESDAY_DATABASE_URL"] = rt.settings.database_url
    summary: dict = {"tickets": [], "clicks": []}
    with _environment(env):
        settings = Settings()
        runtime, queues = Runtime(settings), Queues.from_settings(settings)
        try:
            with _serving(create_app(runtime, queues), _free_port()) as url, httpx.Client(base_url=url) as http:
                click.secho(f"\n== tickets arrive at {url}/webhooks/generic (signed)", bold=True)
                gold, keys = {}, {}
                for row in rows:
                    external_id = f"demo-online-{row['id']}"
                    body = json.dumps({"id": external_id, "subject": row["text"][:60], "text": row["text"]}).encode()
                    ts = str(int(time.time()))
                    answer = http.post("/webhooks/generic", content=body, headers={
                        "Content-Type": "application/json", GENERIC_TIMESTAMP: ts,
                        GENERIC_SIGNATURE: generic_signature(webhook, ts, body)})
                    click.echo(f"  {answer.status_code} {answer.json()}")
                    gold[external_id], keys[external_id] = row["label"], row["id"]
                    summary["tickets"].append(answer.json())

                click.secho("\n== the suggest worker labels them and posts to Slack", bold=True)
                _work(queues, "suggest")

                click.secho("\n== a scripted agent reviews each suggestion", bold=True)
                agent = Agent(http, signing)
                with runtime.sessions() as session:
                    pairs = [(s, session.get(Ticket, s.ticket_id)) for s in session.query(Suggestion).all()]
                    by_ticket = {(s.ticket_id, s.task): s for s, _ in pairs}
                changed_field = None
                for suggestion, ticket in pairs:
                    want = gold.get(ticket.external_id)
                    if want is None or not suggestion.slack_ts or suggestion.task != runtime.task.name:
                        continue
                    # One wrong field on one ticket first (the agent fixes only that), then the routing label.
                    for scoped in fields:
                        name = scoped.task.name
                        row, right = by_ticket.get((ticket.id, name)), field_gold[name].get(keys[ticket.external_id])
                        if row is not None and right and row.label != right and changed_field is None:
                            agent.click(suggestion, _select(CHANGE, option_value(row.id, right), right), AGENT)
                            summary["clicks"].append({"ticket": ticket.external_id, "field": name,
                                                      "suggested": row.label, "agent": right})
                            changed_field = name
                    if suggestion.label == want:
                        action = ACCEPT_ALL if any((ticket.id, s.task.name) in by_ticket for s in fields) else ACCEPT
                        agent.click(suggestion, {"type": "button", "action_id": action, "value": str(suggestion.id)}, AGENT)
                    else:
                        agent.click(suggestion, _select(CHANGE, option_value(suggestion.id, want), want), AGENT)
                    summary["clicks"].append({"ticket": ticket.external_id, "suggested": suggestion.label, "agent": want})
                _wait_for(lambda: len(slack.calls_to("chat.update")) >= len(summary["clicks"]))

                retrain = f"retrain {changed_field}" if changed_field else "retrain"
                click.secho(f"\n== /tuesday {retrain}", bold=True)
                click.echo(f"  {STRANGER}: {agent.slash(STRANGER, retrain)}")
                click.echo(f"  {MANAGER}: {agent.slash(MANAGER, retrain)}")
                summary["retrained"] = changed_field or runtime.task.name
                click.secho("\n== the train worker retrains, gates and reports", bold=True)
                _work(queues, "control")  # the snapshot; then the GPU node's job
                _work(queues, "train")
                _work(queues, "control")  # the gate and the report
                click.secho("\n== /tuesday status", bold=True)
                click.echo(agent.slash(MANAGER, "status"))
        finally:
            queues.close()
            slack.stop()
    summary["posted"] = len(slack.calls_to("chat.postMessage"))
    summary["updated"] = len(slack.calls_to("chat.update"))
    summary["production"] = rt.production.name()
    summary["fields_production"] = {scoped.task.name: scoped.production.name() for scoped in rt.each_task()[1:]}
    return summary


def _select(action_id: str, value: str, text: str) -> dict:
    return {"type": "static_select", "action_id": action_id,
            "selected_option": {"text": {"type": "plain_text", "text": text}, "value": value}}


def _field_gold(rt, fields) -> dict[str, dict[str, str]]:
    """Each field's label of the demo examples, by example key (the scripted agent knows the right answer)."""
    from inference.task import demo_examples_path

    rows = [json.loads(line) for line in demo_examples_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    return {s.task.name: {f"demo:{r['id']}": r[s.task.name] for r in rows if r.get(s.task.name)} for s in fields}


def _wait_for(check, timeout: float = 30.0) -> None:
    """Clicks are acknowledged first and handled after; wait for their message updates."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)
