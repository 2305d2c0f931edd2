"""The model path with real parts: peft trains, gguf exports, llama.cpp serves (tiny random model)."""

import json

import numpy as np
import pytest

from inference.llama_predictor import LlamaPredictor
from inference.task import Task
from trainer.config import ConfigError, TrainConfig

pytestmark = pytest.mark.slow

# f16 GGUF logits against the fp32 merged model on identical token ids: f16 keeps about 3 decimal
# digits through every block of the model, so logits differ by up to some 1e-2 (0.007 and 0.016 seen
# on fresh installs with transformers 5.24, torch 2.13); the argmax must agree exactly.
LOGIT_TOLERANCE = 3e-2
PROBABILITY_TOLERANCE = 1e-2  # the same rounding, after a softmax over the labels


@pytest.fixture(scope="module")
def merged(trained_version):
    """The version's adapter merged into the tiny base, as transformers sees it."""
    from peft import PeftModel

    from trainer.lora import load_base, merge_adapter

    registry, version, _, _ = trained_version
    base, tokenizer = load_base(version.manifest["base"])
    return merge_adapter(PeftModel.from_pretrained(base, version.path / "adapter")), tokenizer


def test_version_folder_holds_the_paper_trail(trained_version):
    _, version, train, holdout = trained_version
    names = {p.name for p in version.path.iterdir()}
    assert {"adapter", "model-f16.gguf", "model-q8_0.gguf", "config.json", "task.yaml", "metrics.json",
            "metrics-decoder.json", "license.json", "MODEL_CARD.md", "version.json", "evidence.jsonl",
            "evidence.npy", "encoder-q8_0.gguf"} <= names
    manifest = version.manifest
    assert manifest["data"]["n_train"] == len(train) and len(manifest["data"]["sha256"]) == 64
    assert manifest["family"] == "decoder" and set(manifest["families"]) == {"decoder"}
    assert manifest["evidence"]["embedder"] == "encoder-q8_0.gguf"  # the untuned base encoder, for evidence only
    config = json.loads((version.path / "config.json").read_text())
    assert config["families"] == ["decoder"] and config["decoder"]["rank"] == 8
    assert manifest["metrics"]["n"] == len(holdout)


def test_training_lowers_loss(trained_version):
    training = trained_version[1].manifest["training"]
    assert training["final_loss"] < 0.7 * training["first_loss"]


def test_prompt_is_byte_identical_in_training_and_serving(trained_version, merged, task):
    from trainer.pipeline import training_pairs

    _, version, train, _ = trained_version
    _, tokenizer = merged
    predictor = LlamaPredictor(version.gguf("f16"), task, reasons=False)
    try:
        for row in train[:5]:
            prompt, _ = training_pairs(task, [row], tokenizer.chat_template, True)[0]
            assert prompt.encode() == predictor.prompt_text(row["text"]).encode()
            assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == predictor.prompt_tokens(row["text"])
    finally:
        predictor.close()


def test_f16_gguf_logits_match_merged_model(trained_version, merged, task):
    from inference.hf_predictor import TransformersPredictor

    _, version, _, holdout = trained_version
    model, tokenizer = merged
    reference = TransformersPredictor(model, tokenizer, task)
    served = LlamaPredictor(version.gguf("f16"), task, reasons=False)
    try:
        for row in holdout[:5]:
            ids = reference.prompt_tokens(row["text"])
            a, b = served.logits(ids), reference.logits(ids)
            assert a.argmax() == b.argmax()
            assert np.abs(a - b).max() < LOGIT_TOLERANCE
    finally:
        served.close()


def test_q8_0_agrees_with_merged_model_on_holdout(trained_version, merged, task):
    from inference.hf_predictor import TransformersPredictor

    _, version, _, holdout = trained_version
    reference = TransformersPredictor(*merged, task)
    served = LlamaPredictor(version.gguf("q8_0"), task, reasons=False)
    try:
        same = [served.predict(r["text"]).label == reference.predict(r["text"]).label for r in holdout]
    finally:
        served.close()
    assert sum(same) / len(same) >= 0.95


def test_label_scores_with_shared_prefixes_match_transformers(trained_version, merged):
    """'card' vs 'card_arrival' vs 'card_linking': full-sequence scores, not first tokens."""
    from inference.hf_predictor import TransformersPredictor

    shared = Task(name="cards", labels={"card": "", "card_arrival": "", "card_linking": "", "cash": "",
                                        "card_arrival_late": ""}, handoff_label="cash")
    _, version, _, _ = trained_version
    reference = TransformersPredictor(*merged, shared)
    exact = LlamaPredictor(version.gguf("f16"), shared, reasons=False)
    stepwise = LlamaPredictor(version.gguf("f16"), shared, reasons=False, single_pass_nodes=0, prune_margin=1e9)
    try:
        assert len({tuple(t[:1]) for t in exact._label_tokens}) < len(shared.labels)  # prefixes really shared
        for text in ["my card has not arrived", "link my card to the app", "withdraw cash"]:
            want = reference.probabilities(text)
            np.testing.assert_allclose(exact.probabilities(text), want, atol=PROBABILITY_TOLERANCE)
            np.testing.assert_allclose(stepwise.probabilities(text), want, atol=PROBABILITY_TOLERANCE)
    finally:
        exact.close()
        stepwise.close()


def test_pruned_labels_get_no_probability_and_the_rest_keep_exact_odds(tiny_base):
    """Depth-wise pruning may drop labels, but never ranks one by a partial score."""
    words = ["card", "cash", "transfer", "refund", "pin", "fee", "limit", "account"]
    many = Task(name="many", labels={f"{a}_{b}_{c}": "" for a in words[:4] for b in words[4:] for c in ("late", "new")},
                handoff_label=None, list_labels=False)
    exact = LlamaPredictor(tiny_base[1], many, reasons=False, single_pass_nodes=0, prune_margin=1e9)
    pruned = LlamaPredictor(tiny_base[1], many, reasons=False, single_pass_nodes=0, prune_margin=2.0)
    try:
        for text in ["my card has not arrived", "what is the fee for a transfer", "reset my pin please"]:
            want, got = exact.probabilities(text), pruned.probabilities(text)
            kept = got > 0
            assert 0 < kept.sum() < len(many.labels)  # the margin really dropped some labels
            np.testing.assert_allclose(got[kept], want[kept] / want[kept].sum(), atol=1e-4)
    finally:
        exact.close()
        pruned.close()


def test_suggestion_is_a_distribution_over_task_labels_with_reason(trained_version, task):
    _, version, _, holdout = trained_version
    predictor = LlamaPredictor(version.gguf(), task, version=version.name, reasons=True, max_reason_tokens=8)
    try:
        s = predictor.predict(holdout[0]["text"])
    finally:
        predictor.close()
    assert set(s.probabilities) == set(task.labels)
    assert abs(sum(s.probabilities.values()) - 1) < 1e-6
    assert s.confidence == max(s.probabilities.values()) and s.label in task.labels
    assert s.model_version == version.name and s.latency_ms > 0
    assert isinstance(s.reason, str)


def test_quantize_variants_load_and_predict(trained_version, task, tmp_path):
    from trainer.export import quantize_gguf

    _, version, _, holdout = trained_version
    for method in ("q4_0", "q4_k_m"):
        out = quantize_gguf(version.gguf("f16"), tmp_path / f"m-{method}.gguf", method)
        predictor = LlamaPredictor(out, task, reasons=False)
        try:
            assert predictor.predict(holdout[0]["text"]).label in task.labels
        finally:
            predictor.close()


def test_bad_training_config_is_rejected_with_every_problem():
    with pytest.raises(ConfigError, match="rank must be >= 1.*learning_rate"):
        TrainConfig(rank=0, learning_rate=3)
    with pytest.raises(ConfigError, match="unknown training config keys: rnak"):
        TrainConfig.from_dict({"rnak": 4})
