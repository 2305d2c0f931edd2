"""The encoder's SetFit-style contrastive stage: pairs, what it does to the embeddings, and off means off."""

from __future__ import annotations

import random

import numpy as np
import pytest

from inference.splits import in_holdout
from trainer.config import ConfigError, EncoderConfig

SMALL = {"epochs": 1, "batch_size": 16, "learning_rate": 1e-2, "head_learning_rate": 5e-2, "rank": 8, "alpha": 16,
         "dropout": 0.0, "max_length": 64, "device": "cpu", "tfidf_branch": False, "knn_vote": False}


@pytest.fixture(scope="module")
def rows(demo_rows):
    return [r for r in demo_rows if not in_holdout(r["text"])][:60]


def label_gap(embeddings: np.ndarray, labels: list[int]) -> float:
    """Mean cosine of same-label pairs of distinct rows minus that of different-label pairs."""
    cosine = embeddings @ embeddings.T
    labels = np.array(labels)
    same = labels[:, None] == labels[None, :]
    distinct = ~np.eye(len(labels), dtype=bool)
    return float(cosine[same & distinct].mean() - cosine[~same].mean())


def test_pairs_are_half_same_label_half_other_and_seeded():
    from trainer.contrastive import draw_pairs

    labels = [0, 0, 0, 1, 1, 2]
    pairs = draw_pairs(labels, 4, random.Random(3))
    assert pairs == draw_pairs(labels, 4, random.Random(3))
    for row in range(6):
        mine = [(j, t) for i, j, t in pairs if i == row]
        positives = [j for j, t in mine if t == 1.0]
        negatives = [j for j, t in mine if t == 0.0]
        assert all(labels[j] == labels[row] and j != row for j in positives)
        assert all(labels[j] != labels[row] for j in negatives) and len(negatives) == 2
        # a row alone in its label has nobody to be pulled towards
        assert len(positives) == (0 if row == 5 else 2)
    one_label = draw_pairs([1, 1, 1], 4, random.Random(0))  # nobody to push away: positives only
    assert len(one_label) == 6 and all(t == 1.0 for _, _, t in one_label)
    assert len(draw_pairs(labels, 3, random.Random(0))) == 3 * 6 - 1  # one odd row's positive has no partner


def test_the_config_validates_and_keeps_the_new_fields():
    config = EncoderConfig.from_dict({"contrastive_pairs": 20, "contrastive_epochs": 0.5})
    assert EncoderConfig.from_dict(config.to_dict()) == config
    assert (EncoderConfig().contrastive_pairs, EncoderConfig().contrastive_epochs) == (0, 1.0)
    for bad in ({"contrastive_pairs": -1}, {"contrastive_epochs": -0.1}, {"contrastive_pairs": 2.5},
                {"contrastive_pairs": True}):
        with pytest.raises(ConfigError, match="contrastive"):
            EncoderConfig.from_dict(bad)


def test_the_stage_lowers_its_loss_and_pulls_labels_apart(tiny_bert, task, rows):
    import torch
    from peft import LoraConfig, get_peft_model

    from trainer.contrastive import contrastive_stage
    from trainer.encoder import embed, load_encoder, training_rows, unit_embeddings

    config = EncoderConfig.from_dict({**SMALL, "contrastive_pairs": 8, "contrastive_epochs": 2})
    torch.manual_seed(0)
    model, tokenizer = load_encoder(tiny_bert)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=list(config.target_modules)))
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    texts, labels = training_rows(task, rows, config)
    before = label_gap(embed(model, tokenizer, texts, 64), labels)
    result, pairs = contrastive_stage(model, lambda part: unit_embeddings(model, tokenizer, part, config, "cpu"),
                                      texts, labels, config, progress=False)
    after = label_gap(embed(model, tokenizer, texts, 64), labels)
    assert pairs == 8 * len(texts) - sum(1 for y in labels if labels.count(y) == 1) * 4
    assert result.steps == len(result.losses) == 2 * -(-pairs // config.batch_size)
    assert result.final_loss < 0.8 * result.first_loss, result.losses
    assert after > before + 0.02 and after > 10 * before, (before, after)  # 0.0017 -> 0.042 when written
    # only the adapters learned
    assert all(torch.equal(p, frozen[name]) for name, p in model.named_parameters() if not p.requires_grad)


def _train(tiny_bert, task, rows, **overrides):
    from trainer.encoder import load_encoder, train_encoder

    model, tokenizer = load_encoder(tiny_bert)
    config = EncoderConfig.from_dict({**SMALL, **overrides})
    peft_model, head, result = train_encoder(model, tokenizer, task, rows, config, progress=False)
    lora = {name: p.detach().clone() for name, p in peft_model.named_parameters() if "lora_" in name}
    return head, lora, result


def test_off_trains_exactly_as_without_the_option_and_on_changes_the_start(tiny_bert, task, rows):
    import torch

    head, lora, result = _train(tiny_bert, task, rows)
    # contrastive_pairs 0: the epochs setting is inert and the run is the plain one, bit for bit
    same_head, same_lora, same = _train(tiny_bert, task, rows, contrastive_epochs=3.0)
    assert result.contrastive == same.contrastive == {}
    assert np.array_equal(head.weight, same_head.weight) and np.array_equal(head.bias, same_head.bias)
    assert lora.keys() == same_lora.keys() and all(torch.equal(lora[k], same_lora[k]) for k in lora)
    assert result.losses == same.losses

    on_head, on_lora, on = _train(tiny_bert, task, rows, contrastive_pairs=4)
    stage = on.contrastive
    assert stage["steps"] > 0 and stage["pairs"] > 0 and stage["seconds"] > 0
    assert stage["final_loss"] < stage["first_loss"]
    assert on.seconds >= stage["seconds"] and on.steps == result.steps
    # the head started from the pair-tuned embeddings, so the joint run differs from its first step
    assert on.losses[0] != result.losses[0]
    assert not np.array_equal(on_head.weight, head.weight)
