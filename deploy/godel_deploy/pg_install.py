"""Locate (or apt-install) the PostgreSQL server binaries and OS user."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ensure_os_user", "ensure_postgres_binaries", "find_postgres_binaries"]

_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_REQUIRED = ("initdb", "postgres", "pg_isready", "psql", "createdb")


def _complete(bin_dir: Path) -> bool:
    return all((bin_dir / tool).is_file() for tool in _REQUIRED)


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def find_postgres_binaries() -> Path | None:
    """``$GODEL_PG_BIN``, else the newest ``/usr/lib/postgresql/*/bin``, else
    the directory of ``initdb`` on ``$PATH``; None if nothing usable exists."""
    env = os.environ.get("GODEL_PG_BIN")
    if env:
        return Path(env)
    candidates = [d for d in _DEBIAN_ROOT.glob("*/bin") if _complete(d)]
    if candidates:
        return max(candidates, key=_version_key)
    initdb = shutil.which("initdb")
    if initdb is not None and _complete(Path(initdb).resolve().parent):
        return Path(initdb).resolve().parent
    return None


def ensure_postgres_binaries() -> Path:
    """Return the PostgreSQL bin dir, installing the Debian package if needed."""
    found = find_postgres_binaries()
    if found is not None:
        return found
    _apt_install_postgresql()
    found = find_postgres_binaries()
    if found is None:
        raise RuntimeError(f"apt-get installed postgresql but no server binaries under {_DEBIAN_ROOT}")
    return found


def _apt_install_postgresql() -> None:
    if os.geteuid() != 0:
        raise RuntimeError(
            "PostgreSQL server binaries not found and not running as root; "
            "install them with: sudo apt-get install -y postgresql"
        )
    if shutil.which("apt-get") is None:
        raise RuntimeError("PostgreSQL server binaries not found and apt-get is unavailable")
    print("installing PostgreSQL with apt-get (first run only)...", file=sys.stderr, flush=True)
    # Don't let the package create (and try to start) a default cluster on 5432.
    conf_d = Path("/etc/postgresql-common/createcluster.d")
    conf_d.mkdir(parents=True, exist_ok=True)
    (conf_d / "00-godel-no-main-cluster.conf").write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        result = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed (exit {result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
    print("PostgreSQL installed", file=sys.stderr, flush=True)


def ensure_os_user(name: str = "postgres") -> pwd.struct_passwd:
    """Return the passwd entry of ``name``, creating a system user if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)
