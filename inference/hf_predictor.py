"""The same label scoring in transformers: the reference the llama.cpp predictor is checked against.

Used by parity tests and benchmarks, never by serving (it imports torch).
"""

from __future__ import annotations

import time

import numpy as np

from inference.predictor import Suggestion, make_suggestion, softmax
from inference.prompt import build_prompt, label_target
from inference.task import Task


class TransformersPredictor:
    """Scores each label by full-sequence log-probability with a transformers causal LM."""

    def __init__(self, model, tokenizer, task: Task, *, version: str = ""):
        self.model, self.tokenizer, self.task, self.version = model.eval(), tokenizer, task, version
        self._label_ids = [tokenizer(label_target(label), add_special_tokens=False)["input_ids"] for label in task.labels]

    def prompt_tokens(self, text: str) -> list[int]:
        prompt = build_prompt(self.task, text, self.tokenizer.chat_template)
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def logits(self, token_ids: list[int]) -> np.ndarray:
        """Next-token logits after `token_ids` (for parity checks against llama.cpp)."""
        import torch

        with torch.inference_mode():
            out = self.model(torch.tensor([token_ids]))
        return out.logits[0, -1].float().numpy()

    def probabilities(self, text: str) -> np.ndarray:
        import torch

        prompt = self.prompt_tokens(text)
        width = max(map(len, self._label_ids))
        # one batch: prompt + each label, right-padded; score only the label positions
        rows = [prompt + ids + [ids[-1]] * (width - len(ids)) for ids in self._label_ids]
        with torch.inference_mode():
            logprobs = torch.log_softmax(self.model(torch.tensor(rows)).logits.float(), dim=-1)
        scores = np.zeros(len(rows))
        for k, ids in enumerate(self._label_ids):
            for j, token in enumerate(ids):
                scores[k] += float(logprobs[k, len(prompt) + j - 1, token])
        return softmax(scores)

    def predict(self, text: str) -> Suggestion:
        started = time.perf_counter()
        return make_suggestion(self.task, self.probabilities(text), started=started, version=self.version)
