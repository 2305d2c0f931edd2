"""Evidence for a suggestion: the labelled training examples nearest to the ticket.

A version stores the (masked) training rows it learned from and their embeddings from
the version's encoder (`evidence.jsonl` + `evidence.npy`); holdout rows are never in it.
At serving time the ticket is embedded with the same encoder and its nearest rows are
shown with their label and the reviewer's one-sentence reason, so an agent can check
the suggestion against examples the team itself labelled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROWS_FILE, VECTORS_FILE = "evidence.jsonl", "evidence.npy"


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.clip(norms, 1e-12, None)


class EvidenceIndex:
    """Training rows and their unit-length embeddings; cosine nearest neighbours."""

    def __init__(self, rows: list[dict], vectors: np.ndarray):
        if len(rows) != len(vectors):
            raise ValueError(f"{len(rows)} rows but {len(vectors)} vectors")
        self.rows = [{"id": r.get("id"), "text": r["text"], "label": r["label"], "reason": r.get("reason") or ""}
                     for r in rows]
        self.vectors = _normalise(vectors) if len(rows) else np.zeros((0, 1), dtype=np.float32)

    def nearest(self, vector: np.ndarray, k: int = 3) -> list[dict]:
        """Up to k rows, most similar first, each with its cosine similarity."""
        if not self.rows or k <= 0:
            return []
        sims = self.vectors @ _normalise(vector)
        top = np.argsort(-sims)[:k]
        return [{**self.rows[i], "similarity": round(float(sims[i]), 4)} for i in top]

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        with open(folder / ROWS_FILE, "w", encoding="utf-8") as fh:
            for row in self.rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        np.save(folder / VECTORS_FILE, self.vectors.astype(np.float16))

    @classmethod
    def load(cls, folder: Path) -> EvidenceIndex | None:
        """The index stored in a version folder, or None for a version built without one."""
        folder = Path(folder)
        if not (folder / ROWS_FILE).exists():
            return None
        rows = [json.loads(line) for line in (folder / ROWS_FILE).read_text(encoding="utf-8").splitlines() if line]
        return cls(rows, np.load(folder / VECTORS_FILE).astype(np.float32))
