"""Where the client connects and which API key it presents.

Address: the explicit argument, else ``GODEL_ADDR``, else ``127.0.0.1:7373`` (the Envoy gateway).

API key, first found wins: the explicit argument, ``GODEL_API_KEY``, the file named by
``GODEL_CREDENTIALS_FILE``, ``$GODEL_HOME/admin.key`` (``make up`` writes the admin key there;
``GODEL_HOME`` defaults to the repository's ``.data`` directory).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from godel_client.errors import ConfigError

DEFAULT_ADDRESS = "127.0.0.1:7373"
ADMIN_KEY_FILE = "admin.key"


def resolve_address(address: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``host:port`` of the gateway; a plain ``http://host:port/`` URL is accepted too."""
    environ = os.environ if env is None else env
    chosen = (address or environ.get("GODEL_ADDR") or DEFAULT_ADDRESS).strip()
    return chosen.removeprefix("http://").rstrip("/") or DEFAULT_ADDRESS


def godel_home(env: Mapping[str, str] | None = None) -> Path:
    """``GODEL_HOME``, or the ``.data`` directory at the root of this checkout."""
    environ = os.environ if env is None else env
    configured = environ.get("GODEL_HOME")
    if configured:
        return Path(configured).expanduser()
    # clients/python/godel_client/credentials.py -> the repository root is three levels up.
    return Path(__file__).resolve().parents[3] / ".data"


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror or exc}") from exc


def resolve_api_key(api_key: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The API key to send, or None when there is none (public calls still work)."""
    environ = os.environ if env is None else env
    if api_key:
        return api_key
    from_env = environ.get("GODEL_API_KEY", "").strip()
    if from_env:
        return from_env
    credentials_file = environ.get("GODEL_CREDENTIALS_FILE")
    if credentials_file:
        # Named explicitly, so a missing file is an error rather than a silent fallback.
        return _read_key(Path(credentials_file).expanduser()) or None
    admin_key = godel_home(environ) / ADMIN_KEY_FILE
    if admin_key.is_file():
        return _read_key(admin_key) or None
    return None
