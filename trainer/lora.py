"""LoRA fine-tuning of a causal LM on (prompt, completion) pairs, loss on the completion only."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from inference.errors import ModelError
from trainer.config import TrainConfig

IGNORE = -100


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)  # mean loss per step
    skipped_too_long: int = 0
    seconds: float = 0.0

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else float("nan")

    @property
    def final_loss(self) -> float:
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail) if tail else float("nan")


def pick_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def load_base(base: str | Path):
    """(model, tokenizer) from a GGUF file (dequantized to float) or a local HF directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = Path(base)
    if not base.exists():
        raise ModelError(f"base model not found: {base}")
    kwargs = {"gguf_file": base.name} if base.is_file() else {}
    folder = base.parent if base.is_file() else base
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load base model {base}: {exc}") from None
    if getattr(model.config, "quantization_config", None) is not None:
        # a GGUF load leaves a marker behind; the weights are already plain floats
        del model.config.quantization_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def encode_pair(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Token ids and loss labels; prompt and completion are tokenized apart, as served."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None else []
    ids = bos + prompt_ids + completion_ids
    labels = [IGNORE] * (len(bos) + len(prompt_ids)) + completion_ids
    return ids, labels


def _batches(encoded: list[tuple[list[int], list[int]]], batch_size: int, rng: random.Random):
    """Shuffle, then group similar lengths together so CPU time is not spent on padding."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    chunk = batch_size * 16
    batches = []
    for start in range(0, len(order), chunk):
        block = sorted(order[start:start + chunk], key=lambda i: len(encoded[i][0]))
        batches += [block[i:i + batch_size] for i in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(encoded, indices, pad_id: int, device):
    """Left-pad so every completion ends at the last column (logits are kept only there)."""
    width = max(len(encoded[i][0]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        x, y = encoded[i]
        ids[row, width - len(x):] = torch.tensor(x)
        labels[row, width - len(y):] = torch.tensor(y)
        mask[row, width - len(x):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each row starts at position 0, as when served
    first_target = int((labels != IGNORE).float().argmax(-1).min())
    keep = width - first_target + 1  # logits from the token before the first target onwards
    return ids.to(device), labels.to(device), mask.to(device), positions.to(device), keep


def _completion_loss(model, ids, labels, mask, positions, keep):
    # Computing vocabulary logits only where there is a target saves most of the output layer's work.
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
    shifted = logits[:, :-1, :].float()
    targets = labels[:, -(keep - 1):]
    return torch.nn.functional.cross_entropy(shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1),
                                             ignore_index=IGNORE)


def warmup_then_linear(optimizer, total: int, warmup: int):
    """Learning rate rising over `warmup` steps, then falling linearly to 0 at `total`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))


def shuffled_batches(n: int, batch_size: int, steps: int, rng):
    """`steps` batches of row indices: passes over 0..n-1, each in a fresh seeded order, cut in batches."""
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += rng.sample(range(n), n)
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def optimizer_step(loss, params, optimizer, schedule, result: TrainResult, bar) -> None:
    """Backward, clip, step, record the loss: one training step of either family."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    result.losses.append(float(loss.detach()))
    bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
    bar.update()


def train_adapter(model, tokenizer, pairs: list[tuple[str, str]], config: TrainConfig, *, progress: bool = True):
    """Wrap `model` with a LoRA adapter and train it; returns (peft_model, TrainResult)."""
    import time

    from peft import LoraConfig, get_peft_model

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    device = pick_device(config)

    encoded, skipped = [], 0
    for prompt, completion in pairs:
        ids, labels = encode_pair(tokenizer, prompt, completion)
        if len(ids) > config.max_length:
            skipped += 1
            continue
        encoded.append((ids, labels))
    if not encoded:
        raise ModelError("no training examples fit max_length; raise it or shorten the task's label descriptions")

    n_layers = model.config.num_hidden_layers
    # Adapting only the top blocks means backward stops there: the main CPU saving.
    top = list(range(max(0, n_layers - config.layers), n_layers)) if config.layers else None
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), layers_to_transform=top, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)

    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total = max(1, round(steps_per_epoch * config.epochs))
    warmup = int(total * config.warmup_ratio)
    schedule = warmup_then_linear(optimizer, total, warmup)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    result = TrainResult(steps=total, skipped_too_long=skipped)
    started = time.perf_counter()
    bar = tqdm(total=total, desc="training", unit="step", disable=not progress)
    batches: list[list[int]] = []
    for step in range(total):
        if not batches:
            batches = _batches(encoded, config.batch_size, rng)
        batch = _collate(encoded, batches.pop(), tokenizer.pad_token_id, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = _completion_loss(model, *batch)
        optimizer_step(loss, params, optimizer, schedule, result, bar)
    bar.close()
    result.seconds = time.perf_counter() - started
    model.eval()
    return model, result


def merge_adapter(peft_model):
    """Fold the LoRA update into the base weights; returns a plain transformers model on CPU."""
    return peft_model.merge_and_unload().to("cpu").eval()
