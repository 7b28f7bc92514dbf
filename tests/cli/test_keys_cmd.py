"""`tierwise keys` as a user runs it: create shows the key once, list never shows it, revoke, bad names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import secrets_scan
from tests.conftest import chaos_config
from tests.conftest import tw as run_cli
from tierwise.ledger import keys
from tierwise.testing import ChaosServer


def tw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, timeout=120)


@pytest.fixture()
def workdir(tmp_path: Path, chaos_server: ChaosServer) -> Path:
    (tmp_path / "tierwise.toml").write_text(
        chaos_config(chaos_server.base_url, "sqlite:///.tierwise/ledger.db")
    )
    return tmp_path


def test_create_list_revoke(workdir: Path) -> None:
    made = tw("keys", "create", "ci-bot", "--budget", "5", "--period", "day", "--rpm", "60", cwd=workdir)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("tw-") and len(secret) > 40 and "\n" not in secret  # alone on stdout
    assert "only time the key is shown" in made.stderr and "ci-bot" in made.stderr
    admin = tw("keys", "create", "ops", "--admin", cwd=workdir)
    assert admin.returncode == 0, admin.stderr

    listed = tw("keys", "list", "--json", cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    bot = rows["ci-bot"]
    assert (bot["budget_usd"], bot["period"], bot["rpm"], bot["status"]) == (5.0, "day", 60, "active")
    assert bot["spent_usd"] == 0 and secret.startswith(bot["prefix"]) and len(bot["prefix"]) < 12
    assert rows["ops"]["admin"] is True and rows["ops"]["budget_usd"] is None
    human = tw("keys", "list", cwd=workdir)
    assert "ci-bot" in human.stdout and "$5/day" in human.stdout and "active" in human.stdout
    for out in (listed, human):
        assert secret not in out.stdout + out.stderr and secret[len(bot["prefix"]) :] not in out.stdout

    gone = tw("keys", "revoke", "ci-bot", cwd=workdir)
    assert gone.returncode == 0 and "revoked key ci-bot" in gone.stdout
    again = tw("keys", "revoke", bot["id"], cwd=workdir)  # by id, a second time
    assert again.returncode == 0 and "already revoked" in again.stdout
    rows = {r["name"]: r for r in json.loads(tw("keys", "list", "--json", cwd=workdir).stdout)}
    assert rows["ci-bot"]["status"] == "revoked" and rows["ops"]["status"] == "active"

    engine = keys.open_engine(f"sqlite:///{workdir}/.tierwise/ledger.db")
    stored = keys.find_key(engine, "ci-bot")
    engine.dispose()
    assert stored.secret_sha256 == keys.secret_hash(secret)
    # Only the hash is kept: the key is in no file under the work directory (the ledger included).
    assert secrets_scan.scan_tree(workdir, [secret, secret[3:]]) == {}


@pytest.mark.parametrize("name", ["evil\r\nX-Admin: 1", "caf\u00e9", "a" * 65, "two words", ""])
def test_bad_names_are_one_line_and_exit_2(workdir: Path, name: str) -> None:
    out = tw("keys", "create", name, cwd=workdir)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: key name") and "letters, digits" in lines[0]


def test_duplicates_unknown_keys_and_bad_limits(workdir: Path) -> None:
    assert tw("keys", "create", "dup", cwd=workdir).returncode == 0
    dup = tw("keys", "create", "dup", cwd=workdir)
    assert dup.returncode == 2 and "exists already" in dup.stderr and dup.stdout == ""
    missing = tw("keys", "revoke", "nobody", cwd=workdir)
    assert missing.returncode == 2 and "no key named 'nobody'" in missing.stderr
    for args in (["--budget", "0"], ["--budget", "nan"], ["--period", "week"], ["--rpm", "0"]):
        bad = tw("keys", "create", "x", *args, cwd=workdir)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    empty = json.loads(tw("keys", "list", "--json", cwd=workdir).stdout)
    assert [r["name"] for r in empty] == ["dup"]
