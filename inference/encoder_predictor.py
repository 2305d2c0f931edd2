"""Serve the encoder family with llama.cpp: mean-pooled embeddings of a BERT GGUF, head in numpy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import _internals, _logger

from inference.encoder_head import EncoderHead, unit
from inference.errors import ModelError
from inference.evidence import EvidenceIndex
from inference.predictor import Suggestion, make_suggestion
from inference.priors import VersionPrior
from inference.stacking import Mix, TfidfBranch, knn_vote
from inference.task import Task


class LlamaEmbedder:
    """Sentence embeddings from a BERT GGUF (mean pooling), one llama.cpp context; not thread-safe."""

    def __init__(self, gguf_path: str | Path, *, max_length: int = 128, max_chunks: int = 1,
                 n_threads: int | None = None, batch_tokens: int = 2048, max_sequences: int = 16):
        self.path = Path(gguf_path)
        if not self.path.exists():
            raise ModelError(f"encoder file not found: {self.path}")
        _logger.set_verbose(False)
        try:
            self._model = _internals.LlamaModel(
                path_model=str(self.path), params=llama_cpp.llama_model_default_params(), verbose=False)
        except ValueError as exc:
            raise ModelError(f"llama.cpp cannot load {self.path}: {exc}") from None
        self.max_length = min(max_length, batch_tokens)
        self.max_chunks = max(1, max_chunks)
        params = llama_cpp.llama_context_default_params()
        # an encoder sees all of a batch at once: the whole batch must fit one micro-batch
        params.n_ctx = params.n_batch = params.n_ubatch = batch_tokens
        params.n_seq_max = max_sequences
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        params.n_threads = params.n_threads_batch = n_threads or min(4, os.cpu_count() or 1)
        self._ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=batch_tokens, embd=0, n_seq_max=max_sequences, verbose=False)
        self._batch_tokens, self._max_sequences = batch_tokens, max_sequences
        self.dim = self._model.n_embd()

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()
        self._model.close()

    def chunks(self, text: str) -> list[list[int]]:
        """The windows a text is read as: [CLS] piece [SEP] of at most max_length tokens each, the
        first max_chunks - 1 and the last (as the transformers tokenizer's overflow windows in training)."""
        ids = list(self._model.tokenize(text.encode("utf-8"), add_bos=True, special=False))
        first, body, last = ids[:1], ids[1:-1], ids[-1:]
        width = max(1, self.max_length - 2)
        pieces = [body[i:i + width] for i in range(0, len(body), width)] or [[]]
        if len(pieces) > self.max_chunks:  # max_chunks 1: the first window only (the ticket is cut)
            pieces = pieces[:1] if self.max_chunks == 1 else pieces[:self.max_chunks - 1] + pieces[-1:]
        return [first + piece + last for piece in pieces]

    def tokens(self, text: str) -> list[int]:
        """[CLS] text [SEP], cut to max_length the way the transformers tokenizer cuts it (the first window)."""
        return self.chunks(text)[0]

    def _run(self, sequences: list[list[int]], out: list[np.ndarray]) -> None:
        self._ctx.kv_cache_clear()
        self._batch.reset()
        for seq, ids in enumerate(sequences):
            self._batch.add_sequence(ids, seq, True)
        self._ctx.decode(self._batch)
        for seq in range(len(sequences)):
            ptr = llama_cpp.llama_get_embeddings_seq(self._ctx.ctx, seq)
            out.append(np.ctypeslib.as_array(ptr, shape=(self.dim,)).copy())

    def embed(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled embeddings (not normalised), one row per text: the token-weighted mean of its windows' means."""
        out: list[np.ndarray] = []
        pending: list[list[int]] = []
        owner, weight = [], []
        for i, text in enumerate(texts):
            for ids in self.chunks(text):
                if pending and (sum(map(len, pending)) + len(ids) > self._batch_tokens
                                or len(pending) == self._max_sequences):
                    self._run(pending, out)
                    pending = []
                pending.append(ids)
                owner.append(i)
                weight.append(len(ids))
        if pending:
            self._run(pending, out)
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors, weight = np.stack(out), np.asarray(weight, dtype=np.float32)
        pooled = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(pooled, np.asarray(owner), vectors * weight[:, None])
        return pooled / np.bincount(owner, weights=weight, minlength=len(texts))[:, None].astype(np.float32)


class Evidence:
    """Nearest labelled training examples of a ticket, by the embeddings of one encoder."""

    def __init__(self, embedder: LlamaEmbedder, index: EvidenceIndex, k: int = 3):
        self.embedder, self.index, self.k = embedder, index, k

    def close(self) -> None:
        self.embedder.close()

    def for_vector(self, vector: np.ndarray) -> list[dict]:
        return self.index.nearest(vector, self.k)

    def for_text(self, text: str) -> list[dict]:
        return self.for_vector(self.embedder.embed([text])[0])


class EncoderPredictor:
    """Label probabilities from the head over the ticket's embedding, mixed (inference.stacking) with
    a TF-IDF branch and a nearest-neighbour vote where the version's holdout chose to, then moved to the
    version's label prior (inference.priors.VersionPrior) where it chose one; evidence from the same embedding."""

    def __init__(self, gguf_path: str | Path, head: EncoderHead, task: Task, *, version: str = "",
                 temperature: float = 1.0, index: EvidenceIndex | None = None, evidence_k: int = 3,
                 n_threads: int | None = None, tfidf: TfidfBranch | None = None, mix: Mix | None = None,
                 show_evidence: bool = True, embedder=None, prior: VersionPrior | None = None):
        """embedder: an open one to use (a pooled one, inference.embedders) instead of opening gguf_path."""
        if head.labels != task.label_names:
            raise ModelError("the classification head was trained for a different label set than the task's")
        self.task, self.head, self.version, self.temperature = task, head, version, temperature
        self.tfidf, self.mix, self.prior = tfidf, mix or Mix(), prior
        self.embedder = embedder or LlamaEmbedder(gguf_path, max_length=head.max_length, max_chunks=head.max_chunks,
                                                  n_threads=n_threads)
        self.index = index
        if index is not None:
            position = {label: i for i, label in enumerate(task.label_names)}
            unknown = sorted({r["label"] for r in index.rows} - set(position))
            if unknown:  # the vote must not count a row for another label
                raise ModelError(f"the evidence index holds labels the task lacks: {', '.join(unknown)}")
            self._row_labels = np.array([position[r["label"]] for r in index.rows], dtype=np.int64)
        self.evidence = Evidence(self.embedder, index, evidence_k) if index is not None and show_evidence else None

    def close(self) -> None:
        self.embedder.close()

    def voices(self, text: str, every: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The ticket's unit embedding and the probabilities of each voice the mix uses (every=True:
        each voice the version has, as the trainer needs to choose the mix)."""
        vector = unit(self.embedder.embed([text])[0])
        out = {"head": self.head.probabilities(vector[None, :])[0]}
        if self.tfidf is not None and (every or self.mix.tfidf):
            out["tfidf"] = self.tfidf.probabilities([text])[0]
        if self.index is not None and self.index.rows and (every or self.mix.knn):
            out["knn"] = knn_vote(self.index.vectors, self._row_labels, vector, len(self.task.labels), self.mix)[0]
        return vector, out

    def adjusted(self, probs: np.ndarray) -> np.ndarray:
        """Mixed probabilities (rows or one row) under the version's label prior, as served."""
        return probs if self.prior is None else self.prior.apply(probs, self.task.label_names)

    def probabilities(self, text: str) -> np.ndarray:
        return self.adjusted(self.mix.combine(**self.voices(text)[1]))

    def predict(self, text: str) -> Suggestion:
        started = time.perf_counter()
        vector, voices = self.voices(text)
        probs = self.adjusted(self.mix.combine(**voices))
        suggestion = make_suggestion(self.task, probs, started=started, version=self.version,
                                     temperature=self.temperature)
        if self.evidence is not None:
            suggestion.evidence = self.evidence.for_vector(vector)
        return suggestion
