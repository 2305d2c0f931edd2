"""Load the shared public evaluation datasets and draw few-shot samples from them."""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from pathlib import Path

# The datasets live beside the repository, not in it (see shared/datasets/README.md).
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASETS_DIR = Path(
    os.environ.get("TUESDAY_DATASETS_DIR", _PROJECT_ROOT.parent / "shared" / "datasets")
)


def load_split(name: str, split: str) -> list[dict]:
    """Read `<DATASETS_DIR>/<name>/<split>.jsonl` as a list of row dicts."""
    path = Path(DATASETS_DIR) / name / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset split not found: {path} "
            "(set TUESDAY_DATASETS_DIR to the folder holding the datasets)"
        )
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sample_per_label(rows: list[dict], k: int, seed: int) -> list[dict]:
    """Return up to k rows per label, the same rows in the same order for a given seed."""
    rng = random.Random(seed)
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    picked: list[dict] = []
    # Sorting labels fixes the order the rng is consumed in, so the draw
    # does not depend on the order labels first appear in the file.
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        picked.extend(group[:k])
    # Otherwise rows would come back grouped by label, which some learners mind.
    rng.shuffle(picked)
    return picked
