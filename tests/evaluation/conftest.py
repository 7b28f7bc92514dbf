"""Fixtures for the evaluation tests: the shared outcome data and a private embedding cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tierwise.evaluation.datasets import data_dir


@pytest.fixture(scope="session")
def outcomes_dir() -> Path:
    try:
        return data_dir() / "outcomes"
    except Exception:
        pytest.skip("the shared evaluation data (../shared/data) is not available")


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Embeddings computed by tests go to a temporary cache, not the user's ~/.cache/tierwise."""
    root = tmp_path_factory.getbasetemp() / "tierwise-cache"
    monkeypatch.setenv("TIERWISE_CACHE_DIR", str(root))
    yield root
