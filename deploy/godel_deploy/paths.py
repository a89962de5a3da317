"""Locate the repository checkout and its cache/data directories."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_dir", "repo_root"]

_MARKER = Path("deploy") / "kafka" / "pom.xml"


def repo_root() -> Path:
    """The Godel checkout: ``$GODEL_REPO_ROOT``, else the first ancestor of this
    package or of the working directory that contains ``deploy/kafka/pom.xml``.
    """
    env = os.environ.get("GODEL_REPO_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / _MARKER).is_file():
                return candidate
    raise FileNotFoundError(
        f"cannot find the Godel checkout (no ancestor contains {_MARKER}); set GODEL_REPO_ROOT"
    )


def cache_dir() -> Path:
    """``<repo>/.cache`` — downloaded artefacts, safe to delete."""
    return repo_root() / ".cache"


def data_dir() -> Path:
    """``<repo>/.data`` — state of locally run servers, safe to delete."""
    return repo_root() / ".data"
