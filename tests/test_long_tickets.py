"""A ticket longer than the encoder's window is read to its end: chunked and pooled, in training and serving."""

from __future__ import annotations

import numpy as np
import pytest

from inference.encoder_head import EncoderHead, unit
from inference.encoder_predictor import EncoderPredictor
from inference.task import Task

pytestmark = pytest.mark.slow

EXAMPLES = {
    "card_lost": ["My card was stolen, please block it.", "I lost my debit card on the train.",
                  "Someone took my wallet with my bank card in it."],
    "refund": ["I was charged twice, I want a refund.", "Please give me my money back for the duplicate payment.",
               "Refund the fee you took from my account."],
    "address_change": ["I moved, please update my home address.", "How do I change the postal address on file?",
                       "My new address is on the form, please change it."],
}
# Nothing here says which label the ticket has: pleasantries and account history, well past one window.
PREAMBLE = ("Hello team, I hope this message finds you well and that your week is going smoothly. "
            "I have been a customer for many years and I have always appreciated the friendly people at your "
            "branch and the clear letters you send every month. ") * 4
TAIL = "Anyway, the reason I am writing: my card was stolen last night and I need it blocked right away."


@pytest.fixture(scope="module")
def minilm_gguf(tmp_path_factory):
    from inference.base_models import minilm_dir
    from trainer.encoder import load_encoder
    from trainer.export import write_encoder_gguf

    model, tokenizer = load_encoder(minilm_dir())
    return model, tokenizer, write_encoder_gguf(model, tokenizer, tmp_path_factory.mktemp("minilm") / "minilm-f16.gguf")


def head_for(model, tokenizer, task: Task, max_chunks: int) -> EncoderHead:
    """A centroid head over the examples' embeddings (what training starts from)."""
    from trainer.encoder import CENTROID_SCALE, embed

    weight = np.stack([unit(embed(model, tokenizer, EXAMPLES[label], 128).mean(axis=0)) for label in task.labels])
    return EncoderHead(labels=task.label_names, weight=CENTROID_SCALE * weight, bias=np.zeros(len(task.labels)),
                       scale=1.0, max_length=128, max_chunks=max_chunks)


def test_a_ticket_is_classified_from_text_beyond_the_cut(minilm_gguf):
    model, tokenizer, gguf = minilm_gguf
    task = Task(name="bank", labels={label: "" for label in EXAMPLES}, handoff_label=None)
    ticket = PREAMBLE + TAIL
    assert len(tokenizer(PREAMBLE)["input_ids"]) > 128  # the tail lies wholly beyond the first window

    got = {}
    for chunks in (1, 8):
        predictor = EncoderPredictor(gguf, head_for(model, tokenizer, task, chunks), task)
        try:
            got[chunks] = predictor.predict(ticket)
        finally:
            predictor.close()
    cut, whole = got[1], got[8]
    assert whole.label == "card_lost", whole.probabilities
    assert cut.label != "card_lost", cut.probabilities  # cut after one window, the tail is never read
    assert whole.probabilities["card_lost"] > cut.probabilities["card_lost"] + 0.2
