"""The encoder family: LoRA on a sentence encoder plus a linear classification head.

Embeddings are mean-pooled over real tokens and L2-normalised, exactly as llama.cpp
serves them from the exported GGUF. The head (logits = W @ embedding + b) starts as a
logistic regression fitted on the untuned embeddings (or at the label centroids), so
step 0 is already the strong few-shot baseline; LoRA adapters on every linear layer of
the encoder then train together with the head. With contrastive_pairs set, a SetFit-style
stage (trainer/contrastive.py) tunes the LoRA adapters on pairs of rows first, and the head
starts from the tuned embeddings instead.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from inference.encoder_head import EncoderHead, unit
from inference.errors import ModelError
from inference.task import Task
from trainer.config import EncoderConfig
from trainer.contrastive import contrastive_stage
from trainer.lora import TrainResult, optimizer_step, pick_device, shuffled_batches

CENTROID_SCALE = 20.0  # logits of a centroid head: 20 x cosine similarity


@dataclass
class EncoderResult(TrainResult):
    """The joint training's record; seconds include the contrastive stage, which `contrastive` describes."""

    contrastive: dict = field(default_factory=dict)  # empty when the stage is off


def load_encoder(base: str | Path):
    """(BertModel, tokenizer) from a local Hugging Face folder (sentence-transformers layout is fine)."""
    from transformers import AutoModel, AutoTokenizer

    base = Path(base)
    if not base.is_dir():
        raise ModelError(f"encoder base not found (a Hugging Face folder): {base}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        model = AutoModel.from_pretrained(base, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load encoder base {base}: {exc}") from None
    return model, tokenizer


def keep_chunks(owner: list[int], max_chunks: int) -> list[int]:
    """Indices of the chunks kept: a text's first max_chunks - 1 windows and its last one (the end
    of a long ticket often says what it is about), the way llama.cpp serving keeps them; with
    max_chunks 1 the first window only (the ticket is cut)."""
    keep, by_text = [], {}
    for i, text in enumerate(owner):
        by_text.setdefault(text, []).append(i)
    for chunks in by_text.values():
        if len(chunks) > max_chunks:
            chunks = chunks[:1] if max_chunks == 1 else chunks[:max_chunks - 1] + chunks[-1:]
        keep += chunks
    return sorted(keep)


def tokenize_chunks(tokenizer, texts: list[str], max_length: int, max_chunks: int, device) -> tuple[dict, torch.Tensor]:
    """Each text as windows of max_length tokens ([CLS] piece [SEP], no overlap), and which text each window is of."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_overflowing_tokens=True,
                      return_tensors="pt")
    owner = batch.pop("overflow_to_sample_mapping")
    keep = torch.tensor(keep_chunks(owner.tolist(), max_chunks), dtype=torch.long)
    return {k: v[keep].to(device) for k, v in batch.items()}, owner[keep].to(device)


def mean_pool(model, batch, owner: torch.Tensor, n_texts: int) -> torch.Tensor:
    """Mean of the last hidden states over each text's real tokens, across its windows
    (sentence-transformers' pooling when a text fits one window)."""
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    sums = torch.zeros(n_texts, hidden.size(-1), dtype=hidden.dtype, device=hidden.device)
    sums = sums.index_add(0, owner, (hidden * mask).sum(dim=1))
    counts = torch.zeros(n_texts, dtype=hidden.dtype, device=hidden.device).index_add(0, owner, mask.sum(dim=(1, 2)))
    return sums / counts.clamp(min=1e-9).unsqueeze(-1)


def embed(model, tokenizer, texts: list[str], max_length: int, max_chunks: int = 1, batch_size: int = 64) -> np.ndarray:
    """Unit-length embeddings of texts (transformers; the reference for llama.cpp parity)."""
    device = next(model.parameters()).device
    out = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            part = texts[i:i + batch_size]
            batch, owner = tokenize_chunks(tokenizer, part, max_length, max_chunks, device)
            pooled = mean_pool(model, batch, owner, len(part))
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), dtype=np.float32)


def unit_embeddings(model, tokenizer, texts: list[str], config: EncoderConfig, device) -> torch.Tensor:
    """Unit embeddings of texts with gradients: what training optimises, pooled as embed() serves it."""
    batch, owner = tokenize_chunks(tokenizer, texts, config.max_length, config.max_chunks, device)
    return torch.nn.functional.normalize(mean_pool(model, batch, owner, len(texts)), dim=-1)


def label_text(label: str, description: str) -> str:
    """'card_arrival' + description -> 'card arrival: <description>'."""
    name = label.replace("_", " ").replace("-", " ")
    return f"{name}: {description}" if description else name


def training_rows(task: Task, rows: list[dict], config: EncoderConfig) -> tuple[list[str], list[int]]:
    index = {label: i for i, label in enumerate(task.labels)}
    texts = [r["text"] for r in rows]
    labels = [index[r["label"]] for r in rows]
    if config.label_examples:
        texts += [label_text(label, description) for label, description in task.labels.items()]
        labels += list(range(len(task.labels)))
    return texts, labels


def initial_head(embeddings: np.ndarray, labels: np.ndarray, n_labels: int, how: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of the starting head over unit embeddings, task label order."""
    centroids = np.zeros((n_labels, embeddings.shape[1]), dtype=np.float32)
    np.add.at(centroids, labels, embeddings)
    weight = CENTROID_SCALE * unit(centroids)  # a label without rows gets a zero row
    bias = np.zeros(n_labels, dtype=np.float32)
    if how == "logreg" and len(set(labels.tolist())) > 1:
        from sklearn.linear_model import LogisticRegression

        fitted = LogisticRegression(C=10, max_iter=2000).fit(embeddings, labels)
        weight[fitted.classes_] = fitted.coef_ if len(fitted.classes_) > 2 else np.vstack([-fitted.coef_, fitted.coef_])
        bias[:] = fitted.intercept_.min() - 10.0  # labels without rows start far behind
        bias[fitted.classes_] = fitted.intercept_ if len(fitted.classes_) > 2 else [-fitted.intercept_[0], fitted.intercept_[0]]
    return weight.astype(np.float32), bias.astype(np.float32)


def train_encoder(model, tokenizer, task: Task, rows: list[dict], config: EncoderConfig, *, progress: bool = True):
    """Train LoRA + head (after the contrastive stage, if on); returns (peft_model, EncoderHead, EncoderResult)."""
    from peft import LoraConfig, get_peft_model

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    device = pick_device(config)
    texts, labels = training_rows(task, rows, config)
    if not texts:
        raise ModelError("no training rows for the encoder")
    n_labels = len(task.labels)

    model = model.to(device)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules))
    stage, stage_pairs = None, 0
    if config.contrastive_pairs:
        # SetFit's order: the encoder learns from pairs first, then the head is fitted on what it now embeds.
        model = get_peft_model(model, lora)
        encode = partial(unit_embeddings, model, tokenizer, config=config, device=device)
        stage, stage_pairs = contrastive_stage(model, encode, texts, labels, config, progress=progress)
    # The head starts where a classifier on the untuned (or pair-tuned) embeddings would be.
    start = embed(model, tokenizer, texts, config.max_length, config.max_chunks)
    w0, b0 = initial_head(start, np.array(labels), n_labels, config.head_init)
    weight = torch.nn.Parameter(torch.tensor(w0, device=device))
    bias = torch.nn.Parameter(torch.tensor(b0, device=device))
    target = torch.tensor(labels, device=device)

    if stage is None:
        model = get_peft_model(model, lora)
    model.train()
    lora_params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": lora_params, "lr": config.learning_rate, "weight_decay": config.weight_decay},
        {"params": [weight, bias], "lr": config.head_learning_rate, "weight_decay": 0.0},
    ])
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = max(1, round(steps_per_epoch * config.epochs))
    warmup = max(1, int(total * 0.06))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))

    result = EncoderResult(steps=total)
    if stage is not None:
        result.contrastive = {"pairs": stage_pairs, "steps": stage.steps, "seconds": stage.seconds,
                              "first_loss": stage.first_loss, "final_loss": stage.final_loss}
    started = time.perf_counter()
    bar = tqdm(total=total, desc="training encoder", unit="step", disable=not progress)
    for idx in shuffled_batches(len(texts), config.batch_size, total, rng):
        emb = unit_embeddings(model, tokenizer, [texts[i] for i in idx], config, device)
        logits = emb @ weight.T + bias
        loss = torch.nn.functional.cross_entropy(logits, target[idx], label_smoothing=config.label_smoothing)
        optimizer_step(loss, lora_params + [weight], optimizer, schedule, result, bar)
    bar.close()
    result.seconds = time.perf_counter() - started + (stage.seconds if stage is not None else 0.0)
    model.eval()
    head = EncoderHead(labels=task.label_names, weight=weight.detach().cpu().numpy(),
                       bias=bias.detach().cpu().numpy(), scale=1.0, max_length=config.max_length,
                       max_chunks=config.max_chunks)
    return model, head, result
