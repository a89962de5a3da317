"""Profiles: named connection settings in the user's config file, so that an installed ``godel`` (or
a ``GodelClient()``) knows where the mesh is and which credential to present.

The file is ``$GODEL_CONFIG``, else ``$XDG_CONFIG_HOME/godel/config.toml`` (``~/.config/godel/
config.toml``; ``%APPDATA%\\godel\\config.toml`` on Windows). ``godel config set`` writes it, with
mode 600 since it holds credentials::

    default_profile = "prod"

    [profiles.prod]
    endpoint = "https://godel.example.com:443"
    api_key = "godel_sk_..."
    tls_ca = "/etc/godel/ca.pem"

The profile used is the one named (``--profile``, ``profile=``), else ``$GODEL_PROFILE``, else the
file's ``default_profile``, else ``default``. Settings are strings; ``PROFILE_KEYS`` lists them.
A profile may also have login sessions (``godel --profile NAME login``), kept in ``sessions.json``
beside the file because a client rewrites them as it refreshes them (see
:mod:`godel_client.sessions`).
The TLS files (``tls_ca``, ``tls_cert``, ``tls_key``; see :mod:`godel_client.credentials`) are
stored as absolute paths, so that the profile works from any directory.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from godel_client.errors import ConfigError

CONFIG_ENV = "GODEL_CONFIG"
PROFILE_ENV = "GODEL_PROFILE"
DEFAULT_PROFILE = "default"
# What a profile may hold: the gateway address, a credential (an API key, or a token got
# elsewhere), and the TLS files (PEM): the CA, a client certificate and its key. The sessions of
# `godel login` are kept apart, in sessions.json beside this file (godel_client.sessions).
PROFILE_KEYS = ("endpoint", "api_key", "token", "tls_ca", "tls_cert", "tls_key")
SECRET_KEYS = frozenset({"api_key", "token"})
FILE_KEYS = frozenset({"tls_ca", "tls_cert", "tls_key"})
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_VALUE_LENGTH = 4096


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the config file is (it need not exist)."""
    environ = os.environ if env is None else env
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    if sys.platform == "win32" and environ.get("APPDATA"):
        return Path(environ["APPDATA"]) / "godel" / "config.toml"
    base = environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "godel" / "config.toml"


@dataclass
class Config:
    """The config file's content: the profiles by name and the default one."""

    profiles: dict[str, dict[str, str]] = field(default_factory=dict)
    default_profile: str = ""

    def chosen(self, name: str | None, env: Mapping[str, str] | None = None) -> str:
        """The name of the profile in use: ``name``, else ``$GODEL_PROFILE``, else the default."""
        environ = os.environ if env is None else env
        return name or environ.get(PROFILE_ENV) or self.default_profile or DEFAULT_PROFILE


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"invalid profile name {name!r}: use 1-64 letters, digits, '-' or '_'")
    return name


def check_key(key: str) -> str:
    if key not in PROFILE_KEYS:
        raise ConfigError(f"unknown setting {key!r}: one of {', '.join(PROFILE_KEYS)}")
    return key


def load(path: Path) -> Config:
    """The config at ``path`` (empty when the file does not exist)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(f"{path}: [profiles.NAME] tables expected")
    default = document.get("default_profile", "")
    return Config(
        {
            name: {k: str(v) for k, v in values.items() if k in PROFILE_KEYS}
            for name, values in profiles.items()
        },
        default if isinstance(default, str) else "",
    )


def profile(name: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings of the profile in use; {} when there is none, unless it was named explicitly."""
    path = config_path(env)
    config = load(path)
    chosen = config.chosen(name, env)
    if chosen not in config.profiles and (name or (os.environ if env is None else env).get(PROFILE_ENV)):
        raise ConfigError(
            f"no profile {chosen!r} in {path} (create it with `godel --profile {chosen} config set ...`)"
        )
    return config.profiles.get(chosen, {})


def _toml(config: Config) -> str:
    # JSON string literals are valid TOML basic strings; names are checked to be bare keys.
    lines = ["# Godel client profiles (`godel config set|unset|use|show`)."]
    if config.default_profile:
        lines.append(f"default_profile = {json.dumps(config.default_profile)}")
    for name, values in sorted(config.profiles.items()):
        lines += ["", f"[profiles.{check_name(name)}]"]
        lines += [f"{key} = {json.dumps(values[key])}" for key in PROFILE_KEYS if key in values]
    return "\n".join(lines) + "\n"


def save(path: Path, config: Config) -> None:
    """Writes the config atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_toml(config))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def set_value(name: str, key: str, value: str, env: Mapping[str, str] | None = None) -> Path:
    """Sets ``key`` of profile ``name`` (created if new); returns the file written."""
    check_name(name)
    check_key(key)
    if not value.strip() or len(value) > MAX_VALUE_LENGTH or "\n" in value:
        raise ConfigError(f"{key}: give a value of one line, at most {MAX_VALUE_LENGTH} characters")
    value = value.strip()
    if key in FILE_KEYS:
        file = Path(value).expanduser().resolve()
        if not file.is_file():
            raise ConfigError(f"{key}: no file {file}")
        value = str(file)
    path = config_path(env)
    config = load(path)
    config.profiles.setdefault(name, {})[key] = value
    save(path, config)
    return path


def unset_value(name: str, key: str, env: Mapping[str, str] | None = None) -> Path:
    """Removes ``key`` from profile ``name`` (nothing to do when it is not set)."""
    check_key(key)
    path = config_path(env)
    config = load(path)
    if key in config.profiles.get(name, {}):
        del config.profiles[name][key]
        save(path, config)
    return path


def use(name: str, env: Mapping[str, str] | None = None) -> Path:
    """Makes ``name`` the default profile; it must exist."""
    path = config_path(env)
    config = load(path)
    if check_name(name) not in config.profiles:
        raise ConfigError(f"no profile {name!r} in {path}")
    config.default_profile = name
    save(path, config)
    return path
