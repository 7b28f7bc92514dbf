"""The framework versions an integration was built against: checked once, at import, in one line."""

from __future__ import annotations

import re
from importlib import metadata

from tierwise.errors import ConfigError


def _parse(version: str) -> tuple[int, ...]:
    # Release numbers only: "0.24.0rc1" compares as (0, 24, 0), good enough for a supported range.
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])


def require(dist: str, *, at_least: str, below: str, extra: str) -> str:
    """The installed version of ``dist``, or a ConfigError naming the range and the install command."""
    fix = f"pip install 'tierwise[{extra}]'"
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"{dist} is not installed: {fix}") from None
    if not _parse(at_least) <= _parse(version) < _parse(below):
        raise ConfigError(
            f"{dist} {version} is outside the supported range >={at_least},<{below}: {fix} "
            f"(or pip install '{dist}>={at_least},<{below}')"
        )
    return version
