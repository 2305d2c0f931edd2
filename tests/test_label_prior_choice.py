"""A version's own label prior (issue 6, skewed labels): the power chosen on the holdout, the same prior applied
by the predictor in evaluation and in serving, bounded weights for a label the model never learned."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from inference.calibration import apply_temperature
from inference.encoder_head import EncoderHead
from inference.encoder_predictor import EncoderPredictor
from inference.evaluation import evaluate
from inference.evidence import EvidenceIndex
from inference.llama_predictor import LlamaPredictor
from inference.priors import MAX_WEIGHT, POWERS, VersionPrior, choose_power, shares
from inference.registry import Registry
from inference.serving import load_predictor
from inference.splits import in_holdout
from inference.stacking import Mix, TfidfBranch
from tests.conftest import TINY_CONFIG
from trainer.label_prior import choose_prior

LABELS = ["a", "b", "c", "d"]


def gaussian_rows(counts: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(exact posteriors under an even prior, gold) of 2-D Gaussian classes, counts[i] rows of class i."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    y = np.repeat(np.arange(4), counts)
    x = means[y] + rng.normal(size=(len(y), 2))
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(axis=-1)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True), y


def rows_of(gold: np.ndarray) -> list[dict]:
    return [{"label": LABELS[i]} for i in gold]


TRAIN = rows_of(np.repeat(np.arange(4), 10))  # drawn balanced: 10 per label


def test_the_power_is_chosen_where_the_holdout_is_skewed_and_stays_0_where_it_is_even():
    probs, gold = gaussian_rows([700, 100, 100, 100], seed=1)  # one queue takes 70 % of the tickets
    prior = VersionPrior.from_rows(LABELS, TRAIN, TRAIN + rows_of(gold))
    power, losses = choose_power(probs, gold, prior, LABELS)
    assert power > 0 and losses[power] < losses[0.0] - 0.01
    adjusted = VersionPrior(prior.train, prior.target, power).apply(probs, LABELS)
    assert (adjusted.argmax(1) == gold).mean() > (probs.argmax(1) == gold).mean() + 0.03

    probs, gold = gaussian_rows([250, 250, 250, 250], seed=2)  # even frequencies: nothing to move
    power, losses = choose_power(probs, gold, VersionPrior.from_rows(LABELS, TRAIN, TRAIN + rows_of(gold)), LABELS)
    assert power == 0.0 and max(losses.values()) - min(losses.values()) < 1e-9

    # A target that says "skewed" over choosing rows that are not: adjusting costs loss, so it stays silent.
    claimed = VersionPrior.from_rows(LABELS, TRAIN, rows_of(np.repeat(np.arange(4), [70, 10, 10, 10])))
    power, losses = choose_power(probs, gold, claimed, LABELS)
    assert power == 0.0 and losses[1.0] > losses[0.0]


def test_over_confident_scores_get_the_power_that_makes_up_for_their_temperature():
    """Scores sharpened 2.5x (a mix that multiplies voices) get T ≈ 2.5 after the prior, which divides the prior's
    log-weights too: the holdout asks for a power above 1, and it beats the plain correction."""
    probs, gold = gaussian_rows([700, 100, 100, 100], seed=3)
    sharp = probs ** 2.5
    sharp /= sharp.sum(axis=1, keepdims=True)
    prior = VersionPrior.from_rows(LABELS, TRAIN, TRAIN + rows_of(gold))
    power, losses = choose_power(sharp, gold, prior, LABELS)
    assert power > 1.0 and losses[power] < losses[1.0] - 0.005
    plain = VersionPrior(prior.train, prior.target, 1.0).apply(sharp, LABELS)
    chosen = VersionPrior(prior.train, prior.target, power).apply(sharp, LABELS)
    assert (chosen.argmax(1) == gold).mean() > (plain.argmax(1) == gold).mean()


def test_a_label_without_training_rows_never_gets_a_weight_above_the_bound_nor_absorbs_the_stream():
    # e: a label that appears only live (half the rows the run saw labelled), none in training
    prior = VersionPrior(train={"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25, "e": 0.0},
                         target={"a": 0.35, "b": 0.05, "c": 0.05, "d": 0.05, "e": 0.5}, power=1.0)
    labels = LABELS + ["e"]
    w = prior.weights(labels)
    assert w.max() <= MAX_WEIGHT and w.min() >= 1 / MAX_WEIGHT
    assert w[:4] == pytest.approx([1.4, 0.2, 0.2, 0.2])
    assert w[4] == pytest.approx(0.5)  # the learned labels' mean weight: its share is left as it was
    carried = prior.carried({"a": 0.24, "b": 0.24, "c": 0.24, "d": 0.24, "e": 0.04})
    assert carried["e"] == pytest.approx(0.04)
    # however extreme the target, every weight stays within the bound
    extreme = VersionPrior(train={"a": 0.5, "b": 0.5, "e": 0.0}, target={"a": 1e-9, "b": 1e-9, "e": 1.0}, power=1.0)
    assert extreme.weights(["a", "b", "e"]).max() <= MAX_WEIGHT
    # on a stream the model learned four labels of, the fifth (a small noisy probability) is never suggested
    probs, gold = gaussian_rows([400, 300, 200, 100], seed=3)
    unseen = np.random.default_rng(4).uniform(0.005, 0.05, size=len(gold))
    probs = np.column_stack([probs * (1 - unseen[:, None]), unseen])
    assert (prior.apply(probs, labels).argmax(1) == 4).sum() == 0


def test_apply_and_undo_are_inverse_and_power_0_changes_nothing():
    probs, _ = gaussian_rows([50, 50, 50, 50], seed=5)
    prior = VersionPrior.from_rows(LABELS, TRAIN, TRAIN + rows_of(np.repeat(np.arange(4), [90, 5, 3, 2])), power=0.75)
    assert np.allclose(prior.undo(prior.apply(probs, LABELS), LABELS), probs)
    assert np.array_equal(VersionPrior(prior.train, prior.target, 0.0).apply(probs, LABELS), probs)
    assert VersionPrior.from_dict({**prior.to_dict(), "losses": {"0.0": 1.0}}) == prior
    assert VersionPrior.from_dict(None) is None
    assert json.loads(json.dumps(prior.to_dict())) == prior.to_dict()
    assert shares(["x", "y", "z"], [{"label": "x"}, {"label": "x"}, {"label": "y"}, {"label": "other"}]) == \
        {"x": 2 / 3, "y": 1 / 3, "z": 0.0}


# -- the real encoder and decoder: evaluation and serving through the same predictor ------------------------

def balanced(rows: list[dict], k: int) -> list[dict]:
    seen: Counter = Counter()
    out = []
    for row in rows:
        if seen[row["label"]] < k:
            seen[row["label"]] += 1
            out.append(row)
    return out


def skewed(rows: list[dict], frequent: str, others: int = 2) -> list[dict]:
    """Every row of `frequent`, `others` rows of each other label: a queue that takes most tickets."""
    seen: Counter = Counter()
    out = []
    for row in rows:
        if row["label"] == frequent or seen[row["label"]] < others:
            seen[row["label"]] += 1
            out.append(row)
    return out


@pytest.fixture(scope="module")
def encoder_version(tiny_bert, task, demo_rows, tmp_path_factory):
    """An encoder-only version of the tiny BERT on balanced training rows (its holdout: the demo's)."""
    from trainer.config import RunConfig
    from trainer.pipeline import build_version

    train = balanced([r for r in demo_rows if not in_holdout(r["text"])], 12)
    holdout = [r for r in demo_rows if in_holdout(r["text"])][:60]
    config = RunConfig.from_dict({"families": ["encoder"], "encoder": {**TINY_CONFIG, "epochs": 2}})
    registry = Registry.local(tmp_path_factory.mktemp("prior-choice"))
    version = build_version(registry, task, tiny_bert, train, holdout, config, encoder_base=tiny_bert,
                            progress=False, log=lambda _: None)
    return registry, version, train, holdout


def with_prior(registry: Registry, version, family: str, prior: dict | None):
    """A copy of the version whose family part records `prior` (None: no "prior" key, as older versions)."""
    staging = registry.stage()
    shutil.copytree(version.path, staging, dirs_exist_ok=True)
    manifest = json.loads((version.path / "version.json").read_text())
    part = manifest["families"][family]
    part.pop("prior", None)
    if prior is not None:
        part["prior"] = prior
    return registry.commit(staging, manifest)


def scored_encoder(version, task) -> EncoderPredictor:
    """The encoder predictor as the trainer's holdout evaluation builds it (trainer.pipeline._score)."""
    part = version.manifest["families"]["encoder"]
    path = version.path / part["files"][part["serve"]]
    return EncoderPredictor(path, EncoderHead.load(version.path / part["files"]["head"]), task,
                            tfidf=TfidfBranch.load(version.path / part["files"]["tfidf"]),
                            index=EvidenceIndex.load(version.path), show_evidence=False,
                            mix=Mix.from_dict(part.get("mix")))


def probabilities(predictor, task, rows) -> np.ndarray:
    return np.array([[s.probabilities[label] for label in task.label_names]
                     for s in (predictor.predict(r["text"]) for r in rows)])


def test_the_encoder_applies_the_same_prior_in_evaluation_and_in_serving(encoder_version, task):
    registry, version, train, holdout = encoder_version
    prior = VersionPrior.from_rows(task.label_names, train, train + skewed(holdout, "policy_change"), power=1.0)
    evaluating = scored_encoder(version, task)
    try:
        plain = np.array(evaluate(evaluating, task, holdout[:12], progress=False)["probabilities"])
        evaluating.prior = prior
        evaluated = np.array(evaluate(evaluating, task, holdout[:12], progress=False)["probabilities"])
    finally:
        evaluating.close()
    assert np.allclose(evaluated, prior.apply(plain, task.label_names))
    assert np.abs(evaluated - plain).max() > 0.01  # the prior moved them: the comparison below can fail

    stored = with_prior(registry, version, "encoder", {**prior.to_dict(), "losses": {"0.0": 1.0, "1.0": 0.9}})
    served = load_predictor(stored, task, calibrated=False, evidence=False)
    undone = load_predictor(stored, task, calibrated=False, evidence=False, prior=False)
    calibrated = load_predictor(stored, task, evidence=False)
    try:
        assert served.prior == prior and undone.prior is None
        assert np.allclose(probabilities(served, task, holdout[:12]), evaluated, rtol=0, atol=1e-12)
        assert np.allclose(probabilities(undone, task, holdout[:12]), plain, rtol=0, atol=1e-12)
        temperature = stored.manifest["families"]["encoder"]["calibration"]["temperature"]
        assert np.allclose(probabilities(calibrated, task, holdout[:12]), apply_temperature(evaluated, temperature))
    finally:
        for p in (served, undone, calibrated):
            p.close()


def test_a_manifest_without_a_prior_serves_exactly_as_before(encoder_version, task):
    registry, version, _, holdout = encoder_version
    old = with_prior(registry, version, "encoder", None)
    every = load_predictor(old, task, calibrated=False, evidence=False, every_voice=True)
    served = load_predictor(old, task, calibrated=False, evidence=False)
    try:
        assert served.prior is None
        for row in holdout[:5]:
            voices = every.voices(row["text"], every=True)[1]
            expected = served.mix.combine(**{k: v for k, v in voices.items()})
            assert np.array_equal(served.probabilities(row["text"]), expected)
            shown = served.predict(row["text"]).probabilities
            assert [shown[label] for label in task.label_names] == [float(p) for p in expected]
    finally:
        every.close()
        served.close()


def test_choose_prior_sets_the_predictor_and_records_what_it_chose(encoder_version, task):
    registry, version, train, holdout = encoder_version
    choose = skewed(holdout, "policy_change", others=1)
    predictor = scored_encoder(version, task)
    try:
        part: dict = {}
        own = np.array([predictor.probabilities(r["text"]) for r in choose])
        chosen = choose_prior(predictor, task, choose, train, train + holdout, part)
        recorded = part["prior"]
        assert set(recorded) == {"train", "target", "power", "losses", "n_choose"} and recorded["n_choose"] == len(choose)
        assert recorded["train"] == shares(task.label_names, train)
        # the labelled tickets' shares, the hand-off label kept at its training share
        expected = VersionPrior.from_rows(task.label_names, train, train + holdout, keep=(task.handoff_label,))
        assert recorded["target"] == expected.target
        losses = {float(p): loss for p, loss in recorded["losses"].items()}
        assert set(losses) == set(POWERS)
        if recorded["power"]:
            assert losses[recorded["power"]] < losses[0.0] and chosen == predictor.prior
            assert chosen.power == recorded["power"]
        else:
            assert chosen is None and predictor.prior is None
        # the probabilities handed in (the mix's pass) choose the same prior as the ones it computes
        again: dict = {}
        choose_prior(predictor, task, choose, train, train + holdout, again, probs=own)
        assert again == part
        # a grid where only the target's full power is tried, on rows that are all the frequent label: it pays
        only = [r for r in holdout if r["label"] == "policy_change"]
        forced: dict = {}
        got = choose_prior(predictor, task, only, train, train + skewed(holdout, "policy_change", 0), forced,
                           grid=(1.0,))
        assert forced["prior"]["power"] == 1.0 and got is predictor.prior and got.power == 1.0
    finally:
        predictor.close()


def test_the_decoder_applies_the_same_prior_in_evaluation_and_in_serving(trained_version, task, tmp_path):
    registry, version, train, holdout = trained_version
    family = version.manifest["family"]
    assert family == "decoder"
    prior = VersionPrior.from_rows(task.label_names, train, train + skewed(holdout, "claim_status"), power=1.0)
    part = version.manifest["families"]["decoder"]

    def evaluated_with(label_prior) -> np.ndarray:  # a fresh context each time: its cached prefix moves scores a little
        evaluating = LlamaPredictor(version.path / part["files"][part["serve"]], task, reasons=False, prior=label_prior)
        try:
            return np.array(evaluate(evaluating, task, holdout[:6], progress=False)["probabilities"])
        finally:
            evaluating.close()

    evaluated, plain = evaluated_with(prior), evaluated_with(None)
    assert np.allclose(evaluated, prior.apply(plain, task.label_names), rtol=0, atol=1e-12)
    # not a no-op: the weights differ, and the evaluated scores moved far beyond the 1e-12 above (how far depends on
    # where the tiny decoder puts its mass: rows sure of one label barely move)
    weights = prior.weights(task.label_names)
    assert weights.max() / weights.min() > 1.3 and np.abs(evaluated - plain).max() > 1e-4
    stored = with_prior(Registry.local(tmp_path / "registry"), version, "decoder", prior.to_dict())
    served = load_predictor(stored, task, calibrated=False, evidence=False, reasons=False)
    try:
        assert served.prior == prior
        assert np.allclose(probabilities(served, task, holdout[:6]), evaluated, rtol=0, atol=1e-12)
    finally:
        served.close()


def test_the_handoff_label_keeps_its_weight_and_the_others_share_the_rest():
    """How often tickets are out of scope is left to the hand-off threshold and its promise."""
    from inference.priors import VersionPrior

    labels = ["a", "b", "oos"]
    train = [{"label": "a"}] * 48 + [{"label": "b"}] * 47 + [{"label": "oos"}] * 5
    seen = train + [{"label": "a"}] * 300 + [{"label": "oos"}] * 200
    prior = VersionPrior.from_rows(labels, train, seen, power=1.0, keep=("oos",))
    weights = prior.weights(labels)
    assert weights[2] == pytest.approx(1.0)
    assert weights[0] > 1 > weights[1]  # a is the common in-scope label among what was labelled
    assert sum(prior.target.values()) == pytest.approx(1.0)
    free = VersionPrior.from_rows(labels, train, seen, power=1.0)
    assert free.weights(labels)[2] > 5  # without keep the hand-off label would be boosted
