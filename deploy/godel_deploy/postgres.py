"""A throw-away PostgreSQL server on 127.0.0.1 (or another address, in a network namespace) for
local runs and tests."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .pg_install import ensure_os_user, ensure_postgres_binaries, find_postgres_binaries
from .ports import LOOPBACK, free_port, port_open
from .process import ManagedProcess
from .server import ServerProcess

__all__ = [
    "PostgresServer",
    "ensure_os_user",
    "ensure_postgres_binaries",
    "find_postgres_binaries",
]

SUPERUSER = "postgres"
OS_USER = "postgres"

# Durability is pointless for test databases; these make writes much faster.
FAST_SETTINGS: dict[str, str] = {
    "listen_addresses": LOOPBACK,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def _client_env() -> dict[str, str]:
    """Our environment without PG* variables that would redirect client tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _grant_traverse(path: Path, account: pwd.struct_passwd) -> None:
    """Make sure ``account`` can reach ``path`` (adds the x bit where missing)."""
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == account.pw_uid:
            need = stat.S_IXUSR
        elif st.st_gid in groups:
            need = stat.S_IXGRP
        else:
            need = stat.S_IXOTH
        if not st.st_mode & need:
            print(
                f"godel_deploy: granting '{account.pw_name}' search (x) permission on {directory}",
                file=sys.stderr,
            )
            directory.chmod(stat.S_IMODE(st.st_mode) | need)


class PostgresServer(ServerProcess):
    """PostgreSQL cluster in ``data_dir/pgdata``, server log in ``data_dir/postgres.log``.

    ``initdb`` (trust auth, superuser ``postgres``, UTF8) runs only when the
    cluster does not exist yet, so data survives restarts.  When running as
    root the server runs as the ``postgres`` OS user (created if missing).
    ``host`` is the address it listens on and clients dial; ``netns`` the network
    namespace it runs in (`ip netns exec`); ``clients`` a CIDR whose TCP clients
    are trusted too (pg_hba.conf; by default only local ones are).
    """

    kind = "PostgreSQL server"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        host: str = LOOPBACK,
        netns: str | None = None,
        clients: str | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.host = host
        self.netns = netns
        self.clients = clients
        self.port = port if port is not None else free_port()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self.settings = {**FAST_SETTINGS, "listen_addresses": host, **(settings or {})}
        self._bin_dir = bin_dir
        self._socket_dir: Path | None = None
        self._process: ManagedProcess | None = None
        self._account: pwd.struct_passwd | None = None

    # -- addresses -----------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL: ``postgresql+asyncpg://postgres@127.0.0.1:PORT/dbname``."""
        return f"postgresql+asyncpg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq/asyncpg DSN: ``postgresql://postgres@127.0.0.1:PORT/dbname``."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    # -- setup ---------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = ensure_postgres_binaries()
        return self._bin_dir

    def _tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _run_as(self) -> pwd.struct_passwd | None:
        """The OS account for server processes (None: the current user)."""
        if os.geteuid() != 0:
            return None
        if self._account is None:
            self._account = ensure_os_user(OS_USER)
        return self._account

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        account = self._run_as()
        if account is not None:
            _grant_traverse(self.data_dir, account)
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="godel-pg-"))
        for directory in (self.pgdata, self._socket_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
            directory.chmod(0o700)
            if account is not None:
                os.chown(directory, account.pw_uid, account.pw_gid)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").is_file()

    def _initdb(self) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            shutil.rmtree(self.pgdata)  # left over from an interrupted initdb
            self._prepare_dirs()
        account = self._run_as()
        result = subprocess.run(
            [
                self._tool("initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=self.data_dir,
            env=_client_env(),
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
        if self.clients:
            with (self.pgdata / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.clients} trust\n")

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb once, then launch ``postgres`` in the foreground."""
        if self.alive():
            return self
        if self.netns is None and port_open(self.port, self.host):
            raise RuntimeError(f"port {self.host}:{self.port} is already in use")
        self._prepare_dirs()
        if not self.initialised():
            self._initdb()
        assert self._socket_dir is not None
        argv = [
            self._tool("postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-k",
            str(self._socket_dir),
        ]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        account = self._run_as()
        self._process = ManagedProcess(
            argv,
            self.log_path,
            env=_client_env(),
            cwd=self.data_dir,
            name=f"postgres:{self.port}",
            user=account.pw_name if account else None,
            group=grp.getgrgid(account.pw_gid).gr_name if account else None,
            netns=self.netns,
        ).start()
        return self

    def _accepting(self) -> bool:
        result = subprocess.run(
            [
                self._tool("pg_isready"),
                "-q",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-t",
                "2",
            ],
            env=_client_env(),
            check=False,
        )
        return result.returncode == 0

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Block until the server accepts connections; returns seconds waited."""
        return self._require_process().wait_for(
            self._accepting, timeout, f"PostgreSQL on {self.host}:{self.port}", interval=0.1
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint), SIGKILL after timeout."""
        if self._process is not None:
            self._process.stop(timeout, sig=signal.SIGINT)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    # -- SQL helpers (via the bundled client tools; no Python driver needed) --

    def _client(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self._tool(tool), "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, *args],
            env=_client_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )

    def create_database(self, name: str) -> bool:
        """Create database ``name`` unless it exists; True if it was created."""
        result = self._client("createdb", "--", name)
        if result.returncode == 0:
            return True
        if "already exists" in result.stderr:
            return False
        raise RuntimeError(f"createdb {name!r} failed: {result.stderr.strip()}")

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, terminating its sessions."""
        result = self._client("dropdb", "--if-exists", "--force", "--", name)
        if result.returncode != 0:
            raise RuntimeError(f"dropdb {name!r} failed: {result.stderr.strip()}")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` with psql (unaligned, tuples only) and return its output."""
        result = self._client("psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", dbname, "-c", sql)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<PostgresServer {self.host}:{self.port} {state} data={self.pgdata}>"
