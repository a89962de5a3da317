"""Where the client connects, over what, and which credential it presents; the first found wins.

Address: the explicit argument (``--addr``), ``$GODEL_ADDR``, the profile's ``endpoint``,
``127.0.0.1:7373`` (the gateway of ``make up``). ``http://host:port`` and a bare ``host:port`` are
plaintext, ``https://host:port`` is TLS.

TLS files (PEM), each: the explicit argument (``--tls-ca``, ``--tls-cert``, ``--tls-key``),
``$GODEL_TLS_CA``/``$GODEL_TLS_CERT``/``$GODEL_TLS_KEY``, the profile's ``tls_ca``/``tls_cert``/
``tls_key``. The CA verifies the gateway's certificate (without one: the system's CAs); a
certificate and its key are presented as the client's. Given explicitly (or in the profile whose
endpoint is used), they make a bare ``host:port`` TLS too, and are refused with ``http://``; the
profile's give way to an address named by ``--addr`` or ``$GODEL_ADDR``, which only uses them
(for ``https://``).

Credential: an explicit token (sent as ``authorization: Bearer``), an explicit API key (sent as
``x-api-key``), ``$GODEL_API_KEY``, the file named by ``$GODEL_CREDENTIALS_FILE``, the login
session of the profile for the address (``godel login`` keeps it, see :mod:`godel_client.sessions`;
its access token is sent as a token, refreshed as it expires), the profile's ``token`` or
``api_key`` (see :mod:`godel_client.config`), ``$GODEL_HOME/admin.key``, and in a checkout of Godel
its ``.data/admin.key`` (``make up`` writes the admin key there).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from godel_client import config
from godel_client.errors import ConfigError
from godel_client.sessions import SavedSession, SessionStore, endpoint

DEFAULT_ADDRESS = "127.0.0.1:7373"
ADMIN_KEY_FILE = "admin.key"
# Each TLS setting of a profile with the environment variable that outranks it.
TLS_ENV = {"tls_ca": "GODEL_TLS_CA", "tls_cert": "GODEL_TLS_CERT", "tls_key": "GODEL_TLS_KEY"}


@dataclass(frozen=True)
class ClientTls:
    """TLS of the client's channel: the CA that signed the gateway's certificate (None: the
    system's), and an optional client certificate and its key (PEM files)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            if path is None:
                return None
            try:
                return path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )


@dataclass(frozen=True)
class Target:
    """A resolved connection: the address, TLS (None: plaintext), at most one credential, and where
    the address and the credential came from. A login session's access token is the ``token``,
    and ``session`` where the session is kept (to refresh it)."""

    address: str
    api_key: str | None = None
    token: str | None = None
    address_from: str = "default"
    credential_from: str = "none"
    tls: ClientTls | None = None
    session: SavedSession | None = None
    profile: str = config.DEFAULT_PROFILE


def _address(text: str) -> str:
    """``host:port``; ``http://host:port/`` and ``https://host:port/`` URLs are accepted too."""
    return text.strip().removeprefix("https://").removeprefix("http://").rstrip("/") or DEFAULT_ADDRESS


def _tls(
    address: str,
    address_from: str,
    files: Mapping[str, str | None],
    environ: Mapping[str, str],
    settings: Mapping[str, str],
) -> ClientTls | None:
    """The TLS of a connection to ``address`` (as given, with its scheme), or None for plaintext
    (see the module's docstring for the rules)."""
    found: dict[str, Path] = {}
    explicit = False
    for key, variable in TLS_ENV.items():
        given = (files.get(key) or environ.get(variable) or "").strip()
        explicit = explicit or bool(given)
        value = given or settings.get(key, "").strip()
        if value:
            found[key] = Path(value).expanduser()
    if ("tls_cert" in found) != ("tls_key" in found):
        raise ConfigError("a client certificate needs both --tls-cert and --tls-key")
    # The profile's TLS files decide for the profile's endpoint (or the default one), not for an
    # address named on the command line or in $GODEL_ADDR.
    implied = explicit or (bool(found) and address_from not in ("argument", "GODEL_ADDR"))
    scheme = address.strip().partition("://")[0].lower() if "://" in address else ""
    if scheme == "http":
        if implied:
            raise ConfigError(f"{address.strip()} is plaintext (http://); TLS options need https://")
        return None
    if scheme != "https" and not implied:
        return None
    return ClientTls(found.get("tls_ca"), found.get("tls_cert"), found.get("tls_key"))


def checkout_root() -> Path | None:
    """The root of the Godel checkout this module runs from, None when it is installed."""
    # clients/python/godel_client/credentials.py -> the checkout's root is three levels up.
    package = Path(__file__).resolve().parent
    root = package.parents[2]
    if package.parent.name == "python" and package.parents[1].name == "clients" and (root / "proto").is_dir():
        return root
    return None


def godel_home(env: Mapping[str, str] | None = None) -> Path | None:
    """``$GODEL_HOME``, or the ``.data`` directory of the checkout (None outside one)."""
    environ = os.environ if env is None else env
    configured = environ.get("GODEL_HOME")
    if configured:
        return Path(configured).expanduser()
    root = checkout_root()
    return root / ".data" if root is not None else None


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror or exc}") from exc


def _environment_key(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The API key the environment names, with where it came from."""
    from_env = environ.get("GODEL_API_KEY", "").strip()
    if from_env:
        return from_env, "GODEL_API_KEY"
    credentials_file = environ.get("GODEL_CREDENTIALS_FILE")
    if credentials_file:
        # Named explicitly, so a missing file is an error rather than a silent fallback.
        key = _read_key(Path(credentials_file).expanduser())
        return (key, credentials_file) if key else None
    return None


def _home_key(environ: Mapping[str, str]) -> tuple[str, str] | None:
    home = godel_home(environ)
    admin_key = home / ADMIN_KEY_FILE if home is not None else None
    if admin_key is not None and admin_key.is_file():
        key = _read_key(admin_key)
        return (key, str(admin_key)) if key else None
    return None


def _given_credential(
    api_key: str | None, token: str | None, environ: Mapping[str, str]
) -> tuple[str, str, str] | None:
    """``(kind, value, source)`` of a credential given to this client (argument, environment); kind
    is ``token`` or ``api_key``."""
    if token:
        return "token", token, "argument"
    if api_key:
        return "api_key", api_key, "argument"
    found = _environment_key(environ)
    return ("api_key", *found) if found is not None else None


def _kept_credential(
    environ: Mapping[str, str], settings: Mapping[str, str], profile_name: str
) -> tuple[str, str, str] | None:
    """The credential a profile holds, else the local admin key."""
    for kind in ("token", "api_key"):
        if settings.get(kind):
            return kind, settings[kind], f"profile {profile_name}"
    found = _home_key(environ)
    return ("api_key", *found) if found is not None else None


def _saved_session(target: Target, environ: Mapping[str, str]) -> SavedSession | None:
    """The login session the profile keeps for the target's address, if any."""
    store = SessionStore.default(environ)
    at = endpoint(target.address, target.tls is not None)
    tokens = store.get(target.profile, at)
    return SavedSession(store, target.profile, at, tokens) if tokens is not None else None


def resolve(
    address: str | None = None,
    *,
    api_key: str | None = None,
    token: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """The address, its TLS and the credential to use (see the module's docstring for the order)."""
    environ = os.environ if env is None else env
    settings = config.profile(profile, environ)
    profile_name = config.load(config.config_path(environ)).chosen(profile, environ)
    if address or environ.get("GODEL_ADDR"):
        where, chosen = ("argument" if address else "GODEL_ADDR"), address or environ["GODEL_ADDR"]
    elif settings.get("endpoint"):
        where, chosen = f"profile {profile_name}", settings["endpoint"]
    else:
        where, chosen = "default", DEFAULT_ADDRESS
    files = {"tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key}
    target = Target(
        _address(chosen),
        address_from=where,
        tls=_tls(chosen, where, files, environ, settings),
        profile=profile_name,
    )
    credential = _given_credential(api_key, token, environ)
    if credential is None:
        saved = _saved_session(target, environ)
        if saved is not None:
            source = f"the login session of {saved.tokens.username} (profile {profile_name})"
            return replace(target, token=saved.tokens.access_token, session=saved, credential_from=source)
        credential = _kept_credential(environ, settings, profile_name)
    if credential is None:
        return target
    kind, value, source = credential
    if kind == "token":
        return replace(target, token=value, credential_from=source)
    return replace(target, api_key=value, credential_from=source)
