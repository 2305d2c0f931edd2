"""Label frequencies from the live stream: EM on synthetic data, then the upkeep chore and serving on real SQL
(SQLite and PostgreSQL), Redis and the tiny trained model."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli.main import main
from bot.monitor.label_priors import ESTIMATE_EVERY, estimate_label_prior, prior_line, prior_summary
from bot.queues import Queues
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.base import utc_now
from bot.store.tickets import LabelPrior, Suggestion, add_suggestion
from bot.worker.suggest import Suggester
from bot.worker.upkeep import Upkeep
from inference.predictor import Suggestion as Prediction
from inference.priors import VersionPrior, adjust, estimate_prior, total_variation
from tests.test_suggest import copy_version
from tests.demo_names import DEMO_TASK
from tests.tickets import stored_ticket


@pytest.fixture(autouse=True)
def no_far_rule(monkeypatch):
    """Suggestions here are routed by confidence on the tiny random encoder, whose similarities mean nothing: the
    far rule (tests/test_promise_rows.py) is off here (TUESDAY_FAR_RULE)."""
    monkeypatch.setenv("TUESDAY_FAR_RULE", "false")


REDIS_DB = 10  # this module's own database on the local Redis, flushed around every test
TEXT = "Where is my claim? I sent the photos last week."


# -- EM on data whose exact posteriors are known --------------------------------------------------

def test_em_recovers_a_shifted_prior_and_the_adjustment_raises_accuracy():
    rng = np.random.default_rng(7)
    means = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    live = np.array([0.7, 0.1, 0.1, 0.1])
    y = rng.choice(4, size=20_000, p=live)
    x = means[y] + rng.normal(size=(len(y), 2))
    # Exact posteriors under a uniform training prior: softmax of the Gaussian log-likelihoods.
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(axis=-1)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    uniform = np.full(4, 0.25)

    found = estimate_prior(probs, uniform)
    assert np.abs(found - live).max() < 0.03
    assert total_variation(found, uniform) == pytest.approx(0.45, abs=0.03)
    before = (probs.argmax(axis=1) == y).mean()
    after = (adjust(probs, uniform, found).argmax(axis=1) == y).mean()
    assert after > before + 0.05
    # Nothing to recover when the stream has the training prior.
    balanced = rng.choice(4, size=20_000)
    xb = means[balanced] + rng.normal(size=(len(balanced), 2))
    lb = -0.5 * ((xb[:, None, :] - means[None]) ** 2).sum(axis=-1)
    pb = np.exp(lb - lb.max(axis=1, keepdims=True))
    assert total_variation(estimate_prior(pb / pb.sum(axis=1, keepdims=True), uniform), uniform) < 0.03


# -- the chore and serving ------------------------------------------------------------------------

@pytest.fixture
def runtime_env(store_url, redis_url, trained_version, monkeypatch):
    """Settings of a store (SQLite or PostgreSQL) whose production v1 is the tiny model, suggesting every ticket."""
    monkeypatch.setenv("TUESDAY_DATABASE_URL", store_url)
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_REASONS", "false")
    monkeypatch.setenv("TUESDAY_PRIOR_MIN_TICKETS", "30")
    production = Runtime(Settings()).production
    v1 = copy_version(production.registry, trained_version[1], {"abstain_threshold": 0.0, "handoff_threshold": 0.0})
    production.switch(v1.name, by="test", reason="fixture")
    return monkeypatch


def runtime_with(monkeypatch, **settings) -> Runtime:
    for name, value in settings.items():
        monkeypatch.setenv(f"TUESDAY_{name.upper()}", str(value))
    return Runtime(Settings())


def suggest(runtime: Runtime, external_id: str, text: str = TEXT) -> Suggestion:
    ticket, _ = stored_ticket(runtime.sessions, source="generic", external_id=external_id, text=text)
    suggester = Suggester(runtime, None)
    try:
        result = suggester.run(ticket.id)
    finally:
        suggester.close()
    with runtime.sessions() as session:
        return session.get(Suggestion, result["suggestion_id"])


def store_skewed(runtime: Runtime, labels: list[str], frequent: str, n: int = 30) -> list[dict]:
    """n suggestions v1 made earlier, each sure of one label, four in five of them `frequent` (most tickets are
    about it); returns their probabilities."""
    others = [label for label in labels if label != frequent]
    stored = []
    for i in range(n):
        sure = others[(i // 5) % len(others)] if i % 5 == 0 else frequent
        probs = {label: 0.85 if label == sure else 0.15 / (len(labels) - 1) for label in labels}
        ticket, _ = stored_ticket(runtime.sessions, source="generic", external_id=f"earlier-{i}", text=f"earlier {i}")
        with runtime.sessions() as session:
            add_suggestion(session, ticket.id, Prediction(label=sure, confidence=0.85, probabilities=probs,
                                                          model_version="v1"), threshold=0.0, task=DEMO_TASK)
        stored.append(probs)
    return stored


def priors(runtime: Runtime) -> list[LabelPrior]:
    with runtime.sessions() as session:
        return list(session.scalars(select(LabelPrior).order_by(LabelPrior.id)))


def vector(probs: dict, labels: list[str]) -> np.ndarray:
    return np.array([probs[label] for label in labels])


@pytest.mark.slow
def test_the_chore_estimates_the_live_prior_and_the_next_suggestion_is_reweighted(runtime_env, trained_version):
    off = runtime_with(runtime_env)
    raw = suggest(off, "before")  # the setting off: the model's own probabilities
    assert raw.prior_id is None
    labels = list(raw.probs)
    frequent = min(labels, key=raw.probs.get)  # the label the model thinks least likely for TEXT
    earlier = store_skewed(off, labels, frequent)
    assert estimate_label_prior(off) is None and priors(off) == []

    on = runtime_with(runtime_env, prior_adjustment="true")
    queues = Queues.from_settings(on.settings)
    try:
        Upkeep(on, queues).tick()  # the upkeep's "priors" chore stores the estimate
    finally:
        queues.close()
    [prior] = priors(on)
    trained = json.loads((trained_version[1].path / "drift.json").read_text())["training_labels"]
    counts = {label: trained.get(label, 0) or 0.5 for label in labels}  # a label without rows: half a row
    expected_train = {label: c / sum(counts.values()) for label, c in counts.items()}
    manifest = trained_version[1].manifest  # the version's own label prior, if its holdout chose one, moves it
    chosen = VersionPrior.from_dict(manifest["families"][manifest["family"]].get("prior"))
    expected_train = chosen.carried(expected_train) if chosen is not None else expected_train
    rows = np.array([vector(p, labels) for p in [raw.probs, *earlier]])
    live = estimate_prior(rows, vector(expected_train, labels))
    assert (prior.version, prior.n_tickets, prior.applied) == ("v1", 31, True)
    assert json.loads(prior.training) == pytest.approx(expected_train)
    assert vector(json.loads(prior.prior), labels) == pytest.approx(live, abs=1e-6)
    assert prior.shift == pytest.approx(total_variation(live, vector(expected_train, labels)))
    assert max(json.loads(prior.prior), key=json.loads(prior.prior).get) == frequent

    shown = suggest(on, "after")  # the same text, now re-weighted by the stored estimate
    adjusted = adjust(vector(raw.probs, labels), vector(expected_train, labels), live)
    assert shown.prior_id == prior.id
    assert vector(shown.probs, labels) == pytest.approx(adjusted, abs=1e-6)
    assert shown.label == shown.predicted_label == frequent != raw.label
    assert shown.confidence == pytest.approx(adjusted.max(), abs=1e-6) and shown.routing == "suggested"

    # Within ten minutes nothing new; after, the estimate reads the model's own probabilities again
    # (the re-weighted row undone), so it does not feed on itself.
    assert estimate_label_prior(on) is None
    again = estimate_label_prior(on, now=utc_now() + ESTIMATE_EVERY + timedelta(seconds=1))
    rows = np.vstack([rows, vector(raw.probs, labels)])
    assert again.n_tickets == 32
    assert vector(json.loads(again.prior), labels) == pytest.approx(
        estimate_prior(rows, vector(expected_train, labels)), abs=1e-6)

    line = prior_line(prior_summary(on))
    assert line.startswith("• label frequencies: adjusted from 32 recent tickets (shift ")
    assert f"top: {frequent} " in line and "% vs " in line
    out = CliRunner().invoke(main, ["status"], catch_exceptions=False)
    assert out.exit_code == 0 and "label frequencies: adjusted from 32 recent tickets" in out.output


@pytest.mark.slow
def test_a_shift_below_the_minimum_is_stored_but_not_applied(runtime_env):
    on = runtime_with(runtime_env, prior_adjustment="true", prior_min_shift="0.99")
    assert "not adjusted: 0 of the 30 recent tickets it needs" in prior_line(prior_summary(on))
    raw = suggest(runtime_with(runtime_env, prior_adjustment="false"), "before")
    labels = list(raw.probs)
    store_skewed(on, labels, min(labels, key=raw.probs.get))
    assert "no estimate yet" in prior_line(prior_summary(on))

    prior = estimate_label_prior(on)
    assert prior.applied is False and 0.05 < prior.shift < 0.99 and priors(on)[0].id == prior.id
    shown = suggest(on, "after")
    assert shown.prior_id is None and shown.probs == pytest.approx(raw.probs) and shown.label == raw.label
    assert prior_line(prior_summary(on)) == (f"• label frequencies: not adjusted: shift {prior.shift:.2f} below "
                                            "0.99 (from 31 recent tickets)")


@pytest.mark.slow
def test_with_the_setting_off_nothing_changes(runtime_env):
    on = runtime_with(runtime_env, prior_adjustment="true")
    raw = suggest(on, "before")  # no estimate yet: served as the model said
    labels = list(raw.probs)
    store_skewed(on, labels, min(labels, key=raw.probs.get))
    assert estimate_label_prior(on).applied

    off = runtime_with(runtime_env, prior_adjustment="false")
    assert estimate_label_prior(off, now=utc_now() + 2 * ESTIMATE_EVERY) is None and len(priors(off)) == 1
    shown = suggest(off, "after")  # an applied estimate is in the store, and serving ignores it
    assert shown.prior_id is None and shown.probs == pytest.approx(raw.probs)
    assert (shown.label, shown.confidence) == (raw.label, pytest.approx(raw.confidence))
    assert prior_line(prior_summary(off)) == "• label frequencies: not adjusted (setting off)"


def test_a_label_the_model_never_learned_does_not_absorb_the_stream():
    """A label with no training rows (new since training, or out of scope) keeps its training share: before, EM
    moved the whole prior onto it (its weight live/train grew without bound) and every ticket got it."""
    rng = np.random.default_rng(3)
    means = np.array([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5], [2.5, 2.5]])
    live = np.array([0.4, 0.3, 0.2, 0.1])
    y = rng.choice(4, size=5000, p=live)
    x = means[y] + rng.normal(size=(len(y), 2))
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(axis=-1)
    learned = np.exp(logits - logits.max(axis=1, keepdims=True))
    learned /= learned.sum(axis=1, keepdims=True)
    unseen = rng.uniform(0.005, 0.05, size=len(y))  # a small, noisy probability on every ticket
    probs = np.column_stack([learned * (1 - unseen[:, None]), unseen])
    train = np.array([100, 100, 100, 100, 0.5])  # the fifth label: half a row, as label_priors counts none

    found = estimate_prior(probs, train)
    assert found[4] == pytest.approx(train[4] / train.sum(), rel=1e-6)  # kept at its training share
    assert np.abs(found[:4] / found[:4].sum() - live).max() < 0.03  # the learned labels' skew is still found
    adjusted = adjust(probs, train, found)
    assert (adjusted.argmax(axis=1) == 4).mean() == 0.0
    assert (adjusted.argmax(axis=1) == y).mean() >= (probs.argmax(axis=1) == y).mean()
    # Re-weighting back from the live prior to the training one undoes it exactly (stored suggestions rely on it).
    assert np.allclose(adjust(adjusted, found, train), probs)


def test_no_weight_passes_its_bound():
    from inference.priors import MAX_WEIGHT

    probs = np.array([[0.5, 0.5]])
    moved = adjust(probs, [0.5, 0.5], [0.999, 0.001])
    # the rare label's weight 0.001/0.5 stops at 1/MAX_WEIGHT; the other's, 0.999/0.5, is within its bound
    assert moved[0, 0] / moved[0, 1] == pytest.approx((0.999 / 0.5) * MAX_WEIGHT)
    assert np.allclose(adjust(moved, [0.999, 0.001], [0.5, 0.5]), probs)


# -- a version with its own label prior (issue 6): the live EM starts from what its probabilities carry -------------

@pytest.fixture
def prior_env(store_url, redis_url, trained_version, task, monkeypatch):
    """Like runtime_env, but production v1 records a label prior (power 1, one label taking most rows)."""
    import shutil

    from inference.priors import VersionPrior

    monkeypatch.setenv("TUESDAY_DATABASE_URL", store_url)
    monkeypatch.setenv("TUESDAY_REDIS_URL", redis_url)
    monkeypatch.setenv("TUESDAY_REASONS", "false")
    monkeypatch.setenv("TUESDAY_PRIOR_MIN_TICKETS", "30")
    _, version, train, holdout = trained_version
    target = train + [r for r in holdout if r["label"] == "claim_status"] * 3
    prior = VersionPrior.from_rows(task.label_names, train, target, power=1.0)
    production = Runtime(Settings()).production
    staging = production.registry.stage()
    shutil.copytree(version.path, staging, dirs_exist_ok=True)
    manifest = json.loads((version.path / "version.json").read_text())
    manifest["calibration"] = {**manifest["calibration"], "abstain_threshold": 0.0, "handoff_threshold": 0.0}
    manifest["families"]["decoder"]["prior"] = prior.to_dict()
    v1 = production.registry.commit(staging, manifest)
    production.switch(v1.name, by="test", reason="fixture")
    return monkeypatch, prior


@pytest.mark.slow
def test_the_live_estimate_starts_from_the_prior_the_version_serves(prior_env, trained_version):
    monkeypatch, version_prior = prior_env
    off = runtime_with(monkeypatch)
    raw = suggest(off, "before")  # served with the version's prior already applied
    labels = list(raw.probs)
    frequent = min(labels, key=raw.probs.get)
    earlier = store_skewed(off, labels, frequent)

    on = runtime_with(monkeypatch, prior_adjustment="true")
    prior = estimate_label_prior(on)
    trained = json.loads((trained_version[1].path / "drift.json").read_text())["training_labels"]
    counts = {label: trained.get(label, 0) or 0.5 for label in labels}
    own = {label: c / sum(counts.values()) for label, c in counts.items()}  # what the model alone carries
    carried = version_prior.carried(own)
    assert vector(carried, labels) != pytest.approx(vector(own, labels), abs=0.01)  # the version prior moved it
    assert json.loads(prior.training) == pytest.approx(carried)  # re-weighting starts from what is served
    rows = np.array([vector(p, labels) for p in [raw.probs, *earlier]])
    live = estimate_prior(rows, vector(carried, labels))
    assert vector(json.loads(prior.prior), labels) == pytest.approx(live, abs=1e-6)
    assert prior.shift == pytest.approx(total_variation(live, vector(carried, labels)))

    shown = suggest(on, "after")  # re-weighted from the carried prior to the live one, not from the model's own
    assert shown.prior_id == prior.id
    assert vector(shown.probs, labels) == pytest.approx(adjust(vector(raw.probs, labels), vector(carried, labels), live),
                                                        abs=1e-6)
