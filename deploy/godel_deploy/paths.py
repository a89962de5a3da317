"""Where the local launchers keep downloads and server data: in a checkout, its `.cache` and `.data`;
installed from a wheel (no checkout), `$GODEL_CACHE_DIR` (default ~/.cache/godel) and ~/.godel."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ASSETS", "cache_dir", "data_dir", "repo_root"]

_MARKER = Path("deploy") / "kafka" / "pom.xml"
# Files the package ships (symlinks to the originals in a checkout).
ASSETS = Path(__file__).resolve().parent / "assets"


def repo_root() -> Path | None:
    """The Godel checkout: ``$GODEL_REPO_ROOT``, else the first ancestor of this package or of the
    working directory that contains ``deploy/kafka/pom.xml``; None when there is none (a wheel)."""
    env = os.environ.get("GODEL_REPO_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / _MARKER).is_file():
                return candidate
    return None


def cache_dir() -> Path:
    """Downloaded artefacts, safe to delete: ``$GODEL_CACHE_DIR``, ``<repo>/.cache`` or ~/.cache/godel."""
    env = os.environ.get("GODEL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return root / ".cache" if root else Path.home() / ".cache" / "godel"


def data_dir() -> Path:
    """State of locally run servers, safe to delete: ``<repo>/.data``, or ~/.godel without a checkout."""
    root = repo_root()
    return root / ".data" if root else Path.home() / ".godel"
