"""The encoder family's classification head, applied in numpy to llama.cpp embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.errors import ModelError


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.clip(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12, None)


@dataclass
class EncoderHead:
    """logits = scale * unit(embedding) @ weight.T + bias, one row of `weight` per label."""

    labels: list[str]
    weight: np.ndarray  # n_labels x dim
    bias: np.ndarray  # n_labels
    scale: float
    max_length: int = 128  # tokens per window, in training and serving
    max_chunks: int = 1  # windows read of a long ticket (heads saved before windows: cut after one)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return self.scale * unit(embeddings) @ np.asarray(self.weight, dtype=np.float32).T + self.bias

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        z = self.logits(embeddings)
        z = z - z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=-1, keepdims=True)

    def save(self, path: Path) -> Path:
        np.savez(path, labels=np.array(self.labels), weight=self.weight.astype(np.float32),
                 bias=self.bias.astype(np.float32), scale=np.float32(self.scale), max_length=np.int32(self.max_length),
                 max_chunks=np.int32(self.max_chunks))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> EncoderHead:
        try:
            data = np.load(path)
        except FileNotFoundError:
            raise ModelError(f"classification head not found: {path}") from None
        return cls(labels=[str(x) for x in data["labels"]], weight=data["weight"], bias=data["bias"],
                   scale=float(data["scale"]), max_length=int(data["max_length"]),
                   max_chunks=int(data["max_chunks"]) if "max_chunks" in data else 1)
