"""Code search that ranks files the way a developer would look for them.

A question names things ("where are timeouts configured?"): the file that *defines* them (a class
``Timeout``, a constant ``DEFAULT_TIMEOUT_CONFIG``, a module ``_config.py``) is the one to open, not the
file that mentions the word most. So a file's score is, per query term: its best definition match
(classes, functions, config names: Python through ``ast``, other languages through simple definition
regexes), then path relevance (the term in the file name or a directory), then literal hits. Terms are
weighted by rarity across the repository (idf), so a word every file says counts little. The planner's
picks are hints: a modest boost that orders otherwise close files, never one that lifts an unrelated file
(a ``.gitignore``) over a real match.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from tierwise.systems.coding_assistant.repo import text_files
from tierwise.tools import Workspace

__all__ = ["FileFacts", "query_terms", "rank_files", "scan", "score_files", "stem"]

MAX_SCAN_BYTES = 300_000  # larger files are generated or data: not worth reading
MAX_TERMS = 24

# Weights of one term's match, by where it matched. A definition is what a developer is after; a path
# segment says what the file is about; a literal hit only that the word occurs.
W_CLASS, W_FUNC, W_CONFIG, W_ATTR, W_PARAM, W_OTHER_DEF = 3.0, 2.0, 2.5, 1.5, 1.0, 2.0
W_FILE_NAME, W_DIR_NAME = 4.0, 1.5
W_LITERAL = 0.5  # per log-count: that a word occurs says least
# A planner pick is a hint: its own matches count a quarter more (it orders close files), and a pick no term
# matches ranks after every file that matches (kept, so it is inspected when there is room).
PLAN_HINT = 1.25
PICK_FLOOR = 0.01
TEST_FACTOR = 0.5  # tests define test_* functions named after everything they test; unless asked for

_STOP = frozenset(
    {"the", "and", "for", "with", "that", "this", "from", "what", "which", "where", "when", "how", "does",
     "into", "are", "was", "were", "not", "you", "can", "add", "fix", "make", "use", "used", "file", "files",
     "code", "repo", "function", "should", "would", "please", "there", "their", "them", "its", "all",
     "any", "some", "get", "set", "out", "about", "our", "your", "who", "why", "has", "have", "had", "will",
     "defined", "define", "implemented", "implement", "happen", "happens", "done", "work", "works",
     "handled", "handle", "find", "look", "see", "located", "live", "lives"}
)  # fmt: skip
_SUFFIXES = ("ational", "ations", "ation", "ings", "ing", "ied", "ies", "ed", "es", "s")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# Definitions outside Python: one regex per family, the defined name in group 1. Simple on purpose: a
# missed definition still counts as a literal hit.
_DEF_RES = (
    re.compile(
        r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:pub(?:\([^)]*\))?[ \t]+)?(?:public[ \t]+|private[ \t]+"
        r"|protected[ \t]+|internal[ \t]+)?(?:static[ \t]+)?(?:abstract[ \t]+)?(?:final[ \t]+)?"
        r"(?:async[ \t]+)?(?:class|def|function|fn|interface|struct|enum|trait|type|module|object|"
        r"impl|const|let|var|val|macro_rules!)[ \t]+([A-Za-z_$][\w$]*)",
        re.M,
    ),
    re.compile(r"^[ \t]*func[ \t]+(?:\([^)]*\)[ \t]*)?([A-Za-z_]\w*)", re.M),  # Go, with a receiver
    re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)", re.M),  # C macros: often config names
)
_BLOCKS = (ast.If, ast.Try, ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While)  # defs inside count
_CONFIG_KEY = re.compile(r"^[ \t]*([A-Za-z_][\w.-]*)[ \t]*[:=]", re.M)
_CONFIG_EXT = frozenset({".toml", ".ini", ".cfg", ".conf", ".yaml", ".yml", ".env", ".properties"})
_TEST_PATH = re.compile(r"(^|/)(tests?|spec|__tests__)/|(^|/)(test_[^/]*|[^/]*_test\.\w+|[^/]*\.spec\.\w+)$")


def stem(word: str) -> str:
    """A crude stem: ``timeouts``/``timeout``, ``configured``/``configuration``/``config``'s root."""
    w = word.lower()
    for suf in _SUFFIXES:
        if w.endswith(suf) and len(w) - len(suf) >= 4:
            return w[: -len(suf)]
    return w


def split_identifier(name: str) -> list[str]:
    """``DEFAULT_TIMEOUT_CONFIG`` → default, timeout, config; ``ReadTimeout`` → read, timeout."""
    return [p.lower() for part in re.split(r"[_\W]+", name) for p in _CAMEL.findall(part)]


def _same(term: str, token: str) -> bool:
    """Whether two stems name the same thing: equal, or one extends the other (``config``/``configur``),
    or they share all but a last letter (``proxi``/``proxy``, ``cooki``/``cookie``)."""
    if term == token:
        return True
    short = min(len(term), len(token))
    if short < 4:
        return False
    n = 0
    for a, b in zip(term, token, strict=False):
        if a != b:
            break
        n += 1
    return n >= max(4, short - 1)


@dataclass(slots=True)
class FileFacts:
    """What search knows about one file: its path's tokens, definitions (token stems, weight) and text."""

    path: str
    text: str  # lowercased
    name_tokens: frozenset[str]
    dir_tokens: frozenset[str]
    defs: list[tuple[frozenset[str], float]] = field(default_factory=list)
    is_test: bool = False


def _py_defs(source: str) -> list[tuple[str, float]] | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    found: list[tuple[str, float]] = []

    def names(node: ast.Assign | ast.AnnAssign, where: str) -> Iterable[str]:
        for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
            if where != "function" and isinstance(t, ast.Name):
                yield t.id
            elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                yield t.attr

    def visit(body: list[ast.stmt], where: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                found.append((node.name, W_CLASS))
                visit(node.body, "class")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.name, W_FUNC))
                a = node.args
                found.extend((p.arg, W_PARAM) for p in (*a.posonlyargs, *a.args, *a.kwonlyargs))
                visit(node.body, "function")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                # Module-level names are a module's configuration, class-level ones its fields; inside a
                # function only ``self.x = ...`` (an object's state) counts, not local variables.
                weight = {"module": W_CONFIG, "class": W_ATTR}.get(where, W_PARAM)
                found.extend((name, weight) for name in names(node, where))
            elif isinstance(node, _BLOCKS):
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(node, part, []), where)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, where)

    visit(tree.body, "module")
    return found


def _regex_defs(source: str, suffix: str) -> list[tuple[str, float]]:
    found = [(m.group(1), W_OTHER_DEF) for rx in _DEF_RES for m in rx.finditer(source)]
    if suffix in _CONFIG_EXT:
        found += [(m.group(1), W_CONFIG) for m in _CONFIG_KEY.finditer(source)]
    return found


def facts(path: str, source: str) -> FileFacts:
    """Parse one file's definitions (Python with ``ast``, falling back to the regexes on a syntax error)."""
    p = PurePosixPath(path)
    raw = (_py_defs(source) if p.suffix == ".py" else None) or _regex_defs(source, p.suffix.lower())
    best: dict[frozenset[str], float] = {}
    for name, weight in raw:
        tokens = frozenset(stem(t) for t in split_identifier(name) if len(t) > 1)
        if tokens and weight > best.get(tokens, 0.0):
            best[tokens] = weight
    name = p.name.split(".")[0] or p.name  # ".gitignore" keeps its name
    return FileFacts(
        path=path,
        text=source.lower(),
        name_tokens=frozenset(stem(t) for t in split_identifier(name)),
        dir_tokens=frozenset(stem(t) for d in p.parts[:-1] for t in split_identifier(d)),
        defs=list(best.items()),
        is_test=bool(_TEST_PATH.search(path)),
    )


def query_terms(request: str, searches: Iterable[str] = ()) -> list[str]:
    """The distinct stems a request and the planner's searches name (stop words dropped), at most 24."""
    words: list[str] = []
    for text in (*searches, request):
        for w in _WORD.findall(text):
            words += [w, *split_identifier(w)] if ("_" in w or not w.islower()) else [w]
    stems = [stem(w) for w in words if len(w) > 2 and w.lower() not in _STOP]
    return list(dict.fromkeys(s for s in stems if s not in _STOP and len(s) > 2))[:MAX_TERMS]


def scan(ws: Workspace, terms: list[str]) -> tuple[list[FileFacts], int]:
    """The facts of every readable text file that may match ``terms``, and how many files were seen.

    Only files whose text or path holds some term's first four letters are parsed: any definition match
    needs those (``_same``), so the rest cannot score.
    """
    keys = {t[:4] for t in terms}
    out: list[FileFacts] = []
    seen = 0
    for rel, text in text_files(ws):
        seen += 1
        hay = rel.lower() + "\n" + text.lower()
        if any(k in hay for k in keys):
            out.append(facts(rel, text))
    return out, seen


def _term_score(term: str, f: FileFacts, terms: list[str]) -> tuple[float, float, float]:
    """One term in one file: (definition, path, literal) scores before idf."""
    best = 0.0
    for tokens, weight in f.defs:
        if any(_same(term, t) for t in tokens):
            # A name the query spells out (``Timeout``; ``DEFAULT_TIMEOUT_CONFIG`` for "default timeout
            # config") beats one that merely contains the term (``UseClientDefault``).
            covered = sum(1 for t in tokens if any(_same(q, t) for q in terms))
            best = max(best, weight * (1.0 + covered / len(tokens)))
    path = (
        W_FILE_NAME if any(_same(term, t) for t in f.name_tokens)
        else W_DIR_NAME if any(_same(term, t) for t in f.dir_tokens)
        else 0.0
    )  # fmt: skip
    literal = W_LITERAL * math.log1p(min(f.text.count(term), 50))
    return best, path, literal


def score_files(
    files: list[FileFacts], terms: list[str], total: int, hints: Iterable[str] = ()
) -> list[tuple[str, float]]:
    """Rank ``files`` for ``terms``: best first, scores rounded; ``hints`` are the planner's picks."""
    if not terms:
        return []
    per = {f.path: [_term_score(t, f, terms) for t in terms] for f in files}
    n = max(total, len(files), 1)
    # Rarity across the repository: a term in (nearly) every file says little about which one to open.
    idf = [
        math.log((n + 1) / (sum(1 for f in files if any(per[f.path][i])) + 0.5)) for i in range(len(terms))
    ]
    wants_tests = any(t.startswith("test") or t.startswith("spec") for t in terms)
    hinted = set(hints)
    ranked: list[tuple[str, float]] = []
    for f in files:
        score = sum(w * (d + p + lit) for w, (d, p, lit) in zip(idf, per[f.path], strict=True))
        if f.is_test and not wants_tests:
            score *= TEST_FACTOR
        if f.path in hinted:
            score = score * PLAN_HINT or PICK_FLOOR
        if score > 0:
            ranked.append((f.path, round(score, 3) or PICK_FLOOR))
    for path in hinted - {f.path for f in files}:
        ranked.append((path, PICK_FLOOR))
    ranked.sort(key=lambda x: (-x[1], x[0]))
    return ranked


def rank_files(
    ws: Workspace, request: str, searches: Iterable[str] = (), hints: Iterable[str] = (), limit: int = 18
) -> list[tuple[str, float]]:
    """The repository's files ranked for ``request`` (plus the planner's ``searches`` and picks)."""
    terms = query_terms(request, searches)
    files, total = scan(ws, terms)
    return score_files(files, terms, total, hints)[:limit]
