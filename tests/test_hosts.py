"""Three hosts on one machine: web, CPU and "GPU" processes with separate data folders, sharing only
Redis, PostgreSQL and an S3 endpoint (moto's standalone server), through the whole loop."""

from __future__ import annotations

import hashlib
import json
import uuid

import boto3
import pytest
from sqlalchemy import create_engine, select, text

from bot.demo.hosts import ADMIN, MANAGER, ThreeHosts, drive
from bot.demo.local_slack import LocalSlack
from bot.demo.online import _free_port
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.audit import entries
from bot.store.feedback import Feedback
from bot.store.tickets import Suggestion
from inference.base_models import BUILT_IN_NOTES
from tests.conftest import S3_KEYS, TINY_CONFIG, approve_tiny_bases, postgres_url

pytestmark = pytest.mark.slow

REDIS_DB = 5  # this module's own database on the local Redis
FIRST_LABELS = ("claim_status", "new_claim")  # topic's first version learns two labels; its second all of them
FIRST_URGENCY = ("routine", "soon")  # and so does urgency's (the demo deployment's two tasks)


def first_only(row: dict) -> dict:
    """The row with its urgency label only when it is one the first urgency version may learn."""
    return row if row.get("urgency") in FIRST_URGENCY else {k: v for k, v in row.items() if k != "urgency"}


@pytest.fixture
def pg_url():
    """A PostgreSQL database of this test's own (the hosts share it), dropped afterwards."""
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not running on 127.0.0.1:5432")
    name = f"tuesday_hosts_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_the_loop_runs_across_three_hosts_that_share_no_disk(pg_url, redis_url, s3_endpoint, s3_bucket, tmp_path,
                                                              tiny_base, tiny_bert, demo_rows, two_tasks):
    config = tmp_path / "retrain.yaml"
    config.write_text(json.dumps({"families": ["encoder"], **TINY_CONFIG}))
    shared = {"TUESDAY_DATABASE_URL": pg_url, "TUESDAY_REDIS_URL": redis_url,
              "TUESDAY_ARTIFACTS_URL": f"s3://{s3_bucket}/tuesday", "TUESDAY_S3_ENDPOINT_URL": s3_endpoint,
              **S3_KEYS, "TUESDAY_THREADS": "1"}
    first = [first_only(r) for r in demo_rows if r["label"] in FIRST_LABELS][:60]
    later = [r for r in demo_rows if r["label"] not in FIRST_LABELS][:90]
    tickets = [{"id": f"ticket-{n}", "text": r["text"], "label": r["label"]} for n, r in enumerate(demo_rows[-4:])]
    slack = LocalSlack().start()
    try:
        with ThreeHosts(tmp_path / "hosts", shared=shared, slack_url=slack.url, web_port=_free_port(),
                        cpu={"TUESDAY_RETRAIN_CONFIG": str(config)},
                        gpu={"TUESDAY_BASE_MODEL": str(tiny_base[1]), "TUESDAY_ENCODER_MODEL": str(tiny_bert)}
                        ) as three:
            observer = Runtime(Settings(data_dir=tmp_path / "observer", **{
                k.removeprefix("TUESDAY_").lower(): v for k, v in shared.items()}))
            approve_tiny_bases(observer.sessions)  # the GPU host's bases; drive approves the built-ins in Slack
            out = drive(three, observer, first_rows=first, later_rows=later, tickets=tickets)
            gpu_env, cpu_env = three.gpu.env, three.cpu.env
            dirs = {host.name: host.dir for host in three.hosts}
    finally:
        slack.stop()

    # -- the retrains: one run per task each time; the CPU host snapshotted, the GPU host trained, the CPU
    # host gated each task against its own production ------------------------------------------------
    runs = out["runs"]
    assert [(r["task"], r["status"], r["candidate_version"], r["production_before"]) for r in runs] == [
        ("topic", "promoted", "v1", None), ("urgency", "promoted", "v2", None),
        ("topic", "promoted", "v3", "v1"), ("urgency", "promoted", "v4", "v2")], runs
    assert all(r["snapshot"].startswith("snapshots/") for r in runs) and len({r["snapshot"] for r in runs}) == 4

    # -- the bucket holds every version, every file with the sha256 its manifest names -----------------
    objects = bucket_objects(s3_endpoint, s3_bucket)
    for run in runs:
        name = run["candidate_version"]
        manifest = json.loads(objects[f"tuesday/models/{name}/version.json"])
        assert manifest["snapshot"] == run["snapshot"] and manifest["task"] == run["task"]
        for rel, meta in manifest["artifacts"].items():
            assert hashlib.sha256(objects[f"tuesday/models/{name}/{rel}"]).hexdigest() == meta["sha256"], rel
    snapshot = [json.loads(line) for line in objects[f"tuesday/{runs[0]['snapshot']}"].decode().splitlines()]
    assert {row["label"] for row in snapshot} == set(FIRST_LABELS) and len(snapshot) == len(first)
    urgency = [json.loads(line) for line in objects[f"tuesday/{runs[1]['snapshot']}"].decode().splitlines()]
    assert {row["label"] for row in urgency} == set(FIRST_URGENCY)  # only the rows labelled for urgency
    assert len(urgency) == sum(1 for r in first if r.get("urgency"))

    # -- suggestions: the ticket that waited for topic v1, then v1, v3, and v3 after urgency's rollback ------
    assert [s["model_version"] for s in out["suggestions"]] == ["v1", "v1", "v3", "v3"]
    assert [s["fields"].get("urgency") for s in out["suggestions"][1:]] == ["v2", "v4", "v2"]
    assert out["suggestions"][0]["ticket"] == "ticket-0"  # sent before any model existed
    assert "*urgency* production is now *v2* (was v4)" in out["rollback"]
    posts = [c["body"] for c in slack.calls_to("chat.postMessage")]
    reports = [p["text"] for p in posts if p["text"].startswith("*Retrain run")]
    assert len(reports) == 4 and "of *urgency*" in reports[1] and "*v4 promoted" in reports[3]
    assert len([p for p in posts if "blocks" in p]) == 4  # one suggestion message per ticket, every field in it

    # -- the SQL store saw every switch of each task, with who and why, in order ---------------------
    history = observer.production.history()
    assert [(e["action"], e["version"], e["previous"]) for e in history] == [("promote", "v1", None),
                                                                             ("promote", "v3", "v1")]
    fields = observer.for_task("urgency").production.history()
    assert [(e["action"], e["version"], e["previous"]) for e in fields] == [
        ("promote", "v2", None), ("promote", "v4", "v2"), ("rollback", "v2", "v4")]
    assert history[0]["by"] == f"slack:{MANAGER}" and fields[2]["by"] == f"slack:{ADMIN}"
    # -- and the audit log every admin action, oldest first ------------------------------------------
    assert [(e["actor"], e["action"], e["target"]) for e in reversed(entries(observer.sessions))] == [
        ("cli:test", "base.approve", "tiny-base"), ("cli:test", "base.approve", "tiny-bert"),
        *[(f"slack:{ADMIN}", "base.approve", note.name) for note in BUILT_IN_NOTES],
        (MANAGER, "retrain", "run 1"), (MANAGER, "retrain", "run 2"), (f"slack:{MANAGER}", "promote", "v1"),
        (f"slack:{MANAGER}", "promote", "v2"), (MANAGER, "retrain", "run 3"), (MANAGER, "retrain", "run 4"),
        (f"slack:{MANAGER}", "promote", "v3"), (f"slack:{MANAGER}", "promote", "v4"),
        (f"slack:{ADMIN}", "rollback", "v2")]
    assert (observer.production.name(), observer.for_task("urgency").production.name()) == ("v3", "v2")
    with observer.sessions() as session:
        clicks = session.scalars(select(Feedback)).all()
        assert {c.task for c in clicks} <= {"topic", "urgency"} and clicks[0].action in ("accept", "change")
        assert {(c.task, c.model_version) for c in clicks} <= {("topic", "v1"), ("urgency", "v2")}
        assert len(session.scalars(select(Suggestion)).all()) in (7, 8)  # the first ticket's urgency may be missing

    # -- what each host holds: nothing shared, the GPU host without SQL or Slack ----------------------
    assert "TUESDAY_DATABASE_URL" not in gpu_env and not any(k.startswith("TUESDAY_SLACK") for k in gpu_env)
    # The GPU host trained only jobs the CPU host signed, holding the public key alone (and made no key of its own).
    assert "TUESDAY_JOB_SIGNING_KEY" not in gpu_env and gpu_env["TUESDAY_JOB_VERIFY_KEY"]
    assert "TUESDAY_JOB_SIGNING_KEY" in cpu_env and not (dirs["gpu"] / "job-signing.key").exists()
    assert not (dirs["gpu"] / "tuesday.db").exists() and not (dirs["cpu"] / "tuesday.db").exists()
    assert "TUESDAY_SLACK_SIGNING_SECRET" not in cpu_env
    served = {p.relative_to(dirs["cpu"]).parts[2] for p in (dirs["cpu"] / "cache" / "models").rglob("*.gguf")}
    assert served == {"v1", "v2", "v3", "v4"}  # the CPU host downloaded each version it served
    assert not list((dirs["web"]).rglob("*.gguf"))  # the web host reads manifests, never weights
    for path in (dirs["cpu"] / "cache" / "models").rglob("*.gguf"):
        version = path.relative_to(dirs["cpu"] / "cache" / "models").parts[0]
        manifest = json.loads(objects[f"tuesday/models/{version}/version.json"])
        rel = path.relative_to(dirs["cpu"] / "cache" / "models" / version).as_posix()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest["artifacts"][rel]["sha256"]
    # the GPU host built in its own folder and kept no copy of what it uploaded
    assert not list((dirs["gpu"] / "cache" / "models").rglob("encoder-adapter"))
