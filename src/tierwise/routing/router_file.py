"""Trained router files: one pickle-free ``.npz`` (arrays plus a JSON header naming its format), and the
one-line errors for a file that is missing, damaged, of another router, or of an unknown version.

Each router that trains into a file (``learned``, ``cascade+``) owns its format name; the header's
``format`` is ``<name>/<version>``, so a file of one router handed to another says which it is.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.errors import ConfigError

# format name -> (the router that reads it, the command that writes it)
ROUTERS = {
    "tierwise-learned-router": ("learned", "tierwise eval train"),
    "tierwise-cascade-routing": ("cascade+", "tierwise eval train --router cascade+"),
}


def npz_path(path: str | Path) -> Path:
    """``path`` with an ``.npz`` suffix (numpy would add one anyway)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    return path


def write(path: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    path = npz_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def read(path: str | Path, formats: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a router file whose format is one of ``formats`` (the first: the current one);
    anything else is a ``ConfigError`` naming the problem and the fix."""
    path = Path(path)
    router, command = ROUTERS[formats[0].split("/")[0]]
    if not path.is_file():
        raise ConfigError(f"{router} router file not found: {path} (create it with `{command}`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            f"{path} is not a tierwise router file ({exc}): create it with `{command}`"
        ) from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if found in formats:
        return meta, arrays
    other = ROUTERS.get(str(found).split("/")[0])
    if other is not None and other[0] != router:
        raise ConfigError(
            f"{path} is a {other[0]} router file, not a {router} one: set routing.router = "
            f'"{other[0]}" to deploy it, or train a {router} router with `{command}`'
        )
    raise ConfigError(f"{path}: format {found!r}, expected {formats[0]!r}; re-run `{command}`")
