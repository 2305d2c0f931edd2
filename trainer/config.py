"""Training configuration: one dataclass, saved beside the model it produced."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from inference.errors import TuesdayError
from trainer.export import QUANT_TYPES


class ConfigError(TuesdayError):
    """A training configuration value makes no sense."""


# What each annotation accepts, and how an error names it; a bool is never a number here.
KINDS = {"int": ((int,), "an integer"), "float": ((int, float), "a number"), "bool": ((bool,), "true or false"),
         "str": ((str,), "a string")}


def _wrong_type(name: str, kind: str, value) -> str | None:
    """Why value does not fit a field annotated `kind`, or None when it does (or kind is not a plain one)."""
    if kind.startswith("tuple["):
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return None
        expected = "a list of strings"
    elif kind in KINDS:
        types, expected = KINDS[kind]
        if isinstance(value, types) and (kind == "bool" or not isinstance(value, bool)):
            return None
    else:
        return None  # a nested config checks its own fields
    hint = ""
    if kind == "float" and isinstance(value, str) and "e" in value.lower() and _is_number(value):
        # PyYAML (YAML 1.1) reads 5e-4 as text and 5.0e-4 as a number: say so, or nobody guesses it.
        hint = " (YAML reads an exponent without a '.' as text: write 5.0e-4, not 5e-4)"
    return f"{name} must be {expected}, got {value!r}{hint}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_types(config) -> None:
    """Raise ConfigError naming each field whose value has the wrong type (before any range check compares it)."""
    problems = [p for f in fields(config) if (p := _wrong_type(f.name, f.type, getattr(config, f.name)))]
    if problems:
        raise ConfigError(f"bad {config.KIND} config: " + "; ".join(problems))


def _mapping(data, what: str) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a mapping of config keys, got {data!r}")
    return data


def _lora_problems(config) -> list[str]:
    """What is wrong with the LoRA shape, quantization and device both families share."""
    problems = []
    if config.rank < 1:
        problems.append("rank must be >= 1")
    if config.alpha <= 0:
        problems.append("alpha must be > 0")
    if not 0 <= config.dropout < 1:
        problems.append("dropout must be in [0, 1)")
    if config.quantization not in QUANT_TYPES:
        problems.append(f"quantization must be one of {', '.join(QUANT_TYPES)}")
    if config.device not in ("auto", "cpu", "cuda"):
        problems.append("device must be auto, cpu or cuda")
    return problems


@dataclass
class TrainConfig:
    # LoRA shape: rank of the update matrices and its scaling (alpha / rank).
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.1
    # Which linear layers get adapters; attention and MLP of every block by default.
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # Adapt only the top N transformer blocks (0 = all). Fewer blocks train much faster on CPU.
    layers: int = 0
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    # Passes over the training rows; fractions allowed (0.5 = half an epoch).
    epochs: float = 2.0
    batch_size: int = 8
    # Longer examples are skipped (and counted) rather than cut, so the prompt seen in training
    # is always the prompt served.
    max_length: int = 768
    seed: int = 0
    # Train the reason line where an example has a reviewer's reason.
    with_reasons: bool = True
    # Served quantization of the merged GGUF.
    quantization: str = "q8_0"
    # "auto" picks CUDA when present.
    device: str = "auto"

    KIND: ClassVar[str] = "training"

    def __post_init__(self) -> None:
        check_types(self)
        self.target_modules = tuple(self.target_modules)
        problems = _lora_problems(self)
        if self.layers < 0:
            problems.append("layers must be >= 0 (0 = all blocks)")
        if not 0 < self.learning_rate < 1:
            problems.append("learning_rate must be in (0, 1)")
        if self.epochs <= 0:
            problems.append("epochs must be > 0")
        if self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if self.max_length < 32:
            problems.append("max_length must be >= 32")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if not self.target_modules:
            problems.append("target_modules must name at least one layer")
        if problems:
            raise ConfigError("bad training config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = _mapping(data, "the training config")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a JSON or YAML file of overrides."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        return cls.from_dict(data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


@dataclass
class EncoderConfig:
    """The encoder family: LoRA on a sentence encoder plus a cosine classification head."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.1
    # BERT's linear layers: attention projections and both MLP layers ("dense" covers output ones).
    target_modules: tuple[str, ...] = ("query", "key", "value", "dense")
    # Chosen on banking77 rows held out of its train split (never its test split).
    learning_rate: float = 2e-3
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    epochs: float = 4.0
    batch_size: int = 32
    # Tokens per window; a longer ticket is read as several windows whose token embeddings are
    # averaged together, in training and serving alike, up to max_chunks windows (the first
    # max_chunks - 1 and the last). 1 = cut the ticket after one window.
    max_length: int = 128
    max_chunks: int = 8
    label_smoothing: float = 0.1
    # Add each label's name and description as one more example of it.
    label_examples: bool = True
    # Starting head: "logreg" = logistic regression on the untuned embeddings (the strong
    # few-shot baseline, so tuning starts from it); "centroid" = each label's mean embedding.
    head_init: str = "logreg"
    # Other voices mixed with the head where the holdout says they help (inference/stacking.py):
    # logistic regression over word and character TF-IDF, and a vote of the nearest training rows.
    tfidf_branch: bool = True
    knn_vote: bool = True
    # A SetFit-style first stage (trainer/contrastive.py): LoRA tuned on pairs of training rows,
    # same label -> cosine 1, other label -> 0, before the head is fitted. Pairs drawn per row
    # (half same label, half other; 0 = no stage) and passes over those pairs.
    contrastive_pairs: int = 0
    contrastive_epochs: float = 1.0
    seed: int = 0
    quantization: str = "q8_0"
    device: str = "auto"

    KIND: ClassVar[str] = "encoder"

    def __post_init__(self) -> None:
        check_types(self)
        self.target_modules = tuple(self.target_modules)
        problems = _lora_problems(self)
        if not 0 < self.learning_rate < 1 or not 0 < self.head_learning_rate < 1:
            problems.append("learning rates must be in (0, 1)")
        if self.epochs <= 0:
            problems.append("epochs must be > 0")
        if self.batch_size < 2:
            problems.append("batch_size must be >= 2")
        if not 8 <= self.max_length <= 512:
            problems.append("max_length must be in [8, 512]")
        if not 1 <= self.max_chunks <= 64:
            problems.append("max_chunks must be in [1, 64]")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1)")
        if self.head_init not in ("logreg", "centroid"):
            problems.append("head_init must be logreg or centroid")
        if self.contrastive_pairs < 0:
            problems.append("contrastive_pairs must be >= 0 (0 = no contrastive stage)")
        if self.contrastive_epochs < 0:
            problems.append("contrastive_epochs must be >= 0")
        if problems:
            raise ConfigError("bad encoder config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EncoderConfig:
        data = _mapping(data, "the encoder config")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown encoder config keys: {', '.join(unknown)}")
        return cls(**data)


FAMILIES = ("encoder", "decoder")
# "auto": the encoder everywhere, the decoder too where the train job finds a GPU (on 2 CPU cores
# the decoder took 445 s of a demo retrain and lost to the encoder).
AUTO = "auto"


def resolve_families(families: tuple[str, ...], device: str = "auto") -> tuple[str, ...]:
    """The families a run trains on this host: `families`, or what "auto" means here."""
    if tuple(families) != (AUTO,):
        return tuple(families)
    import torch

    gpu = device != "cpu" and torch.cuda.is_available()
    return FAMILIES if gpu else ("encoder",)


@dataclass
class RunConfig:
    """One training run: which families to train, each family's config, and the calibration target.

    As a mapping: {"families": [...], "encoder": {...}, "decoder": {...}, "max_wrong": 0.05};
    other top-level keys are decoder keys (the shape older config files have).
    """

    families: tuple[str, ...] = (AUTO,)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: TrainConfig = field(default_factory=TrainConfig)
    # The abstain threshold is chosen on the holdout so that at most this share of shown
    # suggestions is wrong; the hand-off threshold so that at most this share of tickets
    # the team could handle is escalated.
    max_wrong: float = 0.05
    evidence_k: int = 3

    KIND: ClassVar[str] = "run"

    def __post_init__(self) -> None:
        check_types(self)
        self.families = tuple(self.families)
        bad = [f for f in self.families if f not in FAMILIES] if self.families != (AUTO,) else []
        if bad or not self.families:
            raise ConfigError(f"families must be auto or name one or both of {', '.join(FAMILIES)} "
                              f"(got {', '.join(bad) or 'none'})")
        if not 0 < self.max_wrong < 1:
            raise ConfigError("max_wrong must be in (0, 1)")

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        data = dict(_mapping(data, "the run config"))
        families = data.pop("families", (AUTO,))
        if isinstance(families, str):
            families = [f.strip() for f in families.split(",") if f.strip()]
        encoder = EncoderConfig.from_dict(_mapping(data.pop("encoder", None), "encoder"))
        top = {k: data.pop(k) for k in ("max_wrong", "evidence_k") if k in data}
        decoder = TrainConfig.from_dict({**_mapping(data.pop("decoder", None), "decoder"), **data})
        return cls(families=families, encoder=encoder, decoder=decoder, **top)

    def to_dict(self) -> dict:
        return {"families": list(self.families), "encoder": self.encoder.to_dict(), "decoder": self.decoder.to_dict(),
                "max_wrong": self.max_wrong, "evidence_k": self.evidence_k}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
