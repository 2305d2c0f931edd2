"""Serve a model version with llama.cpp: score every label, then write a short reason.

Each label is scored as the sum of its tokens' log-probabilities after the
prompt (so labels sharing leading tokens are told apart), and confidence is
the softmax of those scores over the task's labels only. All labels are
scored in ONE decode: the prompt sits in sequence 0 of a unified KV cache,
each label gets its own sequence that shares the prompt cells, and a token
prefix shared by several labels is decoded once for all of them. Only the
positions whose logits are needed are computed (no logits_all). The prompt's
longest common prefix with the previous ticket (the fixed instruction) stays
cached, so a ticket costs only its own tokens.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import _internals, _logger

from inference.errors import ModelError
from inference.predictor import Suggestion, make_suggestion, softmax
from inference.priors import VersionPrior
from inference.prompt import REASON_PREFIX, build_prompt, end_of_turn, label_target
from inference.task import Task


class LlamaPredictor:
    """One GGUF, one llama.cpp context; not thread-safe (one per process, jobs queued)."""

    def __init__(self, gguf_path: str | Path, task: Task, *, version: str = "", reasons: bool = True,
                 n_threads: int | None = None, n_ctx: int = 2048, max_reason_tokens: int = 40,
                 single_pass_nodes: int = 64, prune_margin: float = 12.0, temperature: float = 1.0,
                 evidence=None, reuse_prefix: bool = True, prior: VersionPrior | None = None):
        self.task, self.version, self.reasons = task, version, reasons
        self.temperature, self.evidence = temperature, evidence  # evidence: an encoder_predictor.Evidence
        self.prior = prior  # the version's label prior (inference.priors), applied to every distribution
        self.reuse_prefix = reuse_prefix  # off only to measure what the cached instruction prefix saves
        # Small label sets are scored exactly in one decode; big ones depth by depth with pruning.
        self.single_pass_nodes, self.prune_margin = single_pass_nodes, prune_margin
        self.max_reason_tokens = max_reason_tokens
        self.path = Path(gguf_path)
        if not self.path.exists():
            raise ModelError(f"model file not found: {self.path}")
        _logger.set_verbose(False)  # llama.cpp logs every context build to stderr otherwise
        if len(task.labels) + 1 > llama_cpp.llama_max_parallel_sequences():
            raise ModelError(f"too many labels ({len(task.labels)}) to score in one pass")
        try:
            self._model = _internals.LlamaModel(
                path_model=str(self.path), params=llama_cpp.llama_model_default_params(), verbose=False)
        except ValueError as exc:
            raise ModelError(f"llama.cpp cannot load {self.path}: {exc}") from None
        threads = n_threads or min(4, os.cpu_count() or 1)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = n_ctx
        params.n_ubatch = min(n_ctx, 512)
        params.n_seq_max = len(task.labels) + 1
        params.kv_unified = True  # label sequences share the prompt's cells
        params.n_threads = params.n_threads_batch = threads
        self._ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        self._batch = llama_cpp.llama_batch_init(n_ctx, 0, params.n_seq_max)
        self._n_ctx = n_ctx
        self._n_vocab = self._model.n_vocab()
        self.chat_template = self._model.metadata().get("tokenizer.chat_template")
        eot = end_of_turn(self.chat_template)
        self._stop = {self._model.token_eos(), *(self._tokenize(eot, special=True)[:1] if eot else [])}
        self._newline = set(self._tokenize("\n"))
        self._label_tokens = [self._tokenize(label_target(label)) for label in task.labels]
        self._cached: list[int] = []  # tokens held in sequence 0

    def close(self) -> None:
        if self.evidence is not None:
            self.evidence.close()
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()
        self._model.close()

    def _tokenize(self, text: str, special: bool = False) -> list[int]:
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def prompt_text(self, text: str) -> str:
        return build_prompt(self.task, text, self.chat_template)

    def prompt_tokens(self, text: str) -> list[int]:
        """Token ids of the prompt exactly as served (the parity tests feed these to transformers)."""
        prompt = self.prompt_text(text)
        return list(self._model.tokenize(prompt.encode("utf-8"), add_bos=self._model.add_bos_token(), special=True))

    # -- decoding -----------------------------------------------------------------------------
    def _decode(self, entries: list[tuple[int, int, tuple[int, ...], bool]]) -> None:
        """Decode (token, pos, seq_ids, want_logits) entries as one batch."""
        b = self._batch
        b.n_tokens = len(entries)
        for i, (token, pos, seqs, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, len(seqs), logits
            for j, seq in enumerate(seqs):
                b.seq_id[i][j] = seq
        rc = llama_cpp.llama_decode(self._ctx.ctx, b)
        if rc != 0:
            raise ModelError(f"llama_decode failed with code {rc}")

    def _logprobs(self, batch_index: int) -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(self._ctx.ctx, batch_index)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64)
        logits -= logits.max()
        return logits - math.log(np.exp(logits).sum())

    def _feed_prompt(self, tokens: list[int]) -> np.ndarray:
        """Bring sequence 0 to `tokens`, reusing the cached prefix; return next-token logprobs."""
        if len(tokens) >= self._n_ctx - 64:
            raise ModelError(f"prompt of {len(tokens)} tokens does not fit the context of {self._n_ctx}")
        keep = 0
        for a, b in zip(self._cached if self.reuse_prefix else [], tokens):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # the last token is always decoded again for its logits
        self._ctx.kv_cache_seq_rm(0, keep, -1)
        rest = tokens[keep:]
        self._decode([(t, keep + i, (0,), i == len(rest) - 1) for i, t in enumerate(rest)])
        self._cached = list(tokens)
        return self._logprobs(len(rest) - 1)

    def _score_labels(self, prompt_logprobs: np.ndarray, n_prompt: int) -> np.ndarray:
        """Sum of log-probabilities of each label's tokens (task order)."""
        scores = np.array([prompt_logprobs[tokens[0]] for tokens in self._label_tokens])
        alive = [k for k, tokens in enumerate(self._label_tokens) if len(tokens) > 1]
        n_nodes = len({tuple(t[:d]) for t in self._label_tokens for d in range(1, len(t))})
        for seq in range(1, len(self._label_tokens) + 1):
            self._ctx.kv_cache_seq_rm(seq, -1, -1)
            self._ctx.kv_cache_seq_cp(0, seq, -1, -1)
        if n_nodes <= self.single_pass_nodes:
            self._extend(scores, alive, n_prompt, range(1, max(map(len, self._label_tokens))))
        else:
            depth = 1
            while alive:
                # A label's score only falls as tokens are added, so one far behind the best
                # prefix is dropped: it gets no more decode work and no probability (its partial
                # score would otherwise overstate it and could beat fully scored labels).
                best = max(scores[k] for k in alive)
                dropped = [k for k in alive if scores[k] < best - self.prune_margin]
                scores[dropped] = -np.inf
                alive = [k for k in alive if k not in set(dropped)]
                self._extend(scores, alive, n_prompt, [depth])
                depth += 1
                alive = [k for k in alive if len(self._label_tokens[k]) > depth]
        for seq in range(1, len(self._label_tokens) + 1):
            self._ctx.kv_cache_seq_rm(seq, -1, -1)
        return scores

    def _extend(self, scores: np.ndarray, labels: list[int], n_prompt: int, depths) -> None:
        """Decode the label prefixes of the given depths in one batch and add the next token's logprob."""
        nodes: dict[tuple[int, ...], list[int]] = {}  # token prefix -> label sequences through it
        for k in labels:
            tokens = self._label_tokens[k]
            for depth in depths:
                if depth < len(tokens):
                    nodes.setdefault(tuple(tokens[:depth]), []).append(k + 1)
        if not nodes:
            return
        order = sorted(nodes, key=len)  # parents before children
        self._decode([(prefix[-1], n_prompt + len(prefix) - 1, tuple(nodes[prefix]), True) for prefix in order])
        for i, prefix in enumerate(order):
            logprobs = self._logprobs(i)
            for seq in nodes[prefix]:
                scores[seq - 1] += logprobs[self._label_tokens[seq - 1][len(prefix)]]

    def _generate_reason(self, label_index: int) -> str:
        """Greedy continuation after '<label>\\nReason:' in sequence 0, up to a newline or end of turn."""
        forced = self._label_tokens[label_index] + self._tokenize(REASON_PREFIX)
        start = len(self._cached)
        self._decode([(t, start + i, (0,), i == len(forced) - 1) for i, t in enumerate(forced)])
        self._cached += forced
        logprobs = self._logprobs(len(forced) - 1)
        out: list[int] = []
        for _ in range(self.max_reason_tokens):
            token = int(np.argmax(logprobs))
            if token in self._stop or token in self._newline:
                break
            out.append(token)
            self._decode([(token, len(self._cached), (0,), True)])
            self._cached.append(token)
            logprobs = self._logprobs(0)
        return self._model.detokenize(out).decode("utf-8", errors="replace").strip()

    def logits(self, token_ids: list[int]) -> np.ndarray:
        """Next-token logits after exactly these token ids (for parity checks)."""
        self._ctx.kv_cache_seq_rm(0, 0, -1)
        self._cached = []
        self._decode([(t, i, (0,), i == len(token_ids) - 1) for i, t in enumerate(token_ids)])
        self._cached = list(token_ids)
        ptr = llama_cpp.llama_get_logits_ith(self._ctx.ctx, len(token_ids) - 1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()

    def probabilities(self, text: str) -> np.ndarray:
        """Probability of each task label (task order), renormalised over the labels, under the version's prior."""
        tokens = self.prompt_tokens(text)
        probs = softmax(self._score_labels(self._feed_prompt(tokens), len(tokens)))
        return probs if self.prior is None else self.prior.apply(probs, self.task.label_names)

    def predict(self, text: str) -> Suggestion:
        started = time.perf_counter()
        probs = self.probabilities(text)
        reason = self._generate_reason(int(np.argmax(probs))) if self.reasons else ""
        suggestion = make_suggestion(self.task, probs, started=started, reason=reason, version=self.version,
                                     temperature=self.temperature)
        if self.evidence is not None:
            suggestion.evidence = self.evidence.for_text(text)
        return suggestion
