"""Code search on a real repository: does the coding assistant find the files a developer would open?

    python -m bench.code_search                 # no planner: the request's words only
    python -m bench.code_search --plans live    # the embedded model plans each question (slow)
    python -m bench.code_search --plans PATH    # plans recorded by an earlier --plans live (--save PATH)

The repository is httpx as installed in this environment (its real source tree, ~8,800 lines), copied
to a temporary directory with its README and licence from the package metadata and the project's own
.gitignore, so it runs offline. The questions and the files a developer would open for each were written
by reading httpx's code, not by running any ranker. Three rankers are scored in the same run, on the same
plans:

- ``literal``: literal hit counts of the plan's searches and the request's words (``repo.search_files``);
- ``old``: what the assistant did before issue 14, literal hits with +100 for every planner pick;
- ``new``: ``search.rank_files``, definitions, then paths, then literal hits; planner picks a hint.

recall@5 (and @3) is the share of a question's expected files in the top five (three), averaged over
questions; MRR the
mean reciprocal rank of the first expected file (0 when it is not ranked); hit@1 whether the top file is
an expected one.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tierwise.systems.coding_assistant.repo import search_files, search_terms
from tierwise.systems.coding_assistant.search import rank_files
from tierwise.systems.coding_assistant.types import CodePlan
from tierwise.tools import ToolError, Workspace

K = 5
# encode/httpx's .gitignore, as in the repository: the file the old ranking opened first for "timeouts".
GITIGNORE = (
    "*.pyc\n.coverage\n.pytest_cache/\n.mypy_cache/\n.hypothesis/\n__pycache__/\nhtmlcov/\nsite/\n"
    "*.egg-info/\nvenv*/\n.python-version\nbuild/\ndist/\n"
)
H = "httpx/"
# (question, files a developer would open). Written from httpx 0.29's source.
QUESTIONS: list[tuple[str, list[str]]] = [
    ("Where are timeouts configured?", [H + "_config.py"]),
    ("What is the default timeout value?", [H + "_config.py"]),
    ("Where is the maximum number of redirects enforced?", [H + "_client.py", H + "_config.py"]),
    ("How does digest authentication compute the response hash?", [H + "_auth.py"]),
    ("How are gzip, brotli and zstd encoded response bodies decompressed?", [H + "_decoders.py"]),
    ("Where does raise_for_status decide that a response is an error?", [H + "_models.py"]),
    ("How are multipart file uploads encoded?", [H + "_multipart.py", H + "_content.py"]),
    (
        "How are proxies read from environment variables like HTTP_PROXY and NO_PROXY?",
        [H + "_utils.py", H + "_client.py"],
    ),
    ("Where is the connection pool size limited?", [H + "_config.py", H + "_transports/default.py"]),
    ("How can tests mock responses without a network?", [H + "_transports/mock.py"]),
    ("How is an ASGI application called in-process?", [H + "_transports/asgi.py"]),
    ("Where is the SSL context created and certificates verified?", [H + "_config.py"]),
    ("How are query parameters merged into the request URL?", [H + "_urls.py", H + "_client.py"]),
    ("Where are cookies stored and attached to requests?", [H + "_models.py", H + "_client.py"]),
    (
        "Which exception is raised when reading the response times out?",
        [H + "_exceptions.py", H + "_transports/default.py"],
    ),
    ("Where are international domain names encoded with IDNA?", [H + "_urlparse.py"]),
    ("How does the command line tool print the response?", [H + "_main.py"]),
    ("Where are the request and response event hooks called?", [H + "_client.py"]),
    ("How is a streamed response split into lines?", [H + "_models.py", H + "_decoders.py"]),
    ("Where are HTTP status codes and their reason phrases listed?", [H + "_status_codes.py"]),
    ("Is the Authorization header removed when a redirect goes to another host?", [H + "_client.py"]),
    ("How is HTTP/2 enabled for the transport?", [H + "_transports/default.py", H + "_client.py"]),
    ("Where is a JSON request body encoded?", [H + "_content.py"]),
    ("How are credentials looked up in a netrc file?", [H + "_auth.py"]),
]

Ranker = Callable[[Workspace, str, CodePlan], list[str]]


def build_repo(root: Path) -> Path:
    """httpx's installed source tree as a repository: the package, README, licence and .gitignore."""
    pkg = Path(httpx.__file__).parent
    repo = root / "httpx-repo"
    shutil.copytree(pkg, repo / "httpx", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = next(pkg.parent.glob(f"httpx-{httpx.__version__}.dist-info"), None)
    if dist is not None:
        meta = email.message_from_string((dist / "METADATA").read_text(encoding="utf-8"))
        (repo / "README.md").write_text(str(meta.get_payload()), encoding="utf-8")
        for lic in (dist / "licenses").glob("*"):
            shutil.copy(lic, repo / lic.name)
    (repo / ".gitignore").write_text(GITIGNORE)
    return repo


def _picks(ws: Workspace, plan: CodePlan) -> list[str]:
    out = []
    for f in plan.files:
        try:
            rel = ws.rel(ws.resolve(f.strip()))
        except ToolError:  # a pick outside the repository is ignored, as in the pipeline
            continue
        if (ws.root / rel).is_file():
            out.append(rel)
    return out


def literal(ws: Workspace, q: str, plan: CodePlan) -> list[str]:
    return [p for p, _ in search_files(ws, search_terms(q, plan), 50)]


def old(ws: Workspace, q: str, plan: CodePlan) -> list[str]:
    """The assistant's ranking before issue 14: planner picks first (+100), then literal hits."""
    ranked = dict(search_files(ws, search_terms(q, plan), 18))
    chosen = {rel: ranked.get(rel, 0.0) + 100.0 for rel in _picks(ws, plan)}
    for rel, score in ranked.items():
        chosen.setdefault(rel, score)
    return [p for p, _ in sorted(chosen.items(), key=lambda x: (-x[1], x[0]))]


def new(ws: Workspace, q: str, plan: CodePlan) -> list[str]:
    return [p for p, _ in rank_files(ws, q, plan.searches, _picks(ws, plan), limit=50)]


def score(ranking: list[str], expected: list[str]) -> tuple[float, float, float, bool]:
    """recall@5, recall@3, reciprocal rank of the first expected file, whether the top one is expected."""
    recall = len(set(ranking[:K]) & set(expected)) / len(expected)
    recall3 = len(set(ranking[:3]) & set(expected)) / len(expected)
    rank = next((i for i, p in enumerate(ranking, 1) if p in expected), None)
    return recall, recall3, (1.0 / rank if rank else 0.0), bool(ranking) and ranking[0] in expected


async def live_plans(repo: Path) -> list[CodePlan]:
    """Each question planned by the coding assistant's own planner on the embedded default."""
    from tierwise import Session
    from tierwise.systems.coding_assistant import pipeline

    plans = []
    async with Session() as s:
        for q, _ in QUESTIONS:
            async with s.run("bench:code-search", q) as scope:
                plans.append(await pipeline._Assistant(scope, Workspace(repo), q).plan(None))
            print(f"  planned: {q} -> {plans[-1].files} {plans[-1].searches}", file=sys.stderr)
    return plans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plans", default="none", help="none | live | PATH of recorded plans (JSON)")
    ap.add_argument("--save", type=Path, help="write the plans used to this JSON file")
    ap.add_argument("--show", action="store_true", help="print each question's top 5 per ranker")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = build_repo(Path(tmp))
        ws = Workspace(repo)
        if args.plans == "none":
            plans = [CodePlan() for _ in QUESTIONS]
        elif args.plans == "live":
            plans = asyncio.run(live_plans(repo))
        else:
            plans = [CodePlan.model_validate(p) for p in json.loads(Path(args.plans).read_text())]
        if args.save:
            args.save.write_text(json.dumps([p.model_dump() for p in plans], indent=1) + "\n")
        rankers: dict[str, Ranker] = {"literal": literal, "old": old, "new": new}
        files = sum(1 for _ in ws.files("."))
        print(f"httpx {httpx.__version__}: {files} files, {len(QUESTIONS)} questions, plans: {args.plans}")
        print(f"{'ranker':<8} {'recall@5':>9} {'recall@3':>9} {'MRR':>6} {'hit@1':>6} {'ms/query':>9}")
        for name, fn in rankers.items():
            rows, t0 = [], time.perf_counter()
            for (q, expected), plan in zip(QUESTIONS, plans, strict=True):
                ranking = fn(ws, q, plan)
                rows.append(score(ranking, expected))
                if args.show:
                    print(f"  [{name}] {q}\n      {ranking[:K]}")
            ms = (time.perf_counter() - t0) * 1000 / len(QUESTIONS)
            n = len(rows)
            mean = [sum(r[i] for r in rows) / n for i in range(4)]
            print(f"{name:<8} {mean[0]:>9.3f} {mean[1]:>9.3f} {mean[2]:>6.3f} {mean[3]:>6.3f} {ms:>9.1f}")
        first = QUESTIONS[0][0]
        for name, fn in rankers.items():
            print(f"{name:>8} on {first!r}: {fn(ws, first, plans[0])[:3]}")


if __name__ == "__main__":
    main()
