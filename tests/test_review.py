"""Review sheets and sign-off: retrains through real RQ workers, Redis and SQL, tiny models, signed Slack clicks
on a real `tuesday serve` app, Slack's Web API faked at HTTP."""

from __future__ import annotations

import csv
import io
import json
import time
from urllib.parse import urlencode, urlsplit

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bot.cli.main import main
from bot.lifecycle.reports import APPROVE
from bot.lifecycle.signoff import record_passed
from bot.links import Links
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store import audit
from bot.store.importer import import_file
from bot.trail.review import ABSTAIN, FAIL, ORDER, PASS, NoReview, load_review, review_csv, review_html, review_text
from bot.web.app import create_app
from inference.artifacts import ArtifactExists
from inference.errors import RegistryError
from inference.registry import REVIEW, Registry
from inference.splits import in_holdout
from tests.conftest import TINY_CONFIG, approve_tiny_bases
from tests.slash import AGENT, CHANNEL, GROUP, LEAD, MANAGER, GroupSlack, Parts
from tests.clicks import slack_sign, wait_for

REDIS_DB = 1  # this module's own database on the local Redis, flushed around every test
SIGNING_SECRET = "slack-signing-secret"
LINK_SECRET = "link-secret"
PUBLIC = "https://tuesday.example.test"
REPORT_TS = "1764489600.000001"


def hostile_row() -> dict:
    """A holdout ticket whose text is markup (and whose reason a spreadsheet would run as a formula)."""
    for i in range(1, 500):  # letters only, so PII masking leaves it as it is
        text = f"<script>alert('{'x' * i}')</script> I will see you in court over this claim"
        if in_holdout(text):
            return {"id": "hostile", "text": text, "label": "hand_off", "reason": "=HYPERLINK(\"x\") threat"}
    raise AssertionError("no holdout text found")


@pytest.fixture
def fake_slack():
    slack = GroupSlack({GROUP: [LEAD]}).start()
    yield slack
    slack.stop()


@pytest.fixture
def base_env(monkeypatch, redis_url, fake_slack):
    """A Tuesday with managers, signed links and sign-off on."""
    for key, value in {"REDIS_URL": redis_url, "SLACK_BOT_TOKEN": "xoxb-test-token",
                       "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_slack.url,
                       "TRIAGE_CHANNEL": CHANNEL, "MANAGERS": f"{MANAGER}, {GROUP}", "ADMINS": "U0ADMIN",
                       "PROMOTION_SIGNOFF": "true", "PUBLIC_URL": PUBLIC, "LINK_SECRET": LINK_SECRET}.items():
        monkeypatch.setenv(f"TUESDAY_{key}", value)
    return monkeypatch


@pytest.fixture
def env(base_env, tiny_base, tiny_bert, tmp_path):
    """base_env, training the tiny models (encoder family only)."""
    (tmp_path / "tiny.yaml").write_text(json.dumps(TINY_CONFIG))
    for key, value in {"BASE_MODEL": str(tiny_base[1]), "ENCODER_MODEL": str(tiny_bert), "FAMILIES": "encoder",
                       "RETRAIN_CONFIG": str(tmp_path / "tiny.yaml"),
                       # A lax calibration target, so the tiny model suggests some labels instead of none.
                       "MAX_WRONG": "0.9"}.items():
        base_env.setenv(f"TUESDAY_{key}", value)
    return base_env


@pytest.fixture
def parts(env, fake_slack, demo_rows, tmp_path):
    p = Parts(fake_slack)
    approve_tiny_bases(p.runtime.sessions)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in demo_rows[:60] + [hostile_row()]))
    assert import_file(rows, p.runtime.task, p.runtime.sessions, source="demo").added == 61
    p.web = TestClient(create_app(p.runtime, p.queues))
    yield p
    p.close()


def work(parts: Parts) -> None:
    """A run's three jobs as the CPU and GPU workers do them, in this process."""
    from bot.worker.jobs import worker

    for queue in ("control", "train", "control"):
        worker(parts.queues, [queue]).work(burst=True)


def click(client: TestClient, run_id: int, uid: str):
    """The "Approve promotion" click as Slack sends it: form-encoded payload, signed, on the report message."""
    payload = {"type": "block_actions", "team": {"id": "T0TEST", "domain": "tuesday-test"},
               "user": {"id": uid, "username": uid.lower(), "name": uid.lower(), "team_id": "T0TEST"},
               "api_app_id": "A0TUESDAY", "token": "unused", "trigger_id": "1.2.3",
               "container": {"type": "message", "message_ts": REPORT_TS, "channel_id": CHANNEL},
               "channel": {"id": CHANNEL, "name": "triage"},
               "message": {"type": "message", "ts": REPORT_TS, "text": "x"},
               "response_url": "https://hooks.slack.invalid/actions/1", "actions": [{
                   "type": "button", "action_id": APPROVE, "block_id": f"tuesday_signoff_{run_id}",
                   "value": str(run_id), "action_ts": "1764489700.000100"}]}
    body = urlencode({"payload": json.dumps(payload)})
    ts = str(int(time.time()))
    return client.post("/slack/events", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_sign(SIGNING_SECRET, ts, body)})


def get(client: TestClient, url: str):
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}" if parts.query else parts.path)


def links_in(text: str) -> dict[str, str]:
    """{'open': url, 'CSV': url} of the report's review sheet line (Slack's <url|label> links)."""
    found = {}
    for piece in text.split("<")[1:]:
        url, _, rest = piece.partition("|")
        if url.startswith(PUBLIC):
            found[rest.split(">")[0]] = url
    return found


@pytest.mark.slow
def test_a_passing_run_waits_for_a_managers_click_and_the_sheet_lists_the_holdout(parts, fake_slack):
    assert "queued as run 1" in parts.slash(MANAGER, "retrain")[1]
    work(parts)

    # The gate passed, production did not move: the run waits for a manager.
    [run] = parts.runs()
    assert (run.status, run.candidate_version, run.production_before) == ("passed", "v1", None)
    assert run.active is None and run.signed_off_by is None
    assert parts.runtime.production.name() is None and parts.runtime.production.history() == []
    [post] = fake_slack.calls_to("chat.postMessage")
    text = post["body"]["text"]
    assert "*v1 passed the gate and awaits a manager's sign-off*" in text
    blocks = json.loads(post["body"]["blocks"]) if isinstance(post["body"]["blocks"], str) else post["body"]["blocks"]
    [button] = blocks[1]["elements"]
    assert (button["action_id"], button["value"], button["text"]["text"]) == (APPROVE, "1", "Approve promotion")
    urls = links_in(text)
    assert set(urls) == {"open", "CSV"} and urls["open"].startswith(f"{PUBLIC}/review/v1?expires=")

    # The sheet: exactly the snapshot's holdout rows, failures first, with the reviewer's reason.
    snapshot = [json.loads(line) for line in parts.runtime.registry.store.get_bytes(run.snapshot).decode().splitlines()]
    holdout = {row["id"]: row for row in snapshot if row["split"] == "holdout"}
    sheet = load_review(parts.runtime.registry, "v1")
    assert sorted(row["id"] for row in sheet["rows"]) == sorted(holdout) and len(holdout) >= 5
    assert [ORDER[row["result"]] for row in sheet["rows"]] == sorted(ORDER[row["result"]] for row in sheet["rows"])
    assert all(row["expected"] == holdout[row["id"]]["label"] and row["production"] is None for row in sheet["rows"])
    summary = sheet["summary"]["candidate"]
    assert sum(summary.values()) == len(holdout) and sheet["summary"]["production"] is None
    for row in sheet["rows"]:  # pass means the label the agent would see is the expected one
        assert (row["result"] == PASS) == (row["candidate"]["shown"] == row["expected"])
    hostile = next(row for row in sheet["rows"] if row["id"].endswith("hostile"))
    assert hostile["reason"].startswith("=HYPERLINK") and hostile["text"].startswith("<script>")

    # The page behind the report's link: escaped, self-contained; its CSV parses to the same rows.
    page = get(parts.web, urls["open"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "&lt;script&gt;alert(" in page.text and "<script" not in page.text and "src=" not in page.text
    assert page.text.index(f"<tr class='{sheet['rows'][0]['result']}'>") <= page.text.index(
        f"<tr class='{sheet['rows'][-1]['result']}'>")
    sheet_csv = get(parts.web, urls["CSV"])
    assert sheet_csv.status_code == 200 and sheet_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(sheet_csv.text)))
    assert [r["id"] for r in table] == [row["id"] for row in sheet["rows"]]
    assert [r["result"] for r in table] == [row["result"] for row in sheet["rows"]]
    hostile_csv = next(r for r in table if r["id"].endswith("hostile"))
    assert hostile_csv["text"].startswith("<script>") and hostile_csv["reason"].startswith("'=HYPERLINK")
    # The page's own CSV link is signed too and expires with it.
    href = page.text.split("href='")[1].split("'")[0].replace("&amp;", "&")
    assert parts.web.get(href).text == sheet_csv.text

    # Managers get a fresh link with /tuesday review; the sheet holds ticket text, so agents do not.
    fresh = links_in(parts.slash(LEAD, "review v1")[1])
    assert get(parts.web, fresh["open"]).status_code == 200 and get(parts.web, fresh["CSV"]).text == sheet_csv.text
    assert "only Tuesday's managers" in parts.slash(AGENT, "review v1")[1]

    # An agent's click is refused and changes nothing.
    assert click(parts.web, 1, AGENT).status_code == 200
    refusal = wait_for(lambda: fake_slack.calls_to("chat.postEphemeral"))
    assert refusal[0]["body"]["user"] == AGENT and "only Tuesday's managers" in refusal[0]["body"]["text"]
    assert parts.runtime.production.name() is None and parts.runs()[0].status == "passed"

    # A manager's click: production switches, the run, the audit log and the card name the signer.
    assert click(parts.web, 1, MANAGER).status_code == 200
    wait_for(lambda: fake_slack.calls_to("chat.update"))
    assert parts.runtime.production.name() == "v1"
    [run] = parts.runs()
    assert (run.status, run.signed_off_by) == ("promoted", f"slack:{MANAGER}") and run.signed_off_at is not None
    [event] = parts.runtime.production.history()
    assert event["by"] == f"slack:{MANAGER}" and event["previous"] is None and "signed off" in event["reason"]
    [entry] = audit.entries(parts.runtime.sessions, action="promote.signoff")
    assert (entry["actor"], entry["target"], entry["detail"]["run"]) == (f"slack:{MANAGER}", "v1", 1)
    [update] = fake_slack.calls_to("chat.update")
    assert update["body"]["ts"] == REPORT_TS and "*v1 promoted to production*" in update["body"]["text"]
    assert f"signed off by <@{MANAGER}>" in update["body"]["text"] and APPROVE not in json.dumps(update["body"])
    card = CliRunner().invoke(main, ["card", "v1"], catch_exceptions=False)
    assert card.exit_code == 0 and "# Tuesday model" in card.output
    assert f"Signed off by slack:{MANAGER} at " in card.output
    assert f"signed off by <@{MANAGER}>" in parts.slash(MANAGER, "status")[1]

    # A second click is told it is done; nothing moves twice.
    assert click(parts.web, 1, LEAD).status_code == 200
    wait_for(lambda: len(fake_slack.calls_to("chat.postEphemeral")) == 2)
    assert "signed off by slack:U0MANAGER" in fake_slack.calls_to("chat.postEphemeral")[1]["body"]["text"]
    assert len(parts.runtime.production.history()) == 1

    # The next candidate is compared with v1 on the same holdout: the sheet shows both models' answers.
    assert "queued as run 2" in parts.slash(MANAGER, "retrain")[1]
    work(parts)
    second = parts.runs()[1]
    assert (second.status, second.candidate_version) == ("kept", "v2")  # same data, same seed: a tie
    both = load_review(parts.runtime.registry, "v2")
    assert both["production"]["version"] == "v1" and both["summary"]["production"] is not None
    assert sorted(row["id"] for row in both["rows"]) == sorted(holdout)
    assert all(row["production"]["label"] and 0 <= row["production"]["confidence"] <= 1 for row in both["rows"])
    page = get(parts.web, links_in(fake_slack.calls_to("chat.postMessage")[1]["body"]["text"])["open"])
    assert page.status_code == 200 and "production v1" in page.text

    # A candidate compared with a production that is no longer live cannot be signed off: the run is closed.
    stale = record_passed(parts.runtime, {"version": "v2", "production": "v0", "why": "test", "metrics": {}},
                          by="cli:ana")
    assert click(parts.web, stale.id, MANAGER).status_code == 200
    told = wait_for(lambda: len(fake_slack.calls_to("chat.postEphemeral")) == 3
                    and fake_slack.calls_to("chat.postEphemeral"))
    assert "production is v1 now, not v0 that v2 was compared with" in told[2]["body"]["text"]
    update = wait_for(lambda: len(fake_slack.calls_to("chat.update")) == 3 and fake_slack.calls_to("chat.update"))
    assert "*v2 kept as candidate*" in update[2]["body"]["text"] and APPROVE not in json.dumps(update[2]["body"])
    run = parts.runs()[-1]
    assert (run.status, run.signed_off_by) == ("kept", None) and "production is v1 now" in run.why
    assert parts.runtime.production.name() == "v1" and len(audit.entries(parts.runtime.sessions,
                                                                         action="promote.signoff")) == 1


def test_answers_are_judged_as_each_server_routes_them_and_sorted_failures_first(tmp_path):
    registry = Registry.local(tmp_path)
    staging = registry.stage()
    (staging / "task.yaml").write_text("name: x\n")
    registry.commit(staging, {"family": "encoder"})
    cut = {"abstain": 0.5, "handoff": 0.2, "handoff_label": "hand_off"}
    sheet = {"version": "v1", "family": "encoder", "routing": cut,
             # production v0 had no calibration: served with the default 0.5 and no hand-off threshold
             "production": {"version": "v0", "routing": {"abstain": None, "handoff": None, "handoff_label": None}},
             "rows": [
                 {"id": "a", "text": "right", "expected": "claim_status", "reason": "asks about a claim",
                  "candidate": {"label": "claim_status", "confidence": 0.9},
                  "production": {"label": "new_claim", "confidence": 0.9}},
                 {"id": "b", "text": "unsure", "expected": "claim_status", "reason": None,
                  "candidate": {"label": "new_claim", "confidence": 0.3},
                  "production": {"label": "claim_status", "confidence": 0.6}},
                 {"id": "c", "text": "<b>odd</b> & strange", "expected": "hand_off", "reason": "=cmd|' /C calc'!A0",
                  "candidate": {"label": "claim_status", "confidence": 0.1},
                  "production": {"label": "claim_status", "confidence": 0.4}},
                 {"id": "d", "text": "wrong", "expected": "billing_dispute", "reason": None,
                  "candidate": {"label": "new_claim", "confidence": 0.7},
                  "production": {"label": "billing_dispute", "confidence": 0.8}},
                 {"id": "e", "text": "surely wrong", "expected": "billing_dispute", "reason": None,
                  "candidate": {"label": "new_claim", "confidence": 0.95},
                  "production": {"label": "new_claim", "confidence": 0.99}}]}
    registry.add_paper("v1", REVIEW, json.dumps(sheet).encode())
    with pytest.raises(ArtifactExists):  # written once
        registry.add_paper("v1", REVIEW, b"{}")
    with pytest.raises(RegistryError):
        registry.add_paper("v1", "task.yaml", b"name: y\n")  # a file the manifest lists stays as it is

    review = load_review(registry, "v1")
    # failures (most confident first), then abstentions, then passes (most confident first)
    assert [row["id"] for row in review["rows"]] == ["e", "d", "b", "a", "c"]
    by_id = {row["id"]: row for row in review["rows"]}
    assert [by_id[i]["result"] for i in "abcde"] == [PASS, ABSTAIN, PASS, FAIL, FAIL]
    assert (by_id["c"]["candidate"]["routing"], by_id["c"]["candidate"]["shown"]) == ("out_of_scope", "hand_off")
    assert [by_id[i]["production"]["result"] for i in "abcde"] == [FAIL, PASS, ABSTAIN, PASS, FAIL]
    assert review["summary"] == {"n": 5, "candidate": {PASS: 2, FAIL: 2, ABSTAIN: 1},
                                 "production": {PASS: 2, FAIL: 2, ABSTAIN: 1}, "fixed": 2, "broken": 2}

    page = review_html(review)
    assert "&lt;b&gt;odd&lt;/b&gt; &amp; strange" in page and "<b>odd" not in page
    assert "no suggestion (new_claim 30%)" in page and "hand_off (out of scope, 10%)" in page
    table = list(csv.DictReader(io.StringIO(review_csv(review))))
    assert [r["id"] for r in table] == ["e", "d", "b", "a", "c"] and table[4]["reason"] == "'=cmd|' /C calc'!A0"
    assert (table[0]["candidate_shown"], table[0]["production_result"]) == ("new_claim", FAIL)
    assert "v1 on 5 holdout tickets: 2 pass, 2 fail, 1 abstain; production v0: 2 pass" in review_text(review)
    staging = registry.stage()
    (staging / "task.yaml").write_text("name: x\n")
    registry.commit(staging, {"family": "encoder"})  # v2, built without a train job
    with pytest.raises(NoReview):
        load_review(registry, "v2")


def test_signed_links_refuse_unsigned_forged_altered_and_expired_requests(base_env):
    runtime = Runtime(Settings())
    queues = Queues.from_settings(runtime.settings)
    registry = runtime.registry
    links = Links.for_runtime(Runtime(Settings(link_ttl_hours=1)))
    url = links.url("/review/v7")
    path, query = urlsplit(url).path, urlsplit(url).query
    assert links.verify(path, dict(p.split("=") for p in query.split("&"))) and path == "/review/v7"

    web = TestClient(create_app(runtime, queues))
    assert web.get("/review/v7").status_code == 403  # unsigned
    fields = dict(p.split("=") for p in query.split("&"))
    forged = {**fields, "sig": fields["sig"][:-1] + ("0" if fields["sig"][-1] != "0" else "1")}
    assert web.get("/review/v7", params=forged).status_code == 403  # forged
    longer = {**fields, "expires": str(int(fields["expires"]) + 86400)}
    assert web.get("/review/v7", params=longer).status_code == 403  # its expiry pushed back
    assert web.get("/review/v7", params=fields).status_code == 404  # as signed: there is no v7
    assert web.get(f"/review/v7.csv?{query}").status_code == 403  # the signature of another path
    assert web.get(f"/review/v8?{query}").status_code == 403
    other = Links.for_runtime(Runtime(Settings(link_secret="another-secret"))).url("/review/v7")
    assert get(web, other).status_code == 403
    assert get(web, url).status_code == 404  # signed, but there is no v7
    assert "no model version" in get(web, url).json()["error"] and registry.names() == []

    later = TestClient(create_app(runtime, queues, clock=lambda: time.time() + 2 * 3600))
    assert get(later, url).status_code == 403  # expired

    off = Settings(link_secret="")
    assert get(TestClient(create_app(Runtime(off), queues)), url).status_code == 404  # pages off
    queues.close()


@pytest.mark.slow
def test_tuesday_train_waits_for_tuesday_promote(env, parts, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--config", str(tmp_path / "tiny.yaml")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "v1: gate passed; awaiting sign-off: tuesday promote v1 --by NAME" in result.output
    assert parts.runtime.production.name() is None

    out = tmp_path / "sheet.csv"
    result = runner.invoke(main, ["review", "v1", "--csv", str(out), "--html", str(tmp_path / "sheet.html")],
                           catch_exceptions=False)
    assert result.exit_code == 0 and len(list(csv.DictReader(out.open(encoding="utf-8")))) == len(
        load_review(parts.runtime.registry, "v1")["rows"])
    text = runner.invoke(main, ["review", "v1"], catch_exceptions=False).output
    assert text.startswith("v1 on ") and "no production model to compare with" in text
    link = runner.invoke(main, ["review", "v1", "--link"], catch_exceptions=False).output.splitlines()[0]
    assert get(parts.web, link).status_code == 200
    assert "not signed off" in runner.invoke(main, ["card", "v1"], catch_exceptions=False).output.lower()

    result = runner.invoke(main, ["promote", "v1", "--by", "ana"], catch_exceptions=False)
    assert result.exit_code == 0 and "v1 is production now (was none); signed off by cli:ana" in result.output
    assert parts.runtime.production.name() == "v1"
    [entry] = audit.entries(parts.runtime.sessions, action="promote.signoff")
    assert (entry["actor"], entry["target"]) == ("cli:ana", "v1")
    assert "Signed off by cli:ana at " in runner.invoke(main, ["card", "v1"], catch_exceptions=False).output
    again = runner.invoke(main, ["promote", "v1", "--by", "bo"])
    assert again.exit_code == 1 and "does not wait for sign-off" in again.output
