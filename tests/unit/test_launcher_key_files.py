"""The launcher's key files (godel_deploy.keys): one set per database, the other databases' keys
set aside and brought back, and no password written to disk. Files only, no servers."""

from __future__ import annotations

import json
from pathlib import Path

from godel_deploy.keys import KeyFiles, database_identity

SQLITE = "sqlite:/data/cluster.db"
PG = "postgresql://godel@127.0.0.1:5433/godel_cluster"


def test_database_identity_names_the_database_without_its_password(tmp_path: Path) -> None:
    assert database_identity(f"sqlite+aiosqlite:///{tmp_path}/cluster.db") == f"sqlite:{tmp_path}/cluster.db"
    identity = database_identity("postgresql+asyncpg://godel:s3cret@127.0.0.1:5433/godel_cluster?ssl=off")
    assert identity == PG and "s3cret" not in identity


def test_keys_of_another_database_are_set_aside_and_come_back(tmp_path: Path) -> None:
    on_sqlite, on_pg = KeyFiles(tmp_path, SQLITE), KeyFiles(tmp_path, PG)
    assert on_sqlite.select("admin").secret is None
    on_sqlite.save("admin", "godel_sk_sqlite", "admin")
    assert oct((tmp_path / "admin.key").stat().st_mode & 0o777) == "0o600"
    assert on_sqlite.select("admin").secret == "godel_sk_sqlite"

    switched = on_pg.select("admin")
    assert switched.secret is None and switched.stashed_database == SQLITE
    assert switched.stashed is not None and switched.stashed.read_text().strip() == "godel_sk_sqlite"
    assert not (tmp_path / "admin.key").exists()
    on_pg.save("admin", "godel_sk_pg", "admin")

    back = on_sqlite.select("admin")
    assert (back.secret, back.restored, back.stashed_database) == ("godel_sk_sqlite", True, PG)
    assert json.loads((tmp_path / "admin.key.json").read_text())["database"] == SQLITE
    again = on_pg.select("admin")
    assert (again.secret, again.restored) == ("godel_sk_pg", True)


def test_a_key_without_its_database_is_kept_until_the_cluster_service_says(tmp_path: Path) -> None:
    (tmp_path / "worker.key").write_text("godel_sk_old\n")  # saved by an older `make up`
    files = KeyFiles(tmp_path, SQLITE)
    selected = files.select("worker")
    assert (selected.secret, selected.unidentified) == ("godel_sk_old", True)
    moved = files.set_aside_unidentified("worker")
    assert moved.read_text().strip() == "godel_sk_old" and not (tmp_path / "worker.key").exists()
    assert files.select("worker").secret is None
