"""`make up` and the keys it saves (issue 10 §3): a revoked worker key is re-issued by the next
`make up`, and switching databases keeps each database's admin key instead of replacing it. The
first `make up` also creates the first user, `admin`, who owns the admin key and logs in with the
password printed once (issue 13).
Run as a user would (godel_deploy.up / .down), in a home of the test's own, on ports picked
free for each `make up` (the keys do not depend on them; reusing ports minutes later would race
with other processes on a shared machine)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from godel_deploy.postgres import PostgresServer
from tests.integration.launcher_helpers import gateway_url, launcher_env, make_down, make_up
from tests.waits import poll

COMMIT = ["sh", "-c", "echo hi > hello.txt && git add . && git commit -q -m hi"]


def _runs_an_agent(http: httpx.Client) -> None:
    """The worker `make up` started takes a run and completes it."""
    agent = http.post(
        "/api/v1/agents", json={"task": "commit", "config": {"runtime": "command", "command": COMMIT}}
    ).json()
    poll(
        lambda: http.get(f"/api/v1/agents/{agent['id']}").json(),
        lambda state: state["status"] == "AGENT_STATUS_COMPLETED",
        90,
        "the agent to complete",
        interval=0.3,
    )


def _client(env: dict[str, str], key: str) -> httpx.Client:
    return httpx.Client(base_url=gateway_url(env), headers={"x-api-key": key}, timeout=15)


def _key(home: Path, name: str) -> str:
    return (home / f"{name}.key").read_text().strip()


def test_a_revoked_worker_key_is_reissued_by_the_next_make_up(tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    try:
        first = make_up(env)
        admin, worker = _key(tmp_path, "admin"), _key(tmp_path, "worker")
        password = _key(tmp_path, "admin-password")
        assert password in first.stdout and "Admin user `admin`" in first.stdout
        assert oct((tmp_path / "admin-password.key").stat().st_mode & 0o777) == "0o600"
        with httpx.Client(base_url=gateway_url(env), timeout=15) as anon:
            login = anon.post("/api/v1/auth/login", json={"username": "admin", "password": password})
            assert login.status_code == 200, login.text
            assert login.json()["user"]["role"] == "admin"
        with _client(env, admin) as http:
            assert http.get("/api/v1/auth/whoami").json()["username"] == "admin"  # the key is the user's
            keys = http.get("/api/v1/auth/keys", params={"pageSize": 1000}).json()["apiKeys"]
            [worker_key] = [k for k in keys if k["name"] == "worker" and k["role"] == "worker"]
            assert http.post(f"/api/v1/auth/keys/{worker_key['id']}/revoke", json={}).status_code == 200
        make_down(env)

        env = launcher_env(tmp_path)
        again = make_up(env)
        assert (
            "worker key: the saved one is unknown to this database, or revoked; issued a new one"
            in again.stdout
        )
        renewed = _key(tmp_path, "worker")
        assert renewed != worker
        assert oct((tmp_path / "worker.key").stat().st_mode & 0o777) == "0o600"
        assert _key(tmp_path, "admin") == admin and admin not in again.stdout
        assert password not in again.stdout and _key(tmp_path, "admin-password") == password
        with _client(env, admin) as http:
            _runs_an_agent(http)  # the worker connected with the new key
    finally:
        make_down(env, check=False)


def test_switching_databases_keeps_each_databases_admin_key(tmp_path: Path, postgres: PostgresServer) -> None:
    sqlite_env = launcher_env(tmp_path)
    try:
        first = make_up(sqlite_env)
        sqlite_key = _key(tmp_path, "admin")
        assert sqlite_key in first.stdout
        sidecar = json.loads((tmp_path / "admin.key.json").read_text())
        assert sidecar["database"] == f"sqlite:{tmp_path.resolve() / 'cluster.db'}"
        make_down(sqlite_env)

        pg_env = launcher_env(tmp_path, GODEL_DATABASE_URL=postgres.url())
        switched = make_up(pg_env)
        pg_key = _key(tmp_path, "admin")
        assert pg_key != sqlite_key and pg_key in switched.stdout
        assert "The database changed: this mesh uses postgresql://" in switched.stdout
        kept = next((tmp_path / "keys").glob("sqlite-*/admin.key"))
        assert kept.read_text().strip() == sqlite_key and str(kept) in switched.stdout
        assert oct(kept.stat().st_mode & 0o777) == "0o600"
        assert json.loads((tmp_path / "admin.key.json").read_text())["database"].startswith("postgresql://")
        with _client(pg_env, pg_key) as http:
            assert http.get("/api/v1/agents").status_code == 200
            _runs_an_agent(http)  # the worker key was made for this database too
        make_down(pg_env)

        sqlite_env = launcher_env(tmp_path)
        back = make_up(sqlite_env)
        assert _key(tmp_path, "admin") == sqlite_key, "the SQLite database's admin key comes back"
        assert sqlite_key not in back.stdout and pg_key not in back.stdout
        assert "the one saved earlier for sqlite:" in back.stdout
        assert next((tmp_path / "keys").glob("postgresql-*/admin.key")).read_text().strip() == pg_key
        with _client(sqlite_env, sqlite_key) as http:
            _runs_an_agent(http)
    finally:
        make_down(sqlite_env, check=False)
