"""The API keys the launcher saves: the admin key for the user and the keys of the mesh's own
processes (the team service's, the workers'). A key belongs to one database, the cluster service's,
so the launcher keeps one set of keys per database:

- `<home>/<name>.key` (mode 600) is the secret for the database in use, readable as
  `KEY=$(cat .data/admin.key)`; `<home>/<name>.key.json` says which database it belongs to;
- the keys of the other databases wait in `<home>/keys/<database>/` until the mesh uses that database
  again, so switching `GODEL_DATABASE_URL` back and forth never loses a key.

The launcher then checks each saved key with the cluster service it started
(AuthService.Authenticate) and replaces one the service does not accept: unknown (another or a reset
database), revoked, expired, or of the wrong role."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import grpc
from sqlalchemy.engine import make_url

from godel.v1 import auth_service_pb2, auth_service_pb2_grpc
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.tls import open_sync_channel

STASH = "keys"
# Where a key saved before keys named their database goes when the cluster service refuses it.
UNIDENTIFIED = "unidentified"


def database_identity(url: str) -> str:
    """The database a cluster-service URL names, without its password (it is written to disk)."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return f"sqlite:{Path(parsed.database or '').resolve()}"
    host = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    user = f"{parsed.username}@" if parsed.username else ""
    return f"postgresql://{user}{host}/{parsed.database}"


def _slug(database: str) -> str:
    """A directory name for a database: its kind, a readable tail and a hash that keeps it unique."""
    kind, _, rest = database.partition(":")
    tail = re.sub(r"[^A-Za-z0-9.]+", "_", rest).strip("_")[-40:]
    return f"{kind}-{tail}-{hashlib.sha256(database.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Selected:
    """The saved key of one name for the database in use, and what was moved to get it there."""

    secret: str | None
    # The key file had no database recorded (saved by an older launcher).
    unidentified: bool = False
    # Where the key of another database was moved, if one was, and that database.
    stashed: Path | None = None
    stashed_database: str | None = None
    # The key was brought back from this database's earlier use.
    restored: bool = False


class KeyFiles:
    """The key files of one home directory, for one database."""

    def __init__(self, home: Path, database: str) -> None:
        self.home = home
        self.database = database

    def path(self, name: str) -> Path:
        return self.home / f"{name}.key"

    def _sidecar(self, path: Path) -> Path:
        return path.with_name(path.name + ".json")

    def stash_dir(self, database: str) -> Path:
        return self.home / STASH / _slug(database)

    def owner(self, name: str) -> str | None:
        """The database the key file of `name` belongs to (None: not recorded)."""
        try:
            return str(json.loads(self._sidecar(self.path(name)).read_text())["database"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def select(self, name: str) -> Selected:
        """Makes `<name>.key` the key of this database: another database's key moves to the stash,
        this database's comes back from it. Returns the secret now saved (None: there is none)."""
        path = self.path(name)
        owner = self.owner(name) if path.exists() else None
        if path.exists():
            if owner is None:
                return Selected(_read(path), unidentified=True)
            if owner == self.database:
                return Selected(_read(path))
        stashed = self._move(path, self.stash_dir(owner) / path.name) if owner else None
        kept = self.stash_dir(self.database) / path.name
        if kept.exists():
            self._move(kept, path)
            return Selected(_read(path), stashed=stashed, stashed_database=owner, restored=True)
        return Selected(None, stashed=stashed, stashed_database=owner)

    def set_aside_unidentified(self, name: str) -> Path:
        """Moves a key file of unknown database out of the way (it may belong to another database)."""
        return self._move(self.path(name), self.home / STASH / UNIDENTIFIED / f"{name}.key")

    def save(self, name: str, secret: str, role: str) -> Path:
        path = self.path(name)
        _write_private(path, secret + "\n")
        _write_private(self._sidecar(path), json.dumps({"database": self.database, "role": role}) + "\n")
        return path

    def _move(self, source: Path, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        source.replace(target)
        sidecar = self._sidecar(source)
        if sidecar.exists():
            sidecar.replace(self._sidecar(target))
        return target


def _read(path: Path) -> str | None:
    return path.read_text().strip() or None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def key_problem(
    cluster_addr: str, secret: str, role: str, timeout: float = 10.0, *, tls: TlsSettings | None = None
) -> str | None:
    """Why the cluster service at `cluster_addr` does not accept `secret` as a key of `role`
    (None: it does). Raises grpc.RpcError when the service cannot answer."""
    with open_sync_channel(cluster_addr, tls or TlsSettings()) as channel:
        try:
            reply = auth_service_pb2_grpc.AuthServiceStub(channel).Authenticate(
                auth_service_pb2.AuthenticateRequest(credential=secret), timeout=timeout
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                details = exc.details() or "invalid API key"
                return "expired" if "expired" in details else "unknown to this database, or revoked"
            raise
    if reply.role != role:
        return f"of role {reply.role!r}, not {role!r}"
    return None
