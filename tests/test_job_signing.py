"""What the GPU node trusts comes signed by the control side: a forged, altered, replayed or stale train job is refused
before anything loads (inference.job_signing), by the real worker on a real Redis."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from bot.lifecycle.jobs import QUEUED_TRAIN_JOB, signed_train_kwargs, train_job_id
from bot.lifecycle.runs import request_retrain
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.importer import import_file
from bot.store.runs import get_run
from bot.worker.jobs import worker
from inference.job_signing import (
    KEY_FILE,
    JobSignatureError,
    new_key_pair,
    parse_private_key,
    sign_job,
    signing_key,
    verify_job,
    verify_keys,
)
from inference.settings import NodeSettings
from inference.snapshot import upload_snapshot, upload_task, write_snapshot

REDIS_DB = 6  # shared with tests/test_shutdown.py (every database is taken); flushed around each test
ARGS = {"snapshot_key": "snapshots/abc.jsonl", "snapshot_sha256": "a" * 64, "task_key": "tasks/t.yaml",
        "task_sha256": "b" * 64, "config": {"learning_rate": 0.05, "families": ["encoder"]}, "production": None,
        "run_id": 7, "licenses": {"SmolLM2-135M-Instruct": {"license": "Apache-2.0", "files": {"model.gguf": "c" * 64}}},
        "data_approval": None, "shared_encoder": None}


@pytest.fixture
def keys():
    private, public = new_key_pair()
    return parse_private_key(private), verify_keys(public, Path("unused"))


# -- the envelope ------------------------------------------------------------------------------------------
def test_a_signed_job_verifies_and_any_change_is_refused(keys):
    private, public = keys
    signed = sign_job(ARGS, "train-7", private)
    assert verify_job(json.loads(json.dumps(signed)), "train-7", public) == ARGS  # as Redis hands it over

    def refused(envelope, job_id="train-7", **kw) -> str:
        with pytest.raises(JobSignatureError) as raised:
            verify_job(envelope, job_id, public, **kw)
        return str(raised.value)

    for path, value in ((("licenses", "SmolLM2-135M-Instruct", "license"), "made-up approval"),
                        (("licenses", "SmolLM2-135M-Instruct", "files", "model.gguf"), "d" * 64),
                        (("snapshot_key",), "snapshots/forged.jsonl"), (("config", "learning_rate"), 0.050001),
                        (("run_id",), 8)):
        altered = json.loads(json.dumps(signed))
        target = altered["args"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert "does not match its arguments" in refused(altered), path
    extra = json.loads(json.dumps(signed))
    extra["args"]["base"] = "/tmp/anything"  # an argument the control side never sent
    assert "does not match" in refused(extra)
    assert "carries the signed arguments of job train-7" in refused(signed, job_id="train-8")  # replayed elsewhere
    moved = {**signed, "job_id": "train-8"}  # the envelope relabelled for the other id: the signature covers it
    assert "does not match" in refused(moved, job_id="train-8")
    assert "not signed by the control side" in refused(ARGS)
    assert "not signed" in refused({k: v for k, v in signed.items() if k != "signature"})
    assert refused({**signed, "signature": "%%%"}) and refused({**signed, "issued_at": "soon"})
    assert "ago, longer than 24 h" in refused(sign_job(ARGS, "train-7", private, now=time.time() - 25 * 3600))
    assert "in the future" in refused(sign_job(ARGS, "train-7", private, now=time.time() + 3600))
    other = parse_private_key(new_key_pair()[0])
    assert "under any trusted key" in refused(sign_job(ARGS, "train-7", other))
    # what the envelope says besides the signed fields never reaches the message (it would reach Slack's report)
    said = refused({**signed, "key": "<https://evil.example|click here>", "signature": signed["signature"][::-1]})
    assert "evil" not in said and "names key unknown" in said
    assert "evil" not in refused({**signed, "v": "<https://evil.example|v2>"})
    with pytest.raises(JobSignatureError, match="no key to check train jobs"):
        verify_job(signed, "train-7", [])


def test_keys_rotate_and_come_as_pem_too(keys, tmp_path):
    private, public = keys
    newer_text, newer_public = new_key_pair()
    both = verify_keys(f"{newer_public}, " + public_text(public[0]), tmp_path)
    assert verify_job(sign_job(ARGS, "train-1", private), "train-1", both) == ARGS  # the old key, during a rotation
    assert verify_job(sign_job(ARGS, "train-1", parse_private_key(newer_text)), "train-1", both) == ARGS
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    pub_pem = public[0].public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert verify_job(sign_job(ARGS, "t", parse_private_key(pem)), "t", verify_keys(pub_pem, tmp_path)) == ARGS
    for bad in ("not a key", "AAAA"):
        with pytest.raises(JobSignatureError, match="TUESDAY_JOB_VERIFY_KEY"):
            verify_keys(bad, tmp_path)
        with pytest.raises(JobSignatureError, match="TUESDAY_JOB_SIGNING_KEY"):
            parse_private_key(bad)


def public_text(public) -> str:
    import base64

    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def test_one_machine_generates_its_key_once_readable_by_its_owner_only(tmp_path):
    assert verify_keys("", tmp_path) == []  # a verifier never makes a key of its own
    first = signing_key("", tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = signing_key("", tmp_path)
    signed = sign_job(ARGS, "train-1", again)
    assert verify_job(signed, "train-1", verify_keys("", tmp_path)) == ARGS
    assert verify_job(sign_job(ARGS, "train-1", first), "train-1", verify_keys("", tmp_path)) == ARGS


def test_the_key_pair_command_prints_both_settings():
    out = subprocess.run([sys.executable, "-m", "inference.job_signing"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    lines = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("TUESDAY_"))
    private, public = parse_private_key(lines["TUESDAY_JOB_SIGNING_KEY"]), verify_keys(lines["TUESDAY_JOB_VERIFY_KEY"], Path())
    assert verify_job(sign_job(ARGS, "x", private), "x", public) == ARGS


# -- the real worker on a real Redis --------------------------------------------------------------------------
@pytest.fixture
def hosts(monkeypatch, redis_url, demo_rows, tmp_path):
    """A CPU side holding the signing key, a GPU side holding only the public key; one Redis, one artifact folder."""
    private, public = new_key_pair()
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_ARTIFACTS_URL", str(tmp_path / "bucket"))
    monkeypatch.setenv("TUESDAY_JOB_SIGNING_KEY", private)
    runtime = Runtime(Settings())
    queues = Queues.from_settings(runtime.settings)
    yield runtime, queues, public
    queues.close()


def gpu_env(monkeypatch, public: str) -> None:
    """From here on, the process is the GPU node: no signing key, the public one."""
    monkeypatch.delenv("TUESDAY_JOB_SIGNING_KEY")
    monkeypatch.setenv("TUESDAY_JOB_VERIFY_KEY", public)


def written(runtime) -> set[str]:
    """Everything in the artifact store and in the data folder's cache and staging."""
    roots = [Path(runtime.settings.artifacts_url), runtime.settings.data_dir]
    return {str(p) for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def real_args(runtime, demo_rows, tmp_path) -> dict:
    store = runtime.registry.store
    path = write_snapshot([{k: r.get(k) for k in ("id", "text", "label", "reason")} for r in demo_rows[:30]],
                          tmp_path / "snapshots", 0.2)
    return {**upload_snapshot(store, path), **upload_task(store, runtime.task.to_yaml()), "data_approval": None,
            "config": {}, "production": None, "run_id": 1, "licenses": {}, "shared_encoder": None}


def test_forged_train_jobs_are_refused_before_anything_loads(hosts, demo_rows, tmp_path, monkeypatch):
    runtime, queues, public = hosts
    args = real_args(runtime, demo_rows, tmp_path)
    forged_licenses = {"SmolLM2-135M-Instruct": {"license": "MIT", "approved_by": "slack:UFORGED",
                                                 "restrictions": {"commercial": "allowed"}}}
    # 1. plain kwargs, as the last release queued them, with a made-up approval
    queues.enqueue("train", QUEUED_TRAIN_JOB, job_id="train-1", kwargs={**args, "licenses": forged_licenses})
    # 2. the control side's signature, one argument changed afterwards
    signed = signed_train_kwargs(runtime.settings, "train-2", {**args, "run_id": 2})
    signed["signed"]["args"]["licenses"] = forged_licenses
    queues.enqueue("train", QUEUED_TRAIN_JOB, job_id="train-2", kwargs=signed)
    # 3. a real, untouched signature copied onto another job id
    queues.enqueue("train", QUEUED_TRAIN_JOB, job_id="train-3",
                   kwargs=signed_train_kwargs(runtime.settings, "train-4", {**args, "run_id": 4}))
    # 4. a signed envelope plus one more plain argument beside it
    extra = signed_train_kwargs(runtime.settings, "train-5", {**args, "run_id": 5})
    queues.enqueue("train", QUEUED_TRAIN_JOB, job_id="train-5", kwargs={**extra, "base": str(tmp_path / "evil")})
    before = written(runtime)

    gpu_env(monkeypatch, public)
    worker(queues, ["train"]).work(burst=True)
    said = {}
    for job_id in ("train-1", "train-2", "train-3", "train-5"):
        job = queues.fetch(job_id)
        assert job is not None and job.get_status() == "failed", (job_id, queues.connection.keys("rq:job:*"))
        said[job_id] = job.latest_result().exc_string.strip().splitlines()[-1]
        assert said[job_id].startswith("inference.job_signing.JobSignatureError: train job "), said[job_id]
    assert "not signed by the control side" in said["train-1"] and "not signed" in said["train-5"]
    assert "does not match its arguments" in said["train-2"]
    assert "carries the signed arguments of job train-4" in said["train-3"]
    assert written(runtime) == before  # nothing downloaded, staged or uploaded
    assert runtime.registry.store.list("models/") == []


def test_the_gpu_node_refuses_a_run_signed_with_a_key_it_does_not_trust_and_the_run_says_why(
        hosts, demo_rows, tmp_path, monkeypatch):
    """The real prepare step signs; a GPU node trusting another key refuses; the gate job closes the run naming it."""
    runtime, queues, public = hosts
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in demo_rows[:40]))
    assert import_file(rows, runtime.task, runtime.sessions, source="demo").added == 40
    run, _ = request_retrain(runtime, queues, requested_by="ann", trigger="cli")
    worker(queues, ["control"]).work(burst=True)  # the snapshot, and the signed train job
    envelope = queues.fetch(train_job_id(run.id)).kwargs["signed"]
    assert envelope["job_id"] == "train-1" and set(envelope["args"]) >= {"snapshot_key", "licenses", "config"}
    assert verify_job(envelope, "train-1", verify_keys(public, tmp_path))["run_id"] == run.id  # the CPU side signed it
    before = written(runtime)

    gpu_env(monkeypatch, new_key_pair()[1])  # a GPU node given some other public key
    worker(queues, ["train"]).work(burst=True)
    assert written(runtime) == before
    worker(queues, ["control"]).work(burst=True)  # the gate job runs after a failed train job too
    done = get_run(runtime.sessions, run.id)
    assert done.status == "failed"
    assert "JobSignatureError: train job train-1: its signature does not match its arguments under any trusted key" \
        in done.error, done.error
    assert runtime.production.name() is None and runtime.registry.store.list("models/") == []


def test_a_gpu_node_without_any_key_refuses_every_train_job(hosts, demo_rows, tmp_path, monkeypatch):
    runtime, queues, _ = hosts
    queues.enqueue("train", QUEUED_TRAIN_JOB, job_id="train-1",
                   kwargs=signed_train_kwargs(runtime.settings, "train-1", real_args(runtime, demo_rows, tmp_path)))
    monkeypatch.delenv("TUESDAY_JOB_SIGNING_KEY")
    monkeypatch.setenv("TUESDAY_DATA_DIR", str(tmp_path / "gpu"))  # its own folder: no key file there either
    assert NodeSettings().job_verify_keys() == []
    worker(queues, ["train"]).work(burst=True)
    text = queues.fetch("train-1").latest_result().exc_string
    assert "JobSignatureError: this host has no key to check train jobs with: set TUESDAY_JOB_VERIFY_KEY" in text
    assert not (tmp_path / "gpu" / KEY_FILE).exists() and not (tmp_path / "gpu" / "cache").exists()
