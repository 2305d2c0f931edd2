"""One encoder pass per ticket for every field: a field trained as a head on the routing task's encoder serves a
byte-identical copy of it, and a process opens each distinct encoder file once (real tiny BERT, llama.cpp, SQL)."""

import pytest

from bot.lifecycle.training import shared_encoder
from bot.runtime import Runtime
from bot.settings import Settings
from inference.embedders import EmbedderPool
from inference.registry import Registry
from inference.serving import load_predictor
from inference.splits import in_holdout
from inference.task import demo_task_path, load_tasks
from tests.conftest import TINY_CONFIG
from tests.clicks import env, fake_slack, fake_zendesk, parts  # noqa: F401 (fixtures)
from tests.test_suggest import copy_version

pytestmark = pytest.mark.slow

TASKS = load_tasks(demo_task_path())
TICKET = "Our basement flooded last night and the furnace is under water. Policy HM-1."


def _split(rows):
    return [r for r in rows if not in_holdout(r["text"])][:120], [r for r in rows if in_holdout(r["text"])][:60]


@pytest.fixture(scope="module")
def shared_pair(tiny_base, tiny_bert, demo_rows, tmp_path_factory):
    """(registry, topic: encoder family with its own LoRA, urgency: a head on topic's encoder)."""
    from trainer.config import RunConfig
    from trainer.pipeline import build_version

    registry = Registry.local(tmp_path_factory.mktemp("shared"))
    config = RunConfig.from_dict({"families": ["encoder"], "encoder": {**TINY_CONFIG, "max_chunks": 2}})
    train, holdout = _split(demo_rows)
    topic = build_version(registry, TASKS["topic"], tiny_base[1], train, holdout, config, encoder_base=tiny_bert,
                          progress=False, log=lambda _: None)
    train, holdout = _split([{**r, "label": r["urgency"]} for r in demo_rows if r.get("urgency")])
    urgency = build_version(registry, TASKS["urgency"], tiny_base[1], train, holdout, config, encoder_base=tiny_bert,
                            progress=False, log=lambda _: None, shared_encoder=registry.fetch(topic.name))
    return registry, topic, urgency


def _served_sha(version) -> str:
    return version.manifest["artifacts"][version.gguf(version.manifest["serve"]).name]["sha256"]


def test_a_field_trained_on_the_routing_encoder_serves_the_same_file_with_its_own_head(shared_pair):
    registry, topic, urgency = shared_pair
    part = urgency.manifest["families"]["encoder"]
    assert _served_sha(urgency) == _served_sha(topic) == part["shared_encoder"]["sha256"]
    assert (part["shared_encoder"]["version"], part["shared_encoder"]["task"]) == (topic.name, "topic")
    assert "encoder-adapter" not in urgency.manifest["files"] and "encoder-adapter" in topic.manifest["files"]
    assert part["config"]["max_chunks"] == 2  # read with the windows of the encoder it shares
    assert urgency.manifest["task"] == "urgency" and urgency.manifest["metrics"]["n"] > 0
    assert f"shared with {topic.name} (task topic" in (urgency.path / "MODEL_CARD.md").read_text()


def test_one_pass_per_ticket_feeds_every_field_and_answers_as_alone(shared_pair):
    registry, topic, urgency = shared_pair
    alone = [load_predictor(registry.fetch(v.name), TASKS[v.manifest["task"]]) for v in (topic, urgency)]
    expected = [p.predict(TICKET).probabilities for p in alone]
    for p in alone:
        p.close()

    pool = EmbedderPool()
    pooled = [load_predictor(registry.fetch(v.name), TASKS[v.manifest["task"]], embedders=pool)
              for v in (topic, urgency)]
    assert len(pool) == 1  # one encoder opened for both fields
    got = [p.predict(TICKET) for p in pooled]
    assert pool.passes() == 1  # the second field reused the first one's embedding
    for suggestion, probs in zip(got, expected):
        assert suggestion.probabilities == pytest.approx(probs, abs=1e-5)
    assert {e["label"] for e in got[1].evidence} <= set(TASKS["urgency"].labels)
    pooled[0].close()  # the other field keeps serving
    assert len(pool) == 1 and pooled[1].predict("Where is my claim?").label in TASKS["urgency"].labels
    assert pool.passes() == 2
    pooled[1].close()
    assert len(pool) == 0


def test_only_another_field_shares_and_only_an_encoder_production(shared_pair, trained_version, two_tasks,
                                                                  monkeypatch):
    _, topic, _ = shared_pair
    rt = Runtime(Settings())
    urgency = rt.for_task("urgency")
    assert shared_encoder(urgency) is None  # no routing production yet
    decoder = copy_version(rt.registry, trained_version[1])
    rt.production.switch(decoder.name, by="test", reason="fixture")
    assert shared_encoder(urgency) is None  # a decoder version has no encoder to lend
    encoder = copy_version(rt.registry, topic)
    rt.production.switch(encoder.name, by="test", reason="fixture", expect=decoder.name)
    assert shared_encoder(urgency) == encoder.name and shared_encoder(rt) is None  # the routing task tunes its own
    monkeypatch.setenv("TUESDAY_SHARED_ENCODER", "false")
    assert shared_encoder(Runtime(Settings()).for_task("urgency")) is None


def test_the_suggest_worker_reads_a_ticket_once_for_both_fields(shared_pair, two_tasks, parts, monkeypatch):  # noqa: F811
    from bot.runtime import slack_client
    from tests.tickets import stored_ticket
    from bot.worker import predictors
    from bot.worker.suggest import Suggester

    _, topic, urgency = shared_pair
    runtime, queues, _ = parts
    pool = EmbedderPool()
    monkeypatch.setattr(predictors, "EMBEDDERS", pool)
    for version in (topic, urgency):
        copy = copy_version(runtime.registry, version, {"abstain_threshold": 0.0, "handoff_threshold": 0.0})
        runtime.for_task(version.manifest["task"]).production.switch(copy.name, by="test", reason="fixture")
    suggester = Suggester(runtime, slack_client(runtime.settings))
    ticket, _ = stored_ticket(runtime.sessions, source="generic", external_id="T-1", subject="Flood", text=TICKET)
    result = suggester.run(ticket.id)  # loads both fields' models (each checked on one text) on the way
    assert set(result["fields"]) == {"urgency"} and result["label"] in TASKS["topic"].labels
    assert (len(pool), pool.passes()) == (1, 2)  # the check text once, the ticket once
    ticket, _ = stored_ticket(runtime.sessions, source="generic", external_id="T-2", subject="Claim",
                           text="Where is my claim? I filed it two weeks ago.")
    assert set(suggester.run(ticket.id)["fields"]) == {"urgency"}
    assert pool.passes() == 3  # one pass for the next ticket's two fields
    suggester.close()
    assert len(pool) == 0
