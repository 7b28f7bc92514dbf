"""Not collected by the suite (its name does not start with ``test_``): run on purpose by
``tests/test_secrets_scan.py`` to prove the end-of-session scan fails a run that leaks a planted secret."""

from __future__ import annotations

import os
from pathlib import Path


def test_writes_a_planted_secret(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "leak.log").write_text("token " + os.environ["TIERWISE_PLANTED_TOKEN"] + "\n")
