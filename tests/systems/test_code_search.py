"""Code search ranks the file a developer would open: definitions, then paths, then literal hits; the
planner's picks are hints. A small repository shaped like httpx's (where the issue's search went wrong):
the README and a test file say "timeout" more often than the module that defines ``Timeout``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import chaos_config
from tierwise import Session
from tierwise.ledger import Ledger
from tierwise.systems import coding_assistant
from tierwise.systems.coding_assistant.search import query_terms, rank_files
from tierwise.testing import ChaosServer
from tierwise.tools import Workspace

FILES = {
    ".gitignore": "*.pyc\n.coverage\n.pytest_cache/\n__pycache__/\nbuild/\ndist/\n",
    "README.md": (
        "# web\n\nA client. Timeouts: every request has a timeout; the default timeout is five seconds.\n"
        "Pass timeout=None to disable the timeout, or a Timeout to set connect and read timeouts.\n"
        "Timeouts raise TimeoutException. See the timeout docs for timeout details.\n"
    ),
    "web/__init__.py": "from web._client import Client\nfrom web._config import Timeout\n",
    "web/_config.py": (
        "import ssl\n\n\nclass Timeout:\n    def __init__(self, timeout=5.0, *, connect=None, read=None):\n"
        "        self.connect = connect if connect is not None else timeout\n"
        "        self.read = read if read is not None else timeout\n\n\n"
        "def create_ssl_context(verify=True):\n    return ssl.create_default_context()\n\n\n"
        "DEFAULT_TIMEOUT_CONFIG = Timeout(timeout=5.0)\nDEFAULT_MAX_REDIRECTS = 20\n"
    ),
    "web/_client.py": (
        "from web._config import DEFAULT_MAX_REDIRECTS, DEFAULT_TIMEOUT_CONFIG\n\n\nclass Client:\n"
        "    def __init__(self, timeout=DEFAULT_TIMEOUT_CONFIG, max_redirects=DEFAULT_MAX_REDIRECTS):\n"
        "        self.timeout = timeout\n        self.max_redirects = max_redirects\n\n"
        "    def send(self, request, timeout=None):\n        timeout = timeout or self.timeout\n"
        "        return self._send_handling_redirects(request, timeout)\n\n"
        "    def _send_handling_redirects(self, request, timeout):\n"
        "        for _ in range(self.max_redirects):\n            pass\n"
    ),
    "web/_auth.py": (
        "import hashlib\n\n\nclass DigestAuth:\n    def _build_auth_header(self, challenge):\n"
        "        return hashlib.md5(challenge).hexdigest()\n"
    ),
    "tests/test_timeouts.py": (
        "from web import Timeout\n\n\ndef test_timeout_default():\n    assert Timeout().read == 5.0\n\n\n"
        "def test_timeout_override():\n    timeout = Timeout(1.0)\n    assert timeout.connect == 1.0\n\n\n"
        "def test_timeouts_none():\n    assert Timeout(None).read is None  # timeout timeout timeout\n"
    ),
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Where are timeouts configured?", "web/_config.py"),
        ("What is the maximum number of redirects?", "web/_config.py"),
        ("How does digest authentication build its header?", "web/_auth.py"),
        ("Where is the SSL context created?", "web/_config.py"),
        ("Which tests cover timeouts?", "tests/test_timeouts.py"),
    ],
)
def test_the_defining_file_ranks_in_the_top_three(repo: Path, question: str, expected: str) -> None:
    top = [path for path, _ in rank_files(Workspace(repo), question)][:3]
    assert expected in top, top


def test_definitions_beat_word_counts(repo: Path) -> None:
    """The README and the tests say "timeout" most; the module defining Timeout comes first."""
    ranked = rank_files(Workspace(repo), "Where are timeouts configured?")
    assert ranked[0][0] == "web/_config.py"
    assert ranked.index(next(r for r in ranked if r[0] == "README.md")) > 0
    assert query_terms("Where are timeouts configured?") == ["timeout", "configur"]


def test_an_irrelevant_pick_is_a_hint_only(repo: Path) -> None:
    ranked = dict(rank_files(Workspace(repo), "Where are timeouts configured?", hints=[".gitignore"]))
    assert ranked[".gitignore"] < ranked["web/_config.py"]


async def test_planner_pick_of_gitignore_does_not_outrank_the_relevant_file(
    repo: Path, chaos_server: ChaosServer, tmp_path: Path
) -> None:
    """The issue's case end to end: the planner picks .gitignore; the assistant inspects _config.py first."""
    toml = tmp_path / "tierwise.toml"
    toml.write_text(chaos_config(chaos_server.base_url, f"sqlite:///{tmp_path}/ledger.db"))
    plan = {"mode": "answer", "searches": ["timeout"], "files": [".gitignore"], "focus": "timeouts"}
    chaos_server.set_script(
        {
            "rules": [
                {"match": {"system_contains": "You plan"}, "reply": {"json": plan}},
                {"match": {"system_contains": "senior engineer"}, "reply": {"text": "In web/_config.py."}},
                {"match": {"model": "mini-model"}, "reply": {"text": "Timeout is defined here"}},
            ]
        }
    )
    request = "Where are timeouts configured?"
    ws = coding_assistant.check_inputs(repo, request)
    async with (
        Session(toml) as s,
        s.run(coding_assistant.SYSTEM, request, metadata=coding_assistant.run_metadata(ws)) as scope,
    ):
        result = await coding_assistant.run(scope, ws, request)
    paths = [f.path for f in result.files]
    assert paths[0] == "web/_config.py", paths
    assert ".gitignore" not in paths or paths.index(".gitignore") > paths.index("web/_client.py")
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    (search,) = [st for st in ledger.steps(result.run_id) if st.step_id == "search"]
    ledger.close()
    assert json.loads(search.output or "[]")[0][0] == "web/_config.py"
