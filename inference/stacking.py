"""The encoder family's other voices, mixed with its head where the holdout says they help.

- a TF-IDF branch: logistic regression over word 1–2-grams and character 2–5-grams of the
  training rows (character n-grams carry product codes, error numbers and typos that a
  sentence encoder smooths away);
- a nearest-neighbour vote: the labels of the k training rows closest to the ticket in the
  evidence index, weighted by similarity.

The mix is p ∝ ((1 - knn) * head + knn * vote) ** h * tfidf ** w; the trainer picks knn, h and w
on the holdout's choosing rows (0, 1 and 0 = the head alone), so a voice that does not pay on a
team's data stays silent, and where the words carry more than the encoder (long, noisy helpdesk
e-mails with few examples) the TF-IDF branch can lead or speak alone (h = 0.5 or 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from inference.errors import ModelError

HEAD_CHARS, TAIL_CHARS = 16_000, 4_000  # what the TF-IDF branch reads of a very long ticket


@dataclass(frozen=True)
class Mix:
    tfidf: float = 0.0  # exponent of the TF-IDF branch's probabilities (0 = not used)
    knn: float = 0.0  # share of the nearest-neighbour vote (0 = not used)
    head: float = 1.0  # exponent of the head (and vote) term (0 = the TF-IDF branch alone)
    k: int = 10
    tau: float = 0.05  # softmax temperature over the neighbours' cosine similarities

    def combine(self, head: np.ndarray, tfidf: np.ndarray | None = None, knn: np.ndarray | None = None) -> np.ndarray:
        """Rows (or one row) of mixed probabilities, task label order."""
        p = np.asarray(head, dtype=np.float64)
        if self.knn and knn is not None:
            p = (1.0 - self.knn) * p + self.knn * np.asarray(knn, dtype=np.float64)
        if self.head != 1.0 and self.tfidf and tfidf is not None:
            p = np.clip(p, 1e-12, None) ** self.head
        if self.tfidf and tfidf is not None:
            p = p * np.clip(np.asarray(tfidf, dtype=np.float64), 1e-12, None) ** self.tfidf
        return p / np.clip(p.sum(axis=-1, keepdims=True), 1e-300, None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Mix:
        """The mix a manifest records (it also keeps the holdout losses it was chosen by)."""
        return cls(**{k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__})


def clip_text(text: str) -> str:
    """The head and the tail of a very long ticket: the branch's cost stays bounded."""
    return text if len(text) <= HEAD_CHARS + TAIL_CHARS else text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


def _vectorizers(word_vocab=None, char_vocab=None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=30_000, vocabulary=word_vocab)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, max_features=50_000,
                           vocabulary=char_vocab)
    return word, char


class TfidfBranch:
    """Word + character TF-IDF features and a linear layer over them, stored as plain arrays (no pickle)."""

    def __init__(self, word, char, coef: np.ndarray, intercept: np.ndarray):
        self.word, self.char = word, char
        self.coef, self.intercept = np.asarray(coef, dtype=np.float32), np.asarray(intercept, dtype=np.float32)

    @classmethod
    def fit(cls, texts: list[str], labels: list[int], n_labels: int, c: float = 10.0) -> TfidfBranch:
        from scipy.sparse import hstack
        from sklearn.linear_model import LogisticRegression

        texts = [clip_text(t) for t in texts]
        word, char = _vectorizers()
        try:
            features = hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
        except ValueError as exc:  # no n-gram seen twice (a handful of tiny rows)
            raise ModelError(f"cannot build TF-IDF features: {exc}") from None
        coef = np.zeros((n_labels, features.shape[1]), dtype=np.float32)
        intercept = np.full(n_labels, -10.0, dtype=np.float32)  # labels without rows start far behind
        classes = sorted(set(labels))
        if len(classes) > 1:
            fitted = LogisticRegression(C=c, max_iter=2000).fit(features, labels)
            rows = fitted.coef_ if len(classes) > 2 else np.vstack([-fitted.coef_, fitted.coef_])
            icept = fitted.intercept_ if len(classes) > 2 else np.array([-fitted.intercept_[0], fitted.intercept_[0]])
            coef[fitted.classes_], intercept[fitted.classes_] = rows, icept
        else:
            intercept[classes] = 0.0
        return cls(word, char, coef, intercept)

    def features(self, texts: list[str]):
        from scipy.sparse import hstack

        texts = [clip_text(t) for t in texts]
        return hstack([self.word.transform(texts), self.char.transform(texts)]).tocsr()

    def probabilities(self, texts: list[str]) -> np.ndarray:
        z = np.asarray(self.features(texts) @ self.coef.T) + self.intercept
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> Path:
        def vocab(vectorizer) -> np.ndarray:
            terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
            return np.array(terms, dtype=object).astype(str)

        np.savez_compressed(path, word_vocab=vocab(self.word), word_idf=self.word.idf_, char_vocab=vocab(self.char),
                            char_idf=self.char.idf_, coef=self.coef.astype(np.float16), intercept=self.intercept)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> TfidfBranch:
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ModelError(f"TF-IDF branch not found: {path}") from None
        word, char = _vectorizers([str(t) for t in data["word_vocab"]], [str(t) for t in data["char_vocab"]])
        for vectorizer, idf in ((word, data["word_idf"]), (char, data["char_idf"])):
            vectorizer.fit([""])  # a fixed vocabulary needs no documents; the stored weights replace the fitted ones
            vectorizer.idf_ = idf
        return cls(word, char, data["coef"].astype(np.float32), data["intercept"])


def knn_vote(vectors: np.ndarray, row_labels: np.ndarray, query: np.ndarray, n_labels: int, mix: Mix) -> np.ndarray:
    """Rows of label probabilities from each query's k nearest training rows (unit vectors in, cosine)."""
    query = np.atleast_2d(query)
    out = np.zeros((len(query), n_labels))
    if len(vectors) == 0:
        return out + 1.0 / n_labels
    sims = query @ vectors.T
    k = min(mix.k, len(vectors))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    for i, idx in enumerate(top):
        w = np.exp((sims[i, idx] - sims[i, idx].max()) / mix.tau)
        np.add.at(out[i], row_labels[idx], w / w.sum())
    return out


# (head exponent, TF-IDF exponent), simplest first; only their ratio matters once a temperature is fitted
HEAD_TFIDF = ((1.0, 0.0), (1.0, 0.25), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0), (0.0, 1.0))
KNN_SHARES = (0.0, 0.2, 0.4)


def choose_mix(voices: dict[str, np.ndarray], gold: np.ndarray, k: int = Mix.k, tau: float = Mix.tau) -> tuple[Mix, float]:
    """The mix with the lowest holdout log-loss after temperature scaling, and that loss; the
    head alone unless a voice lowers it (simplest first, so a tie keeps a voice silent)."""
    from inference.calibration import apply_temperature, fit_temperature, nll

    gold = np.asarray(gold)
    best, best_loss = Mix(k=k, tau=tau), np.inf
    for h, w in HEAD_TFIDF if "tfidf" in voices else HEAD_TFIDF[:1]:
        for share in KNN_SHARES if "knn" in voices and h else (0.0,):  # with h = 0 the vote is silent too
            mix = Mix(tfidf=w, knn=share, head=h, k=k, tau=tau)
            probs = mix.combine(**voices)
            loss = nll(apply_temperature(probs, fit_temperature(probs, gold)), gold)
            if loss < best_loss - 1e-4:
                best, best_loss = mix, loss
    return best, float(best_loss)
