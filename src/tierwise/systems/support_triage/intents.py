"""The nano tier of support triage: a non-generative intent classifier fitted on labelled examples.

It is itself a cascade (tierwise's idea applied inside the nano tier): a fast linear model on word and
character n-grams plus 64-d static embeddings answers when its margin is high; the rest are embedded with
e5-small (metered through the run's scope) and answered by a stronger model on all features, which also
decides out-of-scope by the distance to the nearest training example. Every threshold is fitted on held-out
examples, never on the messages being classified.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

OUT_OF_SCOPE = "out_of_scope"
OOS_NAMES = frozenset({"oos", "out_of_scope", "out-of-scope"})  # example categories meaning "none of them"
EMBED_BATCH = 256
_VERSION = "intents-v2"  # part of the cache key: bump when features or thresholds change

Embed = Callable[[list[str]], Awaitable[np.ndarray]]  # texts → (n, d) unit vectors, metered by the caller


@dataclass(frozen=True, slots=True)
class Prediction:
    intent: str  # a label or OUT_OF_SCOPE
    confidence: float  # the deciding stage's margin (stage 1) or nearest-example similarity (stage 2)
    stage: str  # "static" (fast model answered) or "e5" (escalated inside the nano tier)


def static_embed(texts: Sequence[str]) -> np.ndarray:
    """64-d static embeddings (tokenlearn-static-model ships its weights): a table lookup, no model call."""
    from static_model import get_embeddings

    if not texts:
        return np.zeros((0, 64), dtype=np.float32)
    return np.asarray(get_embeddings(list(texts)), dtype=np.float32).reshape(len(texts), -1)


async def embed_batched(embed: Embed, texts: Sequence[str], batch: int = EMBED_BATCH) -> np.ndarray:
    """One metered call per batch so the ledger shows the nano work without one record per text."""
    parts = [await embed(list(texts[i : i + batch])) for i in range(0, len(texts), batch)]
    vecs = np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return (vecs / np.maximum(norms, 1e-9)).astype(np.float32)


class _Features:
    """Sparse n-gram TF-IDF plus dense embeddings, stacked for a linear model."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
        # Character n-grams carry misspellings and morphology that 64-d static vectors blur.
        self.chars = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, max_features=100_000
        ).fit(texts)

    def __call__(self, texts: Sequence[str], static: np.ndarray, e5: np.ndarray | None = None) -> csr_matrix:
        blocks = [self.words.transform(texts), self.chars.transform(texts), csr_matrix(static)]
        if e5 is not None:
            blocks.append(csr_matrix(e5 * 2.0))  # e5 weighted up: it is the stronger signal
        return hstack(blocks).tocsr()


def _margins(model: LinearSVC, x: csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class index and the gap between the best and second-best decision scores."""
    scores = model.decision_function(x)
    if scores.ndim == 1:  # two classes: sklearn returns one column
        scores = np.stack([-scores, scores], axis=1)
    top2 = np.sort(scores, axis=1)[:, -2:]
    return scores.argmax(axis=1), top2[:, 1] - top2[:, 0]


def _precision_threshold(margin: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The smallest margin above which held-out predictions are at least ``target`` accurate."""
    order = np.argsort(-margin)
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(running >= target)[0]
    if len(ok) == 0:
        return float("inf")
    return float(margin[order][ok[-1]])


@dataclass
class IntentClassifier:
    """Fitted cascade. Build with :meth:`fit`; use :meth:`predict`."""

    labels: list[str]
    features: _Features
    fast: LinearSVC
    strong: LinearSVC
    fast_threshold: float  # stage-1 margin needed to answer without e5
    oos_threshold: float  # stage-2 nearest-example cosine below which a message is out of scope
    train_e5: np.ndarray  # in-scope examples' e5 vectors, for the distance test
    # Stage 1 may answer only messages that look like the examples: a confident n-gram margin alone
    # would send an out-of-scope message ("weather in Paris?") to whichever label shares a word with it.
    train_static: np.ndarray = field(default_factory=lambda: np.zeros((0, 64), dtype=np.float32))
    static_oos_threshold: float = -1.0
    info: dict[str, float] = field(default_factory=dict)

    @classmethod
    async def fit(
        cls,
        texts: Sequence[str],
        categories: Sequence[str],
        embed: Embed,
        *,
        precision: float = 0.95,
        oos_quantile: float = 0.05,
        seed: int = 0,
    ) -> IntentClassifier:
        """Fit on examples; categories named ``oos``/``out_of_scope`` only calibrate the OOS threshold."""
        texts, cats = list(texts), np.asarray(categories, dtype=object)
        is_oos = np.isin(cats, list(OOS_NAMES))
        labels = sorted(set(cats[~is_oos]))
        if len(labels) < 2:
            raise ValueError(f"need examples of at least 2 intents, got {len(labels)}")
        static = _unit(static_embed(texts))
        e5 = await embed_batched(embed, texts)
        # Hold out a fifth of the in-scope examples (stratified) to fit the two thresholds.
        rng = np.random.default_rng(seed)
        held = np.zeros(len(texts), dtype=bool)
        for label in labels:
            idx = np.nonzero(cats == label)[0]
            if len(idx) >= 3:
                held[rng.choice(idx, size=max(1, len(idx) // 5), replace=False)] = True
        fit_mask = ~held & ~is_oos
        feats = _Features([texts[i] for i in np.nonzero(~is_oos)[0]])
        y = np.array([labels.index(c) if c in labels else -1 for c in cats])
        info: dict[str, float] = {"examples": float(len(texts)), "labels": float(len(labels))}
        fast_t, oos_t, static_t = float("inf"), -1.0, -1.0
        if held.any():
            tx = [texts[i] for i in np.nonzero(fit_mask)[0]]
            f1 = LinearSVC(C=0.5).fit(feats(tx, static[fit_mask]), y[fit_mask])
            f2 = LinearSVC(C=0.5).fit(feats(tx, static[fit_mask], e5[fit_mask]), y[fit_mask])
            hx = [texts[i] for i in np.nonzero(held)[0]]
            pred, margin = _margins(f1, feats(hx, static[held]))
            fast_t = _precision_threshold(margin, f1.classes_[pred] == y[held], precision)
            if is_oos.any():
                # With user-supplied OOS examples, also keep the fast stage from answering most of them.
                ox = [texts[i] for i in np.nonzero(is_oos)[0]]
                _, om = _margins(f1, feats(ox, static[is_oos]))
                fast_t = max(fast_t, float(np.quantile(om, 0.95)))
            static_t = float(np.quantile(_nearest(static[held], static[fit_mask]), oos_quantile))
            near_in = _nearest(e5[held], e5[fit_mask])
            oos_t = float(np.quantile(near_in, oos_quantile))
            if is_oos.any():
                oos_t = _best_split(near_in, _nearest(e5[is_oos], e5[fit_mask]), oos_t)
            p2, _ = _margins(f2, feats(hx, static[held], e5[held]))
            info.update(
                held_out=float(held.sum()), held_out_accuracy_e5=float((f2.classes_[p2] == y[held]).mean())
            )
        keep = ~is_oos
        tx = [texts[i] for i in np.nonzero(keep)[0]]
        fast = LinearSVC(C=0.5).fit(feats(tx, static[keep]), y[keep])
        strong = LinearSVC(C=0.5).fit(feats(tx, static[keep], e5[keep]), y[keep])
        info.update(fast_threshold=fast_t, oos_threshold=oos_t, static_oos_threshold=static_t)
        return cls(labels, feats, fast, strong, fast_t, oos_t, e5[keep], static[keep], static_t, info)

    async def predict(self, texts: Sequence[str], embed: Embed) -> tuple[list[Prediction], np.ndarray | None]:
        """Predictions in input order, and the e5 vectors of the messages that reached stage 2."""
        texts = list(texts)
        static = _unit(static_embed(texts))
        pred, margin = _margins(self.fast, self.features(texts, static))
        out: list[Prediction | None] = [None] * len(texts)
        familiar = _nearest(static, self.train_static) >= self.static_oos_threshold
        sure = (margin >= self.fast_threshold) & familiar
        unsure = np.nonzero(~sure)[0]
        for i in np.nonzero(sure)[0]:
            out[i] = Prediction(self.labels[self.fast.classes_[pred[i]]], float(margin[i]), "static")
        e5_all: np.ndarray | None = None
        if len(unsure):
            sub = [texts[i] for i in unsure]
            e5 = await embed_batched(embed, sub)
            p2, _ = _margins(self.strong, self.features(sub, static[unsure], e5))
            near = _nearest(e5, self.train_e5)
            e5_all = np.zeros((len(texts), e5.shape[1]), dtype=np.float32)
            e5_all[unsure] = e5
            for j, i in enumerate(unsure):
                label = self.labels[self.strong.classes_[p2[j]]]
                out[i] = Prediction(
                    label if near[j] >= self.oos_threshold else OUT_OF_SCOPE, float(near[j]), "e5"
                )
        return [p for p in out if p is not None], e5_all


def _unit(m: np.ndarray) -> np.ndarray:
    return (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def _nearest(queries: np.ndarray, bank: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Cosine similarity of each (unit) query to its nearest (unit) bank vector."""
    if len(queries) == 0 or len(bank) == 0:
        return np.zeros(len(queries), dtype=np.float32)
    return np.concatenate(
        [(queries[i : i + chunk] @ bank.T).max(axis=1) for i in range(0, len(queries), chunk)]
    )


def _best_split(inscope: np.ndarray, oos: np.ndarray, default: float) -> float:
    """The similarity threshold maximizing balanced accuracy between in-scope and OOS examples."""
    best, best_t = -1.0, default
    for t in np.unique(np.concatenate([inscope, oos])):
        score = (inscope >= t).mean() + (oos < t).mean()
        if score > best:
            best, best_t = score, float(t)
    return best_t


# --- cache ------------------------------------------------------------------------------------------
# Two layers. The fit itself, keyed by the examples' content and by the code that fitted it (class path,
# feature version, scikit-learn version): a pickle written by other code is never loaded, so a moved
# module or a new scikit-learn gives a new key instead of a failed load and a silent refit. Under it, the
# e5 vectors of every example ever fitted, keyed by text: fitting a changed set of examples (another
# held-out split, a few rows added) embeds only the new rows, which is where nearly all the fit time goes.


def cache_dir() -> Path:
    return Path(os.environ.get("TIERWISE_CACHE_DIR") or Path.home() / ".cache" / "tierwise") / "triage"


def _code_id() -> str:
    import sklearn

    return f"{_VERSION}\0{IntentClassifier.__module__}.{IntentClassifier.__qualname__}\0{sklearn.__version__}"


def examples_key(texts: Sequence[str], categories: Sequence[str], embed_model: str) -> str:
    """Content hash of the examples (equivalently of the examples file) plus what the fit depends on."""
    h = hashlib.sha256(f"{_code_id()}\0{embed_model}\0".encode())
    for t, c in zip(texts, categories, strict=True):
        h.update(f"{t}\0{c}\n".encode())
    return h.hexdigest()[:32]


class VectorCache:
    """e5 vectors by text for one embedding model, in one .npz file; ``wrap`` an Embed to use it."""

    MAX_ENTRIES = 100_000  # ~150 MB of 384-d vectors; beyond this the oldest go

    def __init__(self, embed_model: str) -> None:
        name = hashlib.sha256(f"{embed_model}".encode()).hexdigest()[:16]
        self.path = cache_dir() / f"vectors-{name}.npz"
        self.vectors: dict[bytes, np.ndarray] = {}
        self.hits = self.misses = 0
        try:
            with np.load(self.path, allow_pickle=False) as f:
                self.vectors = dict(zip(f["keys"].tolist(), f["vecs"], strict=True))
        except (OSError, KeyError, ValueError):
            pass  # none yet, or torn: embed again

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha256(text.encode()).digest()[:16]

    def wrap(self, embed: Embed) -> Embed:
        async def cached(texts: list[str]) -> np.ndarray:
            keys = [self.key(t) for t in texts]
            todo = [i for i, k in enumerate(keys) if k not in self.vectors]
            self.hits += len(texts) - len(todo)
            self.misses += len(todo)
            if todo:
                fresh = await embed([texts[i] for i in todo])
                for i, v in zip(todo, fresh, strict=True):
                    self.vectors[keys[i]] = np.asarray(v, dtype=np.float32)
            if not texts:
                return np.zeros((0, 384), dtype=np.float32)
            return np.stack([self.vectors[k] for k in keys])

        return cached

    def save(self) -> None:
        if not self.misses:
            return
        items = list(self.vectors.items())[-self.MAX_ENTRIES :]
        keys = np.array([k for k, _ in items], dtype="S16")
        vecs = np.stack([v for _, v in items]).astype(np.float32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=keys, vecs=vecs)
        tmp.replace(self.path)  # atomic, so a concurrent run never reads half a file


async def load_or_fit(
    texts: Sequence[str], categories: Sequence[str], embed: Embed, *, embed_model: str, use_cache: bool = True
) -> tuple[IntentClassifier, bool]:
    """The fitted classifier from the cache, or fitted now and cached; the flag says it was cached."""
    path = cache_dir() / f"{examples_key(texts, categories, embed_model)}.pkl"
    if use_cache and path.is_file():
        try:
            with path.open("rb") as f:
                model = pickle.load(f)  # our own file, written below; never user-supplied
            if isinstance(model, IntentClassifier):
                return model, True
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            pass  # a torn cache entry: refit
    vectors = VectorCache(embed_model) if use_cache else None
    model = await IntentClassifier.fit(texts, categories, vectors.wrap(embed) if vectors else embed)
    if vectors is not None:
        model.info.update(vectors_reused=float(vectors.hits), vectors_embedded=float(vectors.misses))
        path.parent.mkdir(parents=True, exist_ok=True)
        vectors.save()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(model, f)
        tmp.replace(path)  # atomic, so a concurrent run never reads half a file
    return model, False
