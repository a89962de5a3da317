"""Login sessions of the client: ``godel login`` keeps the tokens it gets in ``sessions.json`` beside
the config file (``$XDG_CONFIG_HOME/godel/``, see :mod:`godel_client.config`; the folder mode 700,
the file mode 600), one session per profile and gateway address, and every later command, and any
``GodelClient()`` that finds no credential before it, sends the access token as
``authorization: Bearer``.

The access token lives minutes, the refresh token days. A client exchanges the refresh token for a
new pair shortly before the access token expires, or when the server refuses the access token
(:class:`LoginSession`; the connections of :mod:`godel_client.service` do the exchange, blocking or
awaited). Refresh tokens are used once: a file lock keeps two commands refreshing at the same moment
from presenting the same one (the server would take that for a replay and end the session), and a
command that finds the session already refreshed by another takes the new tokens.

A session is kept per profile, so that two profiles can be two users of one mesh, and per address
(``https://`` addresses apart from plaintext ones), so that a token is only sent where it was
issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from godel.v1 import auth_service_pb2
from godel_client import config
from godel_client.errors import AuthError, ConfigError, GodelError

FILE_NAME = "sessions.json"
# Refresh this long before the access token expires (clock skew, a slow call).
REFRESH_MARGIN = timedelta(seconds=30)
# How long an asyncio client waits for another process's refresh before it gives up.
LOCK_WAIT_SECONDS = 30.0
_LOCK_POLL_SECONDS = 0.05

if sys.platform == "win32":

    def _try_lock(fd: int, *, blocking: bool) -> bool:
        return True  # no advisory lock: two commands refreshing at once may end the session

else:
    import fcntl

    def _try_lock(fd: int, *, blocking: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def endpoint(address: str, tls: bool) -> str:
    """The key of a gateway's sessions: its ``host:port``, with ``https://`` when it is TLS."""
    return f"https://{address}" if tls else address


@dataclass(frozen=True)
class StoredSession:
    """The tokens of one login, as kept on disk."""

    username: str
    access_token: str
    expires_at: str
    refresh_token: str
    refresh_expires_at: str

    @classmethod
    def from_login(cls, response: auth_service_pb2.LoginResponse) -> StoredSession:
        return cls(
            username=response.user.username,
            access_token=response.access_token,
            expires_at=response.expires_at.ToDatetime(tzinfo=UTC).isoformat(),
            refresh_token=response.refresh_token,
            refresh_expires_at=response.refresh_expires_at.ToDatetime(tzinfo=UTC).isoformat(),
        )

    def needs_refresh(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= datetime.fromisoformat(self.expires_at) - REFRESH_MARGIN


@dataclass(frozen=True)
class SessionStore:
    """The login sessions of one user of this machine, by profile and gateway address."""

    path: Path

    @classmethod
    def default(cls, env: Mapping[str, str] | None = None) -> SessionStore:
        """The store beside the config file (``$GODEL_CONFIG``'s folder, else the user's config dir)."""
        return cls(config.config_path(env).parent / FILE_NAME)

    def get(self, profile: str, at: str) -> StoredSession | None:
        entry = self._read().get(profile, {}).get(at)
        if not isinstance(entry, dict):
            return None
        try:
            return StoredSession(**{f.name: str(entry[f.name]) for f in fields(StoredSession)})
        except KeyError:
            return None

    def put(self, profile: str, at: str, session: StoredSession) -> None:
        sessions = self._read()
        sessions.setdefault(profile, {})[at] = asdict(session)
        self._write(sessions)

    def remove(self, profile: str, at: str) -> bool:
        sessions = self._read()
        if sessions.get(profile, {}).pop(at, None) is None:
            return False
        if not sessions[profile]:
            del sessions[profile]
        self._write(sessions)
        return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Holds the store's lock (a refresh reads, exchanges and writes under it), blocking."""
        fd = self._lock_file()
        try:
            _try_lock(fd, blocking=True)
            yield
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def locked_async(self) -> AsyncIterator[None]:
        """The same lock for an event loop: polled, so that a coroutine holding it (awaiting its
        refresh) goes on while others wait."""
        fd = self._lock_file()
        try:
            deadline = time.monotonic() + LOCK_WAIT_SECONDS
            while not _try_lock(fd, blocking=False):
                if time.monotonic() > deadline:
                    raise ConfigError(f"the login sessions in {self.path} stayed locked")
                await asyncio.sleep(_LOCK_POLL_SECONDS)
            yield
        finally:
            os.close(fd)

    def _lock_file(self) -> int:
        self._ensure_dir()
        return os.open(self.path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the login sessions in {self.path}: {exc}") from None
        sessions = document.get("sessions") if isinstance(document, dict) else None
        if not isinstance(sessions, dict):
            return {}
        return {
            name: dict(by_address) for name, by_address in sessions.items() if isinstance(by_address, dict)
        }

    def _write(self, sessions: dict[str, dict[str, Any]]) -> None:
        self._ensure_dir()
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"version": 1, "sessions": sessions}, out, indent=2)
        os.replace(temporary, self.path)

    def _ensure_dir(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass(frozen=True)
class SavedSession:
    """A session found for a connection: where it is kept, and its tokens as they were read."""

    store: SessionStore
    profile: str
    endpoint: str
    tokens: StoredSession


class LoginSession:
    """The credential of a saved session as a connection uses it: the current access token, whether
    it is due for a refresh, and the steps of a refresh, which a connection runs under the store's
    lock around its RefreshToken call (see ``Connection.refresh``)."""

    def __init__(self, saved: SavedSession) -> None:
        self.store = saved.store
        self._profile = saved.profile
        self._endpoint = saved.endpoint
        self.tokens = saved.tokens

    @property
    def access_token(self) -> str:
        return self.tokens.access_token

    def due(self) -> bool:
        return self.tokens.needs_refresh()

    def claim(self, *, force: bool) -> str | None:
        """Under the lock: the refresh token to exchange now, or None when there is nothing to do
        (the stored session is fresh, e.g. another command refreshed it meanwhile: it is taken)."""
        stored = self.store.get(self._profile, self._endpoint)
        if stored is None:
            raise AuthError(
                "UNAUTHENTICATED",
                f"not logged in to {self._endpoint} (logged out meanwhile?): run `godel login`",
            )
        if stored.refresh_token != self.tokens.refresh_token and not stored.needs_refresh():
            self.tokens = stored
            return None
        if not force and not stored.needs_refresh():
            self.tokens = stored
            return None
        return stored.refresh_token

    def renewed(self, response: auth_service_pb2.LoginResponse) -> None:
        """Under the lock: keeps the new pair."""
        self.tokens = StoredSession.from_login(response)
        self.store.put(self._profile, self._endpoint, self.tokens)

    def ended(self, error: GodelError) -> GodelError:
        """The error to raise when the exchange failed: a refused refresh token (expired, revoked,
        the user disabled) ends the session, which is forgotten; anything else (the mesh is
        unreachable) keeps it for the next try."""
        if not isinstance(error, AuthError):
            return error
        self.store.remove(self._profile, self._endpoint)
        return AuthError(
            error.code,
            f"your login session on {self._endpoint} has ended ({error.server_message}): "
            "run `godel login` again",
            error.details,
            status=error.status,
        )
