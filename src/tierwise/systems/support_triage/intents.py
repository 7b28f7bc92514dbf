"""The nano tier of support triage: a non-generative intent classifier fitted on labelled examples.

It is itself a cascade (tierwise's idea applied inside the nano tier): a fast linear model on word and
character n-grams plus 64-d static embeddings answers when its margin is high; the rest are embedded with
e5-small (metered through the run's scope) and answered by a stronger model on all features, which also
decides out-of-scope by the distance to the nearest training example. Every threshold is chosen by
cross-validation on the examples, never on the messages being classified.
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
C_FAST = 0.5  # LinearSVC regularisation of both stages (0.25-1.0 within 0.5 points on Banking77)
FOLDS = 4  # cross-validation folds over the examples that choose the thresholds
# How far below all-e5 accuracy the cascade may fall (out of fold) to keep most texts off e5. On
# Banking77 with 40 examples per intent: 0.01 sends ~10% to e5 at 0.87 (all-e5 0.88, static 0.85).
TOLERANCE = 0.01
_VERSION = "intents-v3"  # part of the cache key: bump when features or thresholds change

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
        tolerance: float = TOLERANCE,
        oos_quantile: float = 0.05,
        folds: int = FOLDS,
        seed: int = 0,
    ) -> IntentClassifier:
        """Fit on examples; categories named ``oos``/``out_of_scope`` only calibrate the OOS threshold.

        The thresholds come from out-of-fold predictions on the examples (k-fold cross-validation): the
        fast stage answers alone above the smallest margin at which the cascade stays within ``tolerance``
        of sending everything to e5, so the share sent to e5 is what the accuracy needs and no more."""
        texts, cats = list(texts), np.asarray(categories, dtype=object)
        is_oos = np.isin(cats, list(OOS_NAMES))
        labels = sorted(set(cats[~is_oos]))
        if len(labels) < 2:
            raise ValueError(f"need examples of at least 2 intents, got {len(labels)}")
        static = _unit(static_embed(texts))
        e5 = await embed_batched(embed, texts)
        y = np.array([labels.index(c) if c in labels else -1 for c in cats])
        feats = _Features([texts[i] for i in np.nonzero(~is_oos)[0]])
        info: dict[str, float] = {
            "examples": float(len(texts)),
            "labels": float(len(labels)),
            "oos_examples": float(is_oos.sum()),
        }
        fast_t, oos_t, static_t = float("inf"), -1.0, -1.0
        fold = _folds(y, is_oos, folds, seed)
        if (fold >= 0).any():
            oof = _out_of_fold(texts, y, static, e5, fold, feats)
            held = fold >= 0
            fast_ok, strong_ok = oof.fast_pred[held] == y[held], oof.strong_pred[held] == y[held]
            fast_t = _cascade_threshold(oof.margin[held], fast_ok, strong_ok, tolerance)
            static_t = float(np.quantile(oof.static_near[held], oos_quantile))
            oos_t = float(np.quantile(oof.e5_near[held], oos_quantile))
            if is_oos.any():
                # With user-supplied OOS examples, also keep the fast stage from answering most of them.
                keep = ~is_oos
                tx = [texts[i] for i in np.nonzero(keep)[0]]
                f1 = LinearSVC(C=C_FAST).fit(feats(tx, static[keep]), y[keep])
                ox = [texts[i] for i in np.nonzero(is_oos)[0]]
                _, om = _margins(f1, feats(ox, static[is_oos]))
                fast_t = max(fast_t, float(np.quantile(om, 0.95)))
                oos_t = _best_split(oof.e5_near[held], _nearest(e5[is_oos], e5[~is_oos]), oos_t)
            sure = (oof.margin[held] >= fast_t) & (oof.static_near[held] >= static_t)
            cascade_ok = np.where(sure, fast_ok, strong_ok)
            info.update(
                held_out=float(held.sum()),
                cv_accuracy_static=float(fast_ok.mean()),
                cv_accuracy_e5=float(strong_ok.mean()),
                cv_accuracy_cascade=float(cascade_ok.mean()),
                cv_share_e5=float(1.0 - sure.mean()),
            )
        keep = ~is_oos
        tx = [texts[i] for i in np.nonzero(keep)[0]]
        fast = LinearSVC(C=C_FAST).fit(feats(tx, static[keep]), y[keep])
        strong = LinearSVC(C=C_FAST).fit(feats(tx, static[keep], e5[keep]), y[keep])
        info.update(fast_threshold=fast_t, oos_threshold=oos_t, static_oos_threshold=static_t)
        return cls(labels, feats, fast, strong, fast_t, oos_t, e5[keep], static[keep], static_t, info)

    @property
    def has_oos_examples(self) -> bool:
        """Whether the examples named out-of-scope messages (``oos`` rows), which calibrated that test."""
        return self.info.get("oos_examples", 0.0) > 0

    async def predict(
        self, texts: Sequence[str], embed: Embed, *, out_of_scope: bool = True
    ) -> tuple[list[Prediction], np.ndarray | None]:
        """Predictions in input order, and the e5 vectors of the messages that reached stage 2.

        ``out_of_scope=False`` always answers one of the labels (a batch over a closed label set): no
        familiarity test sends a text to e5 and none comes back as OUT_OF_SCOPE."""
        texts = list(texts)
        static = _unit(static_embed(texts))
        pred, margin = _margins(self.fast, self.features(texts, static))
        out: list[Prediction | None] = [None] * len(texts)
        sure = margin >= self.fast_threshold
        if out_of_scope:
            sure &= _nearest(static, self.train_static) >= self.static_oos_threshold
        unsure = np.nonzero(~sure)[0]
        names = np.asarray(self.labels, dtype=object)[self.fast.classes_[pred]]
        for i in np.nonzero(sure)[0]:
            out[i] = Prediction(names[i], float(margin[i]), "static")
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
                if out_of_scope and near[j] < self.oos_threshold:
                    label = OUT_OF_SCOPE
                out[i] = Prediction(label, float(near[j]), "e5")
        return [p for p in out if p is not None], e5_all


def _folds(y: np.ndarray, is_oos: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each in-scope example's fold (stratified); -1 for examples never held out (OOS, a label's only one)."""
    rng = np.random.default_rng(seed)
    fold = np.full(len(y), -1)
    for label in np.unique(y[~is_oos]):
        idx = np.nonzero((y == label) & ~is_oos)[0]
        if len(idx) >= 2:
            fold[rng.permutation(idx)] = np.arange(len(idx)) % k
    return fold


@dataclass
class _OutOfFold:
    fast_pred: np.ndarray  # class index per example (valid where its fold >= 0)
    strong_pred: np.ndarray
    margin: np.ndarray  # the fast stage's margin
    static_near: np.ndarray  # nearest other-fold example, static vectors
    e5_near: np.ndarray  # nearest other-fold example, e5 vectors


def _out_of_fold(
    texts: list[str], y: np.ndarray, static: np.ndarray, e5: np.ndarray, fold: np.ndarray, feats: _Features
) -> _OutOfFold:
    n = len(texts)
    oof = _OutOfFold(*(np.zeros(n) for _ in range(5)))
    for f in np.unique(fold[fold >= 0]):
        train, test = (fold != f) & (y >= 0), fold == f
        if len(np.unique(y[train])) < 2:
            continue
        tr, te = [texts[i] for i in np.nonzero(train)[0]], [texts[i] for i in np.nonzero(test)[0]]
        fast = LinearSVC(C=C_FAST).fit(feats(tr, static[train]), y[train])
        strong = LinearSVC(C=C_FAST).fit(feats(tr, static[train], e5[train]), y[train])
        pred, margin = _margins(fast, feats(te, static[test]))
        oof.fast_pred[test], oof.margin[test] = fast.classes_[pred], margin
        p2, _ = _margins(strong, feats(te, static[test], e5[test]))
        oof.strong_pred[test] = strong.classes_[p2]
        oof.static_near[test] = _nearest(static[test], static[train])
        oof.e5_near[test] = _nearest(e5[test], e5[train])
    return oof


def _cascade_threshold(
    margin: np.ndarray, fast_ok: np.ndarray, strong_ok: np.ndarray, tolerance: float
) -> float:
    """The lowest fast-stage margin at which answering above it and escalating below it stays within
    ``tolerance`` of escalating everything: the fewest escalations the accuracy allows."""
    order = np.argsort(margin)  # least sure first: escalated first
    n = len(order)
    # accuracy when the k least sure go to e5, for k = 0..n
    esc = np.concatenate([[0], np.cumsum(strong_ok[order])])
    kept = np.concatenate([np.cumsum(fast_ok[order][::-1])[::-1], [0]])
    acc = (esc + kept) / max(n, 1)
    ok = np.nonzero(acc >= strong_ok.mean() - tolerance)[0]
    k = int(ok[0]) if len(ok) else n
    return float(margin[order][k]) if k < n else float("inf")


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
