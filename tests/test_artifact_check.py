"""A host checks its artifact store when it starts: a missing bucket stops `tuesday worker` and `tuesday serve` at
once with one message naming the bucket and how to create it (moto's S3 server over HTTP, real Redis)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from inference.artifacts import S3Artifacts
from tests.conftest import S3_KEYS

REDIS_DB = 11


@pytest.mark.parametrize("command", [["worker", "--burst"], ["serve", "--port", "0"]])
def test_a_missing_bucket_stops_a_host_at_start_saying_how_to_create_it(s3_endpoint, redis_url, monkeypatch,
                                                                      command):
    for key, value in {**S3_KEYS, "TUESDAY_S3_ENDPOINT_URL": s3_endpoint, "TUESDAY_REDIS_URL": redis_url,
                       "TUESDAY_ARTIFACTS_URL": "s3://no-such-bucket/tuesday"}.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert "the bucket 'no-such-bucket' does not exist" in result.output and "aws s3 mb s3://no-such-bucket" in result.output


def test_an_existing_bucket_passes_and_a_writing_host_proves_it_can_write(s3_endpoint, s3_bucket):
    store = S3Artifacts(s3_bucket, "tuesday", endpoint_url=s3_endpoint, region="us-east-1",
                        access_key_id="testing", secret_access_key="testing")
    store.check(write=False)
    assert store.list("checks") == []
    store.check(write=True)
    store.check(write=True)  # the same key at every start: nothing piles up
    assert len(store.list("checks")) == 1


def test_the_hosts_demo_creates_its_bucket_on_a_local_endpoint(s3_endpoint, monkeypatch):
    import uuid

    from bot.demo.hosts import local_bucket
    from bot.runtime import Runtime
    from bot.settings import Settings

    bucket = f"demo-{uuid.uuid4().hex[:8]}"
    for key, value in {**S3_KEYS, "TUESDAY_S3_ENDPOINT_URL": s3_endpoint,
                       "TUESDAY_ARTIFACTS_URL": f"s3://{bucket}/tuesday"}.items():
        monkeypatch.setenv(key, value)
    rt = Runtime(Settings())
    local_bucket(rt)
    rt.registry.store.check(write=True)  # it exists now, and the demo's hosts can write it
    local_bucket(rt)  # a second run finds it


def test_the_hosts_demo_stops_at_a_failed_run_instead_of_waiting(tmp_path):
    from types import SimpleNamespace

    from bot.demo.hosts import _retrain
    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.store.runs import RetrainRun
    from inference.errors import TuesdayError

    rt = Runtime(Settings(data_dir=tmp_path))
    with rt.sessions() as session:
        session.add(RetrainRun(id=7, task=rt.task.name, requested_by="U1", trigger="command", status="failed",
                               error="NoSuchBucket: the bucket does not exist"))
        session.commit()
    three = SimpleNamespace(wait=lambda check, what: check())  # the run has ended: no waiting
    agent = SimpleNamespace(slash=lambda who, text: "Retrain queued as run 7.")
    with pytest.raises(TuesdayError, match="retrain run 7 .* failed: NoSuchBucket"):
        _retrain(three, rt, agent, "U0MANAGER")
