"""One encoder pass per ticket, however many fields read it: a process's embedders pooled by file.

Fields trained on the routing task's encoder serve a copy of the same GGUF (same sha256). The
pool opens each distinct file (with its window settings) once, lends it to every predictor that
serves it, and remembers the last few texts it embedded, so the second and third field of a ticket
reuse the first one's embedding (also while a field's model loads between them). A lent embedder is closed when its last borrower closes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from inference.encoder_predictor import LlamaEmbedder

MEMO = 4  # texts remembered per open encoder: a ticket's fields, a load check between them


class _Shared:
    """An open embedder, how many predictors hold it, and its last answers."""

    def __init__(self, embedder: LlamaEmbedder):
        self.embedder, self.users = embedder, 0
        self.lock = threading.Lock()  # llama.cpp's context is not thread-safe; neither is the memo
        self.memo: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self.passes = 0


class PooledEmbedder:
    """A borrower's view of a shared embedder: embed() as LlamaEmbedder's, close() gives it back."""

    def __init__(self, pool: EmbedderPool, key: tuple, shared: _Shared):
        self._pool, self._key, self._shared = pool, key, shared
        self.path, self.dim = shared.embedder.path, shared.embedder.dim
        self.max_length, self.max_chunks = shared.embedder.max_length, shared.embedder.max_chunks

    def chunks(self, text: str) -> list[list[int]]:
        with self._shared.lock:
            return self._shared.embedder.chunks(text)

    def tokens(self, text: str) -> list[int]:
        return self.chunks(text)[0]

    def embed(self, texts: list[str]) -> np.ndarray:
        key = tuple(texts)
        shared = self._shared
        with shared.lock:
            if key in shared.memo:
                shared.memo.move_to_end(key)
            else:
                shared.memo[key] = shared.embedder.embed(list(texts))
                shared.passes += 1
                if len(shared.memo) > MEMO:
                    shared.memo.popitem(last=False)
            return shared.memo[key].copy()

    def close(self) -> None:
        if self._shared is not None:
            self._pool._release(self._key)
            self._shared = None


class EmbedderPool:
    """This process's open encoder files, keyed by sha256 and window settings."""

    def __init__(self):
        self._open: dict[tuple, _Shared] = {}
        self._lock = threading.Lock()

    def open(self, path: str | Path, *, sha256: str, max_length: int, max_chunks: int,
             n_threads: int | None = None) -> PooledEmbedder:
        key = (sha256, max_length, max_chunks)
        with self._lock:
            shared = self._open.get(key)
            if shared is None:
                shared = self._open[key] = _Shared(LlamaEmbedder(path, max_length=max_length, max_chunks=max_chunks,
                                                                 n_threads=n_threads))
            shared.users += 1
        return PooledEmbedder(self, key, shared)

    def _release(self, key: tuple) -> None:
        with self._lock:
            shared = self._open[key]
            shared.users -= 1
            if shared.users == 0:
                del self._open[key]
                shared.embedder.close()

    def __len__(self) -> int:
        return len(self._open)

    def passes(self) -> int:
        """Encoder passes run by the open embedders (one per distinct text and file)."""
        return sum(s.passes for s in self._open.values())
