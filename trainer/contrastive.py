"""A SetFit-style first stage for the encoder family: LoRA tuned on pairs of training rows.

Each pair is two rows with a target: 1 when they share a label, 0 when they do not; the loss is
the squared gap between the cosine of their embeddings and the target (SetFit's CosineSimilarityLoss).
train_encoder runs it after wrapping the encoder in LoRA and before fitting the head, so the head
starts from a classifier on the tuned embeddings. The encoder is passed in as `encode` (texts ->
unit embeddings with gradients), so this module never imports trainer.encoder.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from trainer.config import EncoderConfig
from trainer.lora import TrainResult, optimizer_step, shuffled_batches


def draw_pairs(labels: list[int], per_row: int, rng: random.Random) -> list[tuple[int, int, float]]:
    """(row, partner, target) for per_row pairs of each row, alternately with a row of its own label
    (target 1.0) and of another label (0.0), so half of all pairs are positive.

    A positive draw for a row whose label has no other row is dropped, as is a negative draw when
    every row has one label.
    """
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    several_labels = len(by_label) > 1
    pairs = []
    for i, label in enumerate(labels):
        same = [j for j in by_label[label] if j != i]
        for k in range(per_row):
            if (i * per_row + k) % 2 == 0:
                if same:
                    pairs.append((i, rng.choice(same), 1.0))
            elif several_labels:
                j = rng.randrange(len(labels))
                while labels[j] == label:
                    j = rng.randrange(len(labels))
                pairs.append((i, j, 0.0))
    return pairs


def contrastive_stage(model, encode: Callable[[list[str]], torch.Tensor], texts: list[str], labels: list[int],
                      config: EncoderConfig, *, progress: bool = True) -> tuple[TrainResult, int]:
    """Train `model`'s trainable (LoRA) parameters on drawn pairs; returns (TrainResult, pairs drawn).

    Batches of config.batch_size pairs, AdamW at config.learning_rate decaying linearly to 0,
    config.contrastive_epochs passes over the pairs (seeded by config.seed).
    """
    rng = random.Random(config.seed)
    pairs = draw_pairs(labels, config.contrastive_pairs, rng)
    total = round(math.ceil(len(pairs) / config.batch_size) * config.contrastive_epochs)
    result = TrainResult(steps=total)
    if total == 0:
        return result, len(pairs)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, (total - s) / total))
    device = next(model.parameters()).device
    model.train()
    started = time.perf_counter()
    bar = tqdm(total=total, desc="contrastive stage", unit="step", disable=not progress)
    for idx in shuffled_batches(len(pairs), config.batch_size, total, rng):
        batch = [pairs[i] for i in idx]
        emb = encode([texts[a] for a, _, _ in batch] + [texts[b] for _, b, _ in batch])
        cosine = (emb[:len(batch)] * emb[len(batch):]).sum(dim=-1)
        target = torch.tensor([t for _, _, t in batch], dtype=cosine.dtype, device=device)
        loss = torch.nn.functional.mse_loss(cosine, target)
        optimizer_step(loss, params, optimizer, schedule, result, bar)
    bar.close()
    result.seconds = time.perf_counter() - started
    return result, len(pairs)
