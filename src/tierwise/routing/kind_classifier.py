"""A small fitted kind classifier: multinomial logistic regression on cheap features of the text.

Features: word TF-IDF (the vocabulary of the labelled examples), the 64-d static embedding (standardized)
and the kind verb cues. All of it is local CPU, about 0.1-0.2 ms for a short request, against 10-30 ms for
an e5 embedding; the runtime asks e5 only when the classifier's probability is below ``THRESHOLD``.
Fitted in numpy at first use (a few hundred texts, well under a second) and cached on disk, so
``import`` stays light and later processes load the fit instead of repeating it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierwise.core import TaskKind

EmbedFn = Callable[[Sequence[str]], np.ndarray]

# All three chosen by 5-fold cross-validation on the train split; ``python -m bench.kind_inference``
# recomputes them and says whether they still match. TEMPERATURE scales the logits so that the
# out-of-fold probabilities are calibrated (the ridge penalty alone leaves them underconfident);
# THRESHOLD is the probability below which e5 decides: the lowest that maximizes the out-of-fold
# accuracy of "classifier when p >= THRESHOLD, else e5".
L2 = 1.0
TEMPERATURE = 3.87
THRESHOLD = 0.28
_DENSE_SCALE = 0.1  # the dense features' weight against the unit-norm TF-IDF row
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Prediction:
    kind: TaskKind
    probability: float
    margin: float  # over the second most probable kind


class KindClassifier:
    """Fitted weights over TF-IDF + static embedding + verb-cue features; ``predict`` is pure numpy."""

    def __init__(
        self,
        kinds: list[TaskKind],
        vocab: dict[str, int],
        idf: np.ndarray,
        mean: np.ndarray,
        scale: np.ndarray,
        weights: np.ndarray,
        embed: EmbedFn,
        cues: Callable[[str], np.ndarray],
        temperature: float = TEMPERATURE,
    ) -> None:
        self.kinds = kinds
        self._vocab = vocab
        self._idf = idf
        self._mean = mean
        self._scale = scale
        self._w = weights
        self._embed = embed
        self._cues = cues
        self.temperature = temperature

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[TaskKind],
        embed: EmbedFn,
        cues: Callable[[str], np.ndarray],
        *,
        l2: float = L2,
        temperature: float = TEMPERATURE,
    ) -> KindClassifier:
        kinds = sorted(set(labels), key=list(TaskKind).index)
        y = np.array([kinds.index(k) for k in labels])
        docs = [_words(t) for t in texts]
        df = Counter(w for d in docs for w in set(d))
        vocab = {w: i for i, w in enumerate(sorted(df))}
        n = len(texts)
        idf = np.array([math.log((1 + n) / (1 + df[w])) + 1 for w in vocab], dtype=np.float32)
        dense = _dense(texts, embed, cues)
        mean, scale = dense.mean(0), dense.std(0) + 1e-6
        probe = cls(kinds, vocab, idf, mean, scale, np.zeros((0, 0)), embed, cues)
        x = probe._features(texts, dense)
        weights = _fit_softmax(x, y, len(kinds), l2)
        return cls(kinds, vocab, idf, mean, scale, weights, embed, cues, temperature)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated scores, one column per kind of ``self.kinds``: ``_features(texts) @ weights``
        without the vocabulary-wide feature row (a request has a handful of words; the row has 1,200
        columns, and allocating it was most of a decision's cost)."""
        vocab_size = len(self._vocab)
        scaled = (_dense(texts, self._embed, self._cues) - self._mean) / self._scale * _DENSE_SCALE
        out = scaled @ self._w[vocab_size:-1] + self._w[-1]
        for row, text in enumerate(texts):
            cols, vals = self._tfidf(text)
            if cols:
                v = np.asarray(vals, dtype=np.float32)
                out[row] += (v / np.linalg.norm(v)) @ self._w[cols]
        return out

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts) * self.temperature)

    def predict(self, text: str) -> Prediction:
        return self.predict_many([text])[0]

    def predict_many(self, texts: Sequence[str]) -> list[Prediction]:
        """``predict`` for many texts at once: one embedding call and one matrix product for all."""
        out = []
        for p in self.proba(texts):
            top2 = np.argsort(-p)[:2]
            out.append(
                Prediction(self.kinds[int(top2[0])], float(p[top2[0]]), float(p[top2[0]] - p[top2[1]]))
            )
        return out

    def _tfidf(self, text: str) -> tuple[list[int], list[float]]:
        """The text's TF-IDF entries (columns in the vocabulary, sublinear tf), not yet normalized."""
        cols: list[int] = []
        vals: list[float] = []
        for word, count in Counter(_words(text)).items():
            col = self._vocab.get(word)
            if col is not None:
                cols.append(col)
                vals.append((1 + math.log(count)) * float(self._idf[col]))
        return cols, vals

    def _features(self, texts: Sequence[str], dense: np.ndarray) -> np.ndarray:
        sparse = np.zeros((len(texts), len(self._vocab)), dtype=np.float32)
        for row, text in enumerate(texts):
            cols, vals = self._tfidf(text)
            sparse[row, cols] = vals
        norms = np.linalg.norm(sparse, axis=1, keepdims=True)
        sparse /= np.where(norms == 0, 1, norms)
        scaled = (dense - self._mean) / self._scale * _DENSE_SCALE
        return np.hstack([sparse, scaled, np.ones((len(texts), 1), dtype=np.float32)])


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _dense(texts: Sequence[str], embed: EmbedFn, cues: Callable[[str], np.ndarray]) -> np.ndarray:
    vecs = np.asarray(embed(list(texts)), dtype=np.float32).reshape(len(texts), -1)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = vecs / np.where(norms == 0, 1, norms)
    return np.hstack([vecs, np.stack([cues(t) for t in texts]).astype(np.float32)])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def _fit_softmax(x: np.ndarray, y: np.ndarray, k: int, l2: float, iters: int = 150) -> np.ndarray:
    """Multinomial logistic regression by Nesterov-accelerated gradient descent (the loss is convex)."""
    n, d = x.shape
    onehot = np.eye(k, dtype=np.float32)[y]
    penalty = np.full((d, 1), l2 / n, dtype=np.float32)
    penalty[-1] = 0  # the bias column is not shrunk
    # Step 1/L for the averaged cross-entropy (L <= ||x||^2 / 2n) plus the ridge term; ||x||^2 by a
    # few power iterations (an SVD costs more than the whole fit).
    v = np.ones(d, dtype=np.float32)
    for _ in range(20):
        v = x.T @ (x @ v)
        v /= np.linalg.norm(v)
    step = 1.0 / (1.05 * float(np.linalg.norm(x @ v)) ** 2 / (2 * n) + l2 / n)
    w = np.zeros((d, k), dtype=np.float32)
    prev = w
    for i in range(iters):
        look = w + (i / (i + 3)) * (w - prev)
        p = softmax(x @ look)
        grad = x.T @ (p - onehot) / n + penalty * look
        prev, w = w, look - step * grad
    return w


def out_of_fold_logits(
    texts: Sequence[str],
    labels: Sequence[TaskKind],
    embed: EmbedFn,
    cues: Callable[[str], np.ndarray],
    *,
    folds: int = 5,
    l2: float = L2,
) -> tuple[list[TaskKind], np.ndarray]:
    """Logits of each text from a classifier fitted without its fold (folds stratified by kind)."""
    kinds = sorted(set(labels), key=list(TaskKind).index)
    seen: Counter[TaskKind] = Counter()
    fold_of = []
    for k in labels:
        fold_of.append(seen[k] % folds)
        seen[k] += 1
    out = np.zeros((len(texts), len(kinds)), dtype=np.float32)
    for f in range(folds):
        fit_idx = [i for i, g in enumerate(fold_of) if g != f]
        held = [i for i, g in enumerate(fold_of) if g == f]
        clf = KindClassifier.fit(
            [texts[i] for i in fit_idx], [labels[i] for i in fit_idx], embed, cues, l2=l2
        )
        assert clf.kinds == kinds, "every fold must see every kind"
        out[held] = clf.logits([texts[i] for i in held])
    return kinds, out


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The logit scale that minimizes the negative log-likelihood of held-out labels."""
    grid = np.geomspace(0.5, 50, 100)
    nll = [-np.log(softmax(logits * t)[np.arange(len(y)), y] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def choose_threshold(prob: np.ndarray, static_ok: np.ndarray, e5_ok: np.ndarray) -> float:
    """The lowest probability threshold that maximizes the accuracy of static-when-confident-else-e5."""
    grid = np.round(np.linspace(0, 1, 101), 2)
    acc = [float(np.where(prob >= t, static_ok, e5_ok).mean()) for t in grid]
    return float(grid[int(np.argmax(acc))])  # argmax takes the first, i.e. lowest, of equal maxima


_DEFAULT: KindClassifier | None = None
_LOCK = threading.Lock()


def default_classifier() -> KindClassifier:
    """The process-wide classifier, fitted once on the train split of the labelled examples.

    The fit (~0.7 s of CPU, paid by every CLI command and batch before its first routed call) is cached
    on disk, keyed by the examples, the hyperparameters and the source of the features, so any change to
    what would be fitted refits. A cache that cannot be read or written is only a refit."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            from tierwise.routing.features import get_embedder
            from tierwise.routing.kind_examples import split
            from tierwise.routing.kinds import verb_cues

            train, _ = split()
            static = get_embedder("static")
            texts, labels = [t for t, _ in train], [k for _, k in train]
            path = _cache_path(texts, labels)
            _DEFAULT = _load(path, static.embed, verb_cues) if path is not None else None
            if _DEFAULT is None:
                _DEFAULT = KindClassifier.fit(texts, labels, static.embed, verb_cues)
                if path is not None:
                    _save(_DEFAULT, path)
        return _DEFAULT


def _cache_path(texts: Sequence[str], labels: Sequence[TaskKind]) -> Path | None:
    """Where this fit is cached; None when the features' source cannot be read (then no cache)."""
    import hashlib
    import importlib.metadata

    from tierwise.routing import kinds
    from tierwise.routing.features import cache_dir

    h = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        h.update(f"{label.value}\t{text}\n".encode())
    h.update(f"{L2} {TEMPERATURE} {_DENSE_SCALE} {_WORD.pattern}".encode())
    try:
        for module in (__file__, kinds.__file__):  # the features' code: a change to either refits
            h.update(Path(module).read_bytes())
    except (OSError, TypeError):  # no source on disk (a frozen or zipped install): fit every time
        return None
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        h.update(importlib.metadata.version("tokenlearn-static-model").encode())
    return cache_dir() / "kinds" / f"classifier-{h.hexdigest()[:24]}.npz"


def _save(clf: KindClassifier, path: Path) -> None:
    words = sorted(clf._vocab, key=clf._vocab.__getitem__)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            kinds=np.array([k.value for k in clf.kinds]),
            words=np.array(words),
            idf=clf._idf,
            mean=clf._mean,
            scale=clf._scale,
            weights=clf._w,
            temperature=np.array(clf.temperature),
        )
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError:
        pass


def _load(path: Path, embed: EmbedFn, cues: Callable[[str], np.ndarray]) -> KindClassifier | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            words = [str(w) for w in z["words"]]
            return KindClassifier(
                [TaskKind(str(k)) for k in z["kinds"]],
                {w: i for i, w in enumerate(words)},
                z["idf"],
                z["mean"],
                z["scale"],
                z["weights"],
                embed,
                cues,
                float(z["temperature"]),
            )
    except Exception:  # absent, truncated (a zip error), another layout: a cache miss is only a refit
        return None
