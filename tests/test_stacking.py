"""The encoder's other voices: a TF-IDF branch stored as plain arrays, a neighbours' vote, and the mix the holdout picks."""

from __future__ import annotations

import numpy as np
import pytest

from inference.registry import served_files
from inference.stacking import Mix, TfidfBranch, choose_mix, clip_text, knn_vote

TEXTS = ["error E-4411 on the printer", "printer says E-4411 again", "E-4411 after the update",
         "refund my order please", "I want my money back", "money back for the broken kettle",
         "change my delivery address", "new address for deliveries", "update the address on my account"]
LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_the_tfidf_branch_survives_a_round_trip_without_pickle(tmp_path):
    branch = TfidfBranch.fit(TEXTS, LABELS, 4)  # label 3 has no rows: it starts far behind
    path = branch.save(tmp_path / "tfidf.npz")
    np.load(path, allow_pickle=False)  # plain arrays only: a tampered file cannot run code
    loaded = TfidfBranch.load(path)
    tickets = ["E4411 on my printer", "send the money back", "address change"]
    probs = loaded.probabilities(tickets)
    assert np.abs(probs - branch.probabilities(tickets)).max() < 1e-3  # coefficients stored as float16
    assert probs.argmax(1).tolist() == [0, 1, 2]
    assert probs[:, 3].max() < 1e-3


def test_a_very_long_ticket_costs_the_branch_a_bounded_read():
    text = "x" * 50_000 + " the end"
    clipped = clip_text(text)
    assert len(clipped) <= 20_001 and clipped.endswith(" the end")
    assert clip_text("short") == "short"


def test_the_vote_follows_the_nearest_rows():
    vectors = np.eye(3)
    votes = knn_vote(vectors, np.array([0, 1, 2]), np.array([0.9, 0.1, 0.0]), 3, Mix(k=2, tau=0.05))
    assert votes.shape == (1, 3) and votes[0].argmax() == 0 and abs(votes.sum() - 1) < 1e-9


def synthetic_voices(seed: int = 0, n: int = 400, labels: int = 5):
    """A head that is right 50 % of the time, a TF-IDF voice right 80 %, and a vote sure of random labels."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(labels, size=n)

    def voice(accuracy: float) -> np.ndarray:
        guess = np.where(rng.random(n) < accuracy, gold, rng.integers(labels, size=n))
        p = np.full((n, labels), 0.3 / (labels - 1))
        p[np.arange(n), guess] = 0.7
        return p

    noise = np.eye(labels)[rng.integers(labels, size=n)]  # sure of a random label
    return {"head": voice(0.5), "tfidf": voice(0.8), "knn": noise}, gold


def test_the_holdout_picks_a_voice_that_helps_and_silences_one_that_does_not():
    voices, gold = synthetic_voices()
    mix, loss = choose_mix(voices, gold)
    assert mix.tfidf > 0 and mix.knn == 0
    assert (mix.combine(**voices).argmax(1) == gold).mean() > (voices["head"].argmax(1) == gold).mean() + 0.05
    head_only, head_loss = choose_mix({"head": voices["head"]}, gold)
    assert head_only == Mix() and loss < head_loss
    # a mix without voices is the head itself
    assert np.allclose(Mix().combine(voices["head"], voices["tfidf"], voices["knn"]), voices["head"])


def test_where_the_words_carry_more_than_the_encoder_the_tfidf_branch_leads():
    """Long, noisy e-mails with ten examples a label: a head no better than chance must not drag down
    a TF-IDF branch that is right 80 % of the time (the product of the two could not drop the head)."""
    voices, gold = synthetic_voices(seed=1)
    rng = np.random.default_rng(2)
    chance = np.full_like(voices["head"], 0.4 / (voices["head"].shape[1] - 1))
    chance[np.arange(len(gold)), rng.integers(voices["head"].shape[1], size=len(gold))] = 0.6
    voices = {"head": chance, "tfidf": voices["tfidf"]}
    mix, _ = choose_mix(voices, gold)
    assert mix.head < 1.0 and mix.tfidf > 0
    tfidf_alone = (voices["tfidf"].argmax(1) == gold).mean()
    assert (mix.combine(**voices).argmax(1) == gold).mean() >= tfidf_alone - 0.01
    assert Mix.from_dict({"tfidf": 1.0, "knn": 0.2}).head == 1.0  # a manifest written before the exponent


@pytest.mark.parametrize("family, wanted", [("encoder", {"head.npz", "tfidf.npz", "encoder-q8_0.gguf"}),
                                            ("decoder", {"model-q8_0.gguf"})])
def test_a_serving_host_fetches_the_tfidf_branch_with_the_encoder(family, wanted):
    files = {"head": "head.npz", "tfidf": "tfidf.npz", "encoder-q8_0": "encoder-q8_0.gguf", "q8_0": "model-q8_0.gguf"}
    manifest = {"family": family, "files": files,
                "families": {"encoder": {"serve": "encoder-q8_0"}, "decoder": {"serve": "q8_0"}},
                "evidence": {"embedder": "encoder-q8_0.gguf"},
                "artifacts": {name: {} for name in files.values()}}
    assert wanted <= set(served_files(manifest))
    if family == "decoder":
        assert "tfidf.npz" not in served_files(manifest)
