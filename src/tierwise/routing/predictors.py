"""Per-model quality predictors over prompt features, stored as plain arrays (npz-friendly, no pickle).

``logreg``: one logistic regression per model on standardized features (soft labels allowed). With
``rel`` it learns each model's score *relative to the row mean* instead (mapped to [0, 1]), so the part of
a prompt's difficulty that all models share — most of the signal in absolute scores, and no help in
choosing between them — does not drown the differences that routing needs.
``knn``: cosine nearest neighbours in the training set, their mean score shrunk toward the model's mean.
``blend``: the mean of the two. With several embedders (``e5+static``) each component reads one of them
(a *view*): e.g. logistic regression on e5 blended with kNN on static embeddings. Which predictor a
learned router uses is chosen on held-out training folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tierwise.errors import ConfigError

KINDS = ("logreg", "knn", "blend")
_SHRINK = 5.0  # pseudo-neighbours at the model's mean: steadies predictions from few neighbours
Layout = dict[str, tuple[int, int]]  # view name -> [lo, hi) columns of the feature matrix


@dataclass
class Predictor:
    """Predicts each model's quality (n, m) from features (n, d)."""

    kind: str
    params: dict[str, float] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)  # component (logreg/knn) -> view; empty: all columns
    layout: Layout = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown predictor {self.kind!r}: use one of {', '.join(KINDS)}")
        unknown = set(self.views.values()) - set(self.layout)
        if unknown:
            raise ConfigError(
                f"predictor views {sorted(unknown)} are not in the feature layout {list(self.layout)}"
            )

    @property
    def label(self) -> str:
        parts = []
        if self.kind in ("logreg", "blend"):
            rel = ",rel" if self.relative else ""
            parts.append(f"C={self.params.get('C', 0.1):g}{rel}" + _at(self.views.get("logreg")))
        if self.kind in ("knn", "blend"):
            parts.append(f"k={self.params.get('k', 50):g}" + _at(self.views.get("knn")))
        return f"{self.kind}({','.join(parts)})"

    @property
    def relative(self) -> bool:
        return bool(self.params.get("rel", 0.0))

    def copy(self) -> Predictor:
        """An unfitted predictor with the same settings."""
        return Predictor(self.kind, dict(self.params), dict(self.views), dict(self.layout))

    def _cols(self, component: str, x: np.ndarray) -> np.ndarray:
        view = self.views.get(component)
        if view is None:
            return x
        lo, hi = self.layout[view]
        return x[:, lo:hi]

    def fit(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> Predictor:
        """Fit on features ``x`` and scores ``y``; ``mask`` (n, m) marks the scores that exist."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64)
        if mask is not None and mask.all():
            mask = None
        if mask is not None and self.relative:
            raise ConfigError(f"{self.label}: relative targets need every model scored on every row")
        if mask is None:
            self.arrays = {"prior": y.mean(axis=0)}
        else:
            y = np.where(mask, y, 0.0)
            self.arrays = {"prior": y.sum(axis=0) / np.maximum(mask.sum(axis=0), 1)}
        if self.kind in ("logreg", "blend"):
            target = y
            if self.relative:
                # s_j − mean_k s_k lies in [−1, 1]; as a soft label (s_j − s̄ + 1)/2.
                target = (y - y.mean(axis=1, keepdims=True) + 1.0) / 2.0
                self.arrays["base"] = np.array(y.mean())
            c = float(self.params.get("C", 0.1))
            self.arrays.update(_fit_logreg(self._cols("logreg", x), target, c, mask))
        if self.kind in ("knn", "blend"):
            self.arrays.update(
                {"knn_x": _unit(self._cols("knn", x)).astype(np.float32), "knn_y": y.astype(np.float32)}
            )
            if mask is not None:
                self.arrays["knn_m"] = mask.astype(np.float32)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if self.kind == "logreg":
            return self._logreg(self._cols("logreg", x))
        if self.kind == "knn":
            return self._knn(self._cols("knn", x))
        return 0.5 * (self._logreg(self._cols("logreg", x)) + self._knn(self._cols("knn", x)))

    def _logreg(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays
        z = ((x - a["mean"]) / a["scale"]) @ a["coef"].T + a["intercept"]
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        if self.relative:
            # Back to a quality: the average score plus the predicted difference from the row mean.
            return np.clip(a["base"] + 2.0 * p - 1.0, 0.0, 1.0)
        return p

    def _knn(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays
        train_x, train_y = a["knn_x"], a["knn_y"]
        k = min(int(self.params.get("k", 50)), len(train_x))
        sims = _unit(x) @ train_x.T
        if k < len(train_x):
            idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(len(train_x)), sims.shape)
        total = train_y[idx].sum(axis=1)
        count = a["knn_m"][idx].sum(axis=1) if "knn_m" in a else k
        return (total + _SHRINK * a["prior"]) / (count + _SHRINK)


def candidates(layout: Layout | None = None) -> list[Predictor]:
    """The default search space, small on purpose: the choice is made by cross-validation on the
    training data, and every extra candidate is one more chance to pick a lucky one.

    One view: logistic regression (two strengths, absolute and relative targets), kNN (two sizes), blends.
    With lexical features (``static+lex2``, ``static+lex``): linear models on them (three strengths; and
    on everything), neighbours on the embedding, and blends. Other views (``e5+static``): a linear model
    on the first (richest) view, neighbours on the last, and their blends.
    """
    layout = dict(layout or {})
    if len(layout) <= 1:
        return [
            Predictor("logreg", {"C": 0.01}, layout=layout),
            Predictor("logreg", {"C": 0.1}, layout=layout),
            Predictor("logreg", {"C": 0.01, "rel": 1.0}, layout=layout),
            Predictor("knn", {"k": 20}, layout=layout),
            Predictor("knn", {"k": 60}, layout=layout),
            Predictor("blend", {"C": 0.01, "k": 60}, layout=layout),
            Predictor("blend", {"C": 0.01, "rel": 1.0, "k": 60}, layout=layout),
        ]
    lex = next((v for v in ("lex2", "lex") if v in layout), None)
    if lex is not None:
        # Surface features carry the difficulty that transfers across subjects (a linear model on a few
        # dozen features cannot overfit); the embedding carries topic, which neighbours use best.
        near = next((v for v in layout if v != lex), lex)
        mixed = {"logreg": lex, "knn": near}
        return [
            Predictor("logreg", {"C": 0.003}, {"logreg": lex}, layout),
            Predictor("logreg", {"C": 0.01}, {"logreg": lex}, layout),
            Predictor("logreg", {"C": 0.1}, {"logreg": lex}, layout),
            Predictor("logreg", {"C": 0.01, "rel": 1.0}, {"logreg": lex}, layout),
            Predictor("logreg", {"C": 0.01}, {}, layout),
            Predictor("knn", {"k": 20}, {"knn": near}, layout),
            Predictor("knn", {"k": 60}, {"knn": near}, layout),
            Predictor("blend", {"C": 0.01, "k": 20}, mixed, layout),
            Predictor("blend", {"C": 0.01, "k": 60}, mixed, layout),
        ]
    first, last = next(iter(layout)), list(layout)[-1]
    both = {"logreg": first, "knn": last}
    return [
        Predictor("logreg", {"C": 0.001}, {"logreg": first}, layout),
        Predictor("logreg", {"C": 0.001, "rel": 1.0}, {"logreg": first}, layout),
        Predictor("knn", {"k": 20}, {"knn": last}, layout),
        Predictor("blend", {"C": 0.001, "k": 20}, both, layout),
        Predictor("blend", {"C": 0.01, "k": 20}, both, layout),
        Predictor("blend", {"C": 0.001, "rel": 1.0, "k": 20}, both, layout),
    ]


def _at(view: str | None) -> str:
    return f"@{view}" if view else ""


def _fit_logreg(
    x: np.ndarray, y: np.ndarray, c: float, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """L2-regularised logistic regression per model (sklearn's objective: ½‖w‖² + C·Σ log-loss), each
    on the rows that score it (``mask``).

    Newton's method in numpy (``newton_logreg``, shared with the cascade's risk models): a handful of
    small linear solves per model, so cross-validating every model of a RouterBench task takes well under
    a second. Soft targets (judge grades) work as they are.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    z = np.hstack([((x - mean) / scale).astype(np.float64), np.ones((len(x), 1))])
    d = z.shape[1]
    penalty = np.eye(d) / c
    penalty[-1, -1] = 1e-8  # the intercept is not penalised
    m = y.shape[1]
    coef = np.zeros((m, d - 1), dtype=np.float64)
    intercept = np.zeros(m, dtype=np.float64)
    for j in range(m):
        rows = z if mask is None else z[mask[:, j]]
        target = y[:, j] if mask is None else y[mask[:, j], j]
        if len(target) == 0:
            continue  # scored nowhere: predicts 0.5, and the router never trusts it
        p0 = float(np.clip(target.mean(), 1e-4, 1 - 1e-4))
        w = np.zeros(d)
        w[-1] = np.log(p0 / (1 - p0))
        if target.min() != target.max():  # a model always (never) right has nothing more to learn
            w = newton_logreg(rows, target, penalty, w)
        coef[j] = w[:-1]
        intercept[j] = w[-1]
    return {
        "mean": mean.astype(np.float32),
        "scale": scale.astype(np.float32),
        "coef": coef,
        "intercept": intercept,
    }


def newton_logreg(z: np.ndarray, y: np.ndarray, penalty: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The weights minimising Σ log-loss(z·w, y) + ½ wᵀ·penalty·w (``y`` 0/1 or soft), from ``w``:
    Newton steps, halved while a full one would raise the loss (it can overshoot on separable patterns),
    until a step or the loss's decrease is negligible."""

    def loss(v: np.ndarray) -> float:
        t = z @ v
        return float(np.sum(np.logaddexp(0, t) - y * t) + 0.5 * v @ penalty @ v)

    current = loss(w)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - y) + penalty @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hess, grad)
        shrink = 1.0
        while shrink > 1e-4 and loss(w - shrink * step) > current + 1e-12:
            shrink /= 2
        w = w - shrink * step
        new = loss(w)
        if np.abs(shrink * step).max() < 1e-6 or current - new < 1e-9 * max(1.0, abs(current)):
            break
        current = new
    return w


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)
