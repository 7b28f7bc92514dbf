"""Fixtures for the routing tests: a private embedding cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Embeddings computed by tests go to a temporary cache, not the user's ~/.cache/tierwise."""
    root = tmp_path_factory.getbasetemp() / "tierwise-cache"
    monkeypatch.setenv("TIERWISE_CACHE_DIR", str(root))
    yield root
