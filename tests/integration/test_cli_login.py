"""`godel login` against the mesh: the session is kept in $XDG_CONFIG_HOME/godel/sessions.json
(mode 600) per profile and address, later commands of that profile use its JWT, an expired access token is refreshed on the way (proactively, and when the
server refuses it), `godel logout` ends the session, and a session ended elsewhere gives a clear
error and is forgotten."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.conftest import RunningMesh, godel_cli
from tests.integration.auth_helpers import PASSWORD, create_user


class Cli:
    """`godel` as a user without an API key runs it: only what `godel login` keeps."""

    def __init__(self, godel: RunningMesh, home: Path) -> None:
        self.godel = godel
        self.config = home / "config"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GODEL_", "XDG_"))}
        self.env.update(
            GODEL_ADDR=godel.mesh.gateway_address,
            GODEL_HOME=str(home / "no-admin-key-here"),
            XDG_CONFIG_HOME=str(self.config),
        )

    def __call__(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "godel_client", *argv],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    @property
    def file(self) -> Path:
        return self.config / "godel" / "sessions.json"

    def session(self, profile: str = "default") -> dict[str, Any] | None:
        sessions: dict[str, dict[str, dict[str, Any]]] = json.loads(self.file.read_text())["sessions"]
        return sessions.get(profile, {}).get(self.godel.mesh.gateway_address)

    def rewrite(self, **changes: str) -> None:
        document = json.loads(self.file.read_text())
        document["sessions"]["default"][self.godel.mesh.gateway_address].update(changes)
        self.file.write_text(json.dumps(document))


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def expired_token(godel: RunningMesh, access_token: str) -> str:
    secret = (godel.mesh.home / "jwt.secret").read_text().strip()
    claims = jwt.decode(access_token, options={"verify_signature": False})
    past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    return jwt.encode({**claims, "exp": past, "iat": past - 900}, secret, algorithm="HS256")


def spawn_event_user(godel: RunningMesh, agent_id: str) -> str:
    """The user id of an agent's `agent:spawn` event (once the event store has it)."""
    deadline = time.monotonic() + 30
    with godel.http() as admin:
        while True:
            found = admin.get("/api/v1/events", params={"type": "agent:spawn", "agentId": agent_id}).json()
            if found.get("events"):
                return str(found["events"][0]["metadata"].get("userId", ""))
            assert time.monotonic() < deadline, "agent:spawn never stored"
            time.sleep(0.2)


def test_login_then_agent_list_works_with_a_jwt_that_is_refreshed(godel: RunningMesh, tmp_path: Path) -> None:
    user = create_user(godel, "developer")
    cli = Cli(godel, tmp_path)
    anonymous = cli("agent", "list")
    assert anonymous.returncode == 1 and "run `godel login`" in anonymous.stderr

    wrong = cli("login", user["username"], "--password-stdin", stdin="not the password\n")
    assert wrong.returncode == 1 and "wrong username or password" in wrong.stderr
    assert not cli.file.exists()
    said = ok(cli("login", user["username"], "--password-stdin", stdin=PASSWORD + "\n"))
    assert f"as {user['username']} (developer)" in said
    assert stat.S_IMODE(cli.file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.file.parent.stat().st_mode) == 0o700
    first = cli.session()
    assert first is not None and first["username"] == user["username"]

    ok(cli("agent", "list"))
    ok(cli("--profile", "other", "config", "set", "endpoint", godel.mesh.gateway_address))
    other_profile = cli("--profile", "other", "agent", "list")  # a session belongs to its profile
    assert other_profile.returncode == 1 and "run `godel login`" in other_profile.stderr
    whoami = ok(cli("whoami"))
    assert user["username"] in whoami and "login session" in whoami and "developer" in whoami
    spawned = ok(cli("agent", "spawn", "made with a token", "--", "true")).strip()
    assert spawn_event_user(godel, spawned) == user["id"]  # the agent is the user's

    # The server refuses an expired token; the CLI refreshes and retries on its own.
    cli.rewrite(access_token=expired_token(godel, first["access_token"]))
    ok(cli("agent", "list"))
    second = cli.session()
    assert second is not None and second["refresh_token"] != first["refresh_token"]
    # Due to expire: refreshed before the call.
    cli.rewrite(expires_at=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    ok(cli("agent", "list"))
    third = cli.session()
    assert third is not None and third["refresh_token"] != second["refresh_token"]
    # The rotated-out refresh token is refused (and, being replayed, would end the session).
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        assert anon.post("/api/v1/auth/logout", json={"refreshToken": "godel_rt_nope"}).status_code == 401

    said = ok(cli("logout"))
    assert "logged out" in said and cli.session() is None
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        refused = anon.post("/api/v1/auth/refresh", json={"refreshToken": third["refresh_token"]})
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    after = cli("agent", "list")
    assert after.returncode == 1 and "run `godel login`" in after.stderr


def test_a_session_ended_elsewhere_is_reported_and_forgotten(godel: RunningMesh, tmp_path: Path) -> None:
    user = create_user(godel, "viewer")
    cli = Cli(godel, tmp_path)
    ok(cli("login", user["username"], "--password-stdin", stdin=PASSWORD + "\n"))
    session = cli.session()
    assert session is not None
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        assert (
            anon.post("/api/v1/auth/logout", json={"refreshToken": session["refresh_token"]}).status_code
            == 200
        )
    cli.rewrite(expires_at=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    ended = cli("agent", "list")
    assert ended.returncode == 1
    assert "your login session on" in ended.stderr and "has ended (refresh token revoked" in ended.stderr
    assert "run `godel login` again" in ended.stderr
    assert cli.session() is None


def test_admins_manage_users_and_user_teams_from_the_cli(godel: RunningMesh, tmp_path: Path) -> None:
    name = f"dora-{uuid.uuid4().hex[:6]}"
    made = godel_cli(
        godel, "users", "create", name, "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert f"created user {name} (viewer)" in made.stdout
    assert name in godel_cli(godel, "users", "list").stdout
    team = f"ops-{uuid.uuid4().hex[:6]}"
    assert (
        f"created user team {team}"
        in godel_cli(godel, "users", "teams", "create", team, "--member", name).stdout
    )
    assert team in godel_cli(godel, "users", "teams", "list").stdout
    removed = godel_cli(godel, "users", "teams", "remove", team, name)
    assert f"removed {name}: {team} has 0 member(s)" in removed.stdout
    assert f"added {name}" in godel_cli(godel, "users", "teams", "add", team, name).stdout
    cli = Cli(godel, tmp_path)
    ok(cli("login", name, "--password-stdin", stdin=PASSWORD + "\n"))
    assert f"disabled user {name}" in godel_cli(godel, "users", "disable", name).stdout
    refused = cli("agent", "list")  # its session ended: the refresh is refused too
    assert refused.returncode == 1 and "disabled" in refused.stderr, refused.stderr
    assert f"enabled user {name}" in godel_cli(godel, "users", "enable", name).stdout
    ok(cli("login", name, "--password-stdin", stdin=PASSWORD + "\n"))
    denied = cli("users", "list")  # a viewer
    assert denied.returncode == 1 and "may not read user" in denied.stderr
