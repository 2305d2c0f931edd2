"""The encoder family: BERT export parity, head parity, both families through one gate, evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.encoder_head import EncoderHead
from inference.encoder_predictor import EncoderPredictor, LlamaEmbedder
from inference.evidence import EvidenceIndex
from inference.gate import choose_family
from inference.registry import Registry
from inference.serving import load_predictor
from inference.splits import in_holdout
from tests.conftest import TINY_CONFIG

TEXTS = [
    "My car was rear-ended at a red light yesterday, how do I file a claim?",
    "I was charged twice for the same premium!!",
    "hello",
    "Please cancel my policy at the end of the month. " * 30,  # longer than max_length: cut the same way
]
ENCODER = {"epochs": 6, "batch_size": 16, "learning_rate": 5e-3, "head_learning_rate": 5e-2, "rank": 8, "alpha": 16,
           "dropout": 0.0}


@pytest.fixture(scope="module")
def exported(tiny_bert, tmp_path_factory):
    """The tiny BERT exported as f16 and Q8_0 GGUF, with its transformers reference."""
    from trainer.encoder import load_encoder
    from trainer.export import quantize_gguf, write_encoder_gguf

    out = tmp_path_factory.mktemp("encoder")
    model, tokenizer = load_encoder(tiny_bert)
    f16 = write_encoder_gguf(model, tokenizer, out / "encoder-f16.gguf")
    return model, tokenizer, f16, quantize_gguf(f16, out / "encoder-q8_0.gguf")


def test_llama_cpp_tokenizes_like_the_transformers_tokenizer(exported):
    _, tokenizer, f16, _ = exported
    embedder = LlamaEmbedder(f16, max_length=64)
    try:
        for text in TEXTS:
            assert embedder.tokens(text) == tokenizer(text, truncation=True, max_length=64)["input_ids"]
    finally:
        embedder.close()


def test_a_long_ticket_is_read_as_the_same_windows_in_training_and_serving(exported):
    from trainer.encoder import keep_chunks, tokenize_chunks

    _, tokenizer, f16, _ = exported
    long = " ".join(f"word{i} and a few more tokens" for i in range(80))  # several windows of 64 tokens
    batch, owner = tokenize_chunks(tokenizer, [long, "hello"], 64, 64, "cpu")
    windows = [[t for t, m in zip(ids, mask) if m] for ids, mask in zip(batch["input_ids"].tolist(),
                                                                        batch["attention_mask"].tolist())]
    embedder = LlamaEmbedder(f16, max_length=64, max_chunks=64)
    try:
        served = embedder.chunks(long) + embedder.chunks("hello")
        assert len(embedder.chunks(long)) > 3 and owner.tolist().count(0) == len(embedder.chunks(long))
        assert served == windows
        embedder.max_chunks = 3  # a capped ticket keeps its first windows and its last one
        assert embedder.chunks(long) == [served[0], served[1], served[owner.tolist().count(0) - 1]]
    finally:
        embedder.close()
    assert keep_chunks([0, 0, 0, 0, 1, 2, 2], 2) == [0, 3, 4, 5, 6]
    assert keep_chunks([0, 0, 0, 1], 1) == [0, 3]


def test_gguf_embeddings_match_transformers(exported):
    from trainer.encoder import embed

    model, tokenizer, f16, q8 = exported
    for chunks in (1, 3):  # cut after one window, and pooled over up to three
        reference = embed(model, tokenizer, TEXTS, 64, chunks)
        for path, floor in ((f16, 0.999), (q8, 0.99)):
            embedder = LlamaEmbedder(path, max_length=64, max_chunks=chunks)
            try:
                served = embedder.embed(TEXTS)
            finally:
                embedder.close()
            cosine = (served / np.linalg.norm(served, axis=1, keepdims=True) * reference).sum(axis=1)
            assert cosine.min() >= floor, (path.name, chunks, cosine)


def test_head_on_served_embeddings_matches_transformers(exported, task):
    from trainer.encoder import embed

    model, tokenizer, f16, _ = exported
    rng = np.random.default_rng(0)
    head = EncoderHead(labels=task.label_names, weight=rng.normal(size=(len(task.labels), model.config.hidden_size)),
                       bias=rng.normal(size=len(task.labels)) * 0.1, scale=20.0, max_length=64)
    reference = head.probabilities(embed(model, tokenizer, TEXTS, 64))
    predictor = EncoderPredictor(f16, head, task)
    try:
        served = np.array([predictor.probabilities(text) for text in TEXTS])
    finally:
        predictor.close()
    assert np.abs(served - reference).max() < 2e-3
    assert (served.argmax(1) == reference.argmax(1)).all()


def test_choose_family_follows_the_gate():
    strong = {"n": 50, "accuracy": 0.9, "macro_f1": 0.88, "handoff_recall": 0.8}
    weak = {"n": 50, "accuracy": 0.7, "macro_f1": 0.65, "handoff_recall": 0.8}
    assert choose_family({"encoder": weak, "decoder": strong})[0] == "decoder"
    assert choose_family({"encoder": strong, "decoder": weak})[0] == "encoder"
    # better macro-F1 but misses hand-offs: the gate keeps the first family
    sloppy = {**strong, "macro_f1": 0.95, "handoff_recall": 0.5}
    family, why = choose_family({"encoder": strong, "decoder": sloppy})
    assert family == "encoder" and "hand-off recall" in why
    assert choose_family({"decoder": weak}) == ("decoder", "only the decoder family was trained")


@pytest.fixture(scope="module")
def both_families(tiny_base, tiny_bert, task, demo_rows, tmp_path_factory):
    from trainer.config import RunConfig
    from trainer.pipeline import build_version

    train = [r for r in demo_rows if not in_holdout(r["text"])][:150]
    holdout = [r for r in demo_rows if in_holdout(r["text"])][:60]
    config = RunConfig.from_dict({"families": ["encoder", "decoder"], "encoder": ENCODER, **TINY_CONFIG,
                                  "epochs": 1})
    registry = Registry.local(tmp_path_factory.mktemp("both"))
    version = build_version(registry, task, tiny_base[1], train, holdout, config, encoder_base=tiny_bert,
                            progress=False, log=lambda _: None)
    return version, train, holdout


def test_a_run_trains_both_families_and_serves_the_gates_choice(both_families):
    from inference.calibration import abstain_needs
    from inference.promise_rows import split

    version, _, holdout = both_families
    manifest = version.manifest
    parts = manifest["families"]
    assert set(parts) == {"encoder", "decoder"}
    # chosen on the holdout rows that choose (inference.promise_rows), not on the rows that promise
    expected, why = choose_family({name: parts[name]["choice_metrics"] for name in ("encoder", "decoder")})
    assert (manifest["family"], manifest["choice"]) == (expected, why)
    choosing = split(holdout, needs=abstain_needs(0.05)).choose_n  # a small holdout promises from up to 80 %
    assert parts["encoder"]["choice_metrics"]["n"] == choosing < len(holdout) == parts["encoder"]["metrics"]["n"]
    assert parts["encoder"]["calibration"]["choose_n"] == choosing
    assert manifest["metrics"] == parts[expected]["metrics"]
    for name, part in parts.items():
        assert part["metrics"]["n"] == 60 and 0 <= part["metrics"]["accuracy"] <= 1
        cal = part["calibration"]
        assert cal["temperature"] > 0 and 0 <= cal["ece_after"] <= 1 and cal["max_wrong"] == 0.05
        assert (version.path / part["files"][part["serve"]]).exists()
    assert "Served family" in (version.path / "MODEL_CARD.md").read_text()
    # the encoder learned the demo labels beyond chance (7 labels)
    assert parts["encoder"]["metrics"]["accuracy"] > 0.4


def test_evidence_comes_from_training_rows_never_the_holdout(both_families, task):
    version, train, holdout = both_families
    index = EvidenceIndex.load(version.path)
    ids = {row["id"] for row in index.rows}
    assert ids == {r["id"] for r in train}
    assert not ids & {r["id"] for r in holdout}
    for family in ("encoder", "decoder"):
        predictor = load_predictor(version, task, family=family, reasons=False)
        try:
            for row in holdout[:5]:
                suggestion = predictor.predict(row["text"])
                assert len(suggestion.evidence) == 3
                assert all(e["id"] in ids for e in suggestion.evidence)
                sims = [e["similarity"] for e in suggestion.evidence]
                assert sims == sorted(sims, reverse=True)
        finally:
            predictor.close()


def test_a_training_row_is_its_own_nearest_evidence(both_families, task):
    version, train, _ = both_families
    predictor = load_predictor(version, task, family="encoder")
    try:
        row = next(r for r in train if r.get("reason"))
        top = predictor.predict(row["text"]).evidence[0]
    finally:
        predictor.close()
    assert (top["id"], top["label"], top["reason"]) == (row["id"], row["label"], row["reason"])
    assert top["similarity"] > 0.99


def test_served_confidence_is_temperature_scaled(both_families, task):
    version, _, holdout = both_families
    family = version.manifest["family"]
    temperature = version.manifest["families"][family]["calibration"]["temperature"]
    raw = load_predictor(version, task, calibrated=False, evidence=False, reasons=False)
    scaled = load_predictor(version, task, evidence=False, reasons=False)
    try:
        a, b = raw.predict(holdout[0]["text"]), scaled.predict(holdout[0]["text"])
    finally:
        raw.close()
        scaled.close()
    assert a.label == b.label
    p = np.array(list(a.probabilities.values())) ** (1 / temperature)
    assert b.confidence == pytest.approx(p.max() / p.sum(), abs=1e-6)


def test_run_config_reads_sections_and_flat_decoder_keys():
    import torch

    from trainer.config import ConfigError, RunConfig, resolve_families

    config = RunConfig.from_dict({"families": "decoder", "epochs": 1, "encoder": {"epochs": 3}, "max_wrong": 0.1})
    assert config.families == ("decoder",) and config.decoder.epochs == 1 and config.encoder.epochs == 3
    assert RunConfig.from_dict({}).families == ("auto",)
    # auto: the decoder trains only where the train job finds a GPU
    assert resolve_families(("auto",), "cpu") == ("encoder",)
    assert resolve_families(("encoder", "decoder"), "cpu") == ("encoder", "decoder")
    assert resolve_families(("auto",)) == (("encoder", "decoder") if torch.cuda.is_available() else ("encoder",))
    for bad in ({"families": ["gpt"]}, {"encoder": {"nope": 1}}, {"max_wrong": 0}):
        with pytest.raises(ConfigError):
            RunConfig.from_dict(bad)
    assert json.loads(json.dumps(config.to_dict()))["encoder"]["epochs"] == 3


def test_the_served_encoder_mixes_in_the_voices_its_holdout_chose(both_families, task):
    from inference.priors import VersionPrior
    from inference.stacking import Mix

    version, _, holdout = both_families
    part = version.manifest["families"]["encoder"]
    assert version.manifest["files"]["tfidf"] == "tfidf.npz"
    chosen = part["mix"]
    assert chosen["holdout_log_loss"] <= chosen["head_log_loss"]  # never worse than the head alone on the holdout
    mix = Mix.from_dict(chosen)
    every = load_predictor(version, task, family="encoder", calibrated=False, evidence=False, every_voice=True)
    served = load_predictor(version, task, family="encoder", calibrated=False, evidence=False)
    try:
        assert served.mix == mix and (served.tfidf is not None) == bool(mix.tfidf)
        for row in holdout[:5]:
            _, voices = every.voices(row["text"], every=True)
            assert set(voices) == {"head", "tfidf", "knn"}
            # the mix, then the version's label prior (trainer.label_prior; unchanged at power 0)
            prior = VersionPrior.from_dict(part.get("prior"))
            expected = mix.combine(**voices) if prior is None else prior.apply(mix.combine(**voices), task.label_names)
            assert np.allclose(served.probabilities(row["text"]), expected, atol=1e-6)
    finally:
        every.close()
        served.close()
