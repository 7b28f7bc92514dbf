"""The README's examples run as written: every ``$ tierwise`` line of its "Using it" block, in a real
process, against the chaos server (not the embedded model, to stay fast), with the files the examples name
(``examples/urgency.json``) taken from the repository as shipped."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.conftest import chaos_config, tw
from tierwise.testing import ChaosServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Long-running servers are not examples a test can run to completion.
SKIP = ("chaos-server",)


def readme_examples(section: str = "## Using it") -> list[tuple[list[str], str]]:
    """``(argv after "tierwise", the comment)`` for each ``$ tierwise`` line of the section's first block."""
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    block = re.search(r"```console\n(.*?)```", text[start:], re.S)
    assert block is not None, f"no console block under {section!r}"
    out = []
    for line in block.group(1).splitlines():
        if not line.startswith("$ tierwise "):
            continue
        command, _, comment = line[2:].partition("  #")
        argv = shlex.split(command)[1:]
        if argv[0] not in SKIP:
            out.append((argv, comment.strip()))
    return out


EXAMPLES = readme_examples()


def test_the_using_it_block_covers_the_everyday_commands() -> None:
    assert {argv[0] for argv, _ in EXAMPLES} >= {"route", "ask", "models", "runs", "spend"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the whole block, so `runs` and `spend` see what `ask` recorded."""
    root = tmp_path_factory.mktemp("readme")
    for argv, _ in EXAMPLES:  # the files the examples name, copied from the repository as shipped
        for arg in argv:
            if arg.startswith("examples/"):
                assert (ROOT / arg).is_file(), f"the README names {arg}, which is not shipped"
                (root / arg).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / arg, root / arg)
    return root


@pytest.mark.parametrize(("argv", "comment"), EXAMPLES, ids=[" ".join(a)[:60] for a, _ in EXAMPLES])
def test_readme_example_runs_as_written(
    argv: list[str], comment: str, workdir: Path, chaos_server: ChaosServer
) -> None:
    (workdir / "tierwise.toml").write_text(
        chaos_config(chaos_server.base_url, f"sqlite:///{workdir}/ledger.db")
    )
    if argv[0] in ("runs", "spend"):  # something to list, whichever order the examples run in
        seeded = tw("ask", "hello", "--tier", "mini", cwd=workdir)
        assert seeded.returncode == 0, seeded.stderr
    out = tw(*argv, cwd=workdir, env={"COLUMNS": "80"}, timeout=180)
    assert out.returncode == 0, f"{argv}: {out.stderr}"
    assert "Traceback" not in out.stderr
    if "--json" in argv:
        data = json.loads(out.stdout)
        if argv[0] == "ask" and "--schema" in argv:
            schema = json.loads((workdir / argv[argv.index("--schema") + 1]).read_text())
            assert set(data["output"]) == set(schema["required"])
            assert data["output"]["urgency"] in schema["properties"]["urgency"]["enum"]
    else:
        assert out.stdout.strip()
    if argv[0] == "route" and (tier := re.match(r"→ (\w+)", comment)):
        assert out.stdout.split()[0] == tier.group(1), out.stdout  # the tier the comment promises
