"""The `godel` CLI against a real mesh, and `make up` / `make down` (the launcher) end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from godel_deploy.ports import free_port
from tests.conftest import RunningMesh, godel_cli, godel_cli_lines
from tests.integration.launcher_helpers import gateway_url, launcher_env, make_down, make_up
from tests.waits import poll


def test_cli_spawn_get_list_and_tail(godel: RunningMesh) -> None:
    # The tail starts from the newest stored event, so the agent's events reach it whether they are
    # stored before or after its subscription is open.
    with godel.http() as http:
        newest = http.get("/api/v1/events", params={"order": "SORT_ORDER_DESCENDING", "pageSize": 1}).json()
    after = max((int(e["sequence"]) for e in newest.get("events", [])), default=0)
    with godel_cli_lines(
        godel, "--json", "events", "tail", "--type", "agent:*", "--from-seq", str(after)
    ) as (
        _,
        lines,
    ):
        spawned = godel_cli(
            godel, "agent", "spawn", "cli task", "--label", "from-cli", "--", "echo", "{task}"
        )
        assert spawned.returncode == 0, spawned.stderr
        agent_id = spawned.stdout.strip()
        got = godel_cli(godel, "--json", "agent", "get", agent_id)
        assert json.loads(got.stdout)["task"] == "cli task"
        listed = godel_cli(godel, "agent", "list", "--label", "from-cli")
        assert agent_id in listed.stdout and "cli task" in listed.stdout
        lines.wait_line(
            lambda line: json.loads(line).get("metadata", {}).get("agentId") == agent_id,
            30,
            f"an event of agent {agent_id}",
        )
    deleted = godel_cli(godel, "agent", "delete", agent_id)
    assert deleted.returncode == 0
    missing = godel_cli(godel, "agent", "get", agent_id, check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_errors_are_clear(godel: RunningMesh) -> None:
    bad = godel_cli(godel, "agent", "spawn", "  ", check=False)
    assert bad.returncode == 1 and "task" in bad.stderr
    env = {**os.environ, "GODEL_ADDR": f"127.0.0.1:{free_port()}", "GODEL_API_KEY": "x"}
    down = subprocess.run(
        [sys.executable, "-m", "godel_client", "agent", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert down.returncode == 1 and "cannot reach Godel" in down.stderr and "Traceback" not in down.stderr


def test_cli_health_and_keys_create(godel: RunningMesh) -> None:
    health = godel_cli(godel, "--json", "health")
    assert health.returncode == 0, health.stderr
    components = {c["name"]: c["status"] for c in json.loads(health.stdout)["components"]}
    assert components["agent-service"] == components["kafka"] == "HEALTH_STATUS_HEALTHY", components
    table = godel_cli(godel, "health").stdout
    assert table.startswith("status") and "healthy" in table.splitlines()[0] and "cluster-service" in table

    created = godel_cli(godel, "keys", "create", "--name", "cli-made", "--role", "viewer")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("godel_sk_") and secret not in created.stderr
    assert "not shown again" in created.stderr and "viewer" in created.stderr
    # The new key works, with its role's rights (--api-key wins over GODEL_API_KEY).
    assert godel_cli(godel, "agent", "list", "--limit", "1", "--api-key", secret).returncode == 0
    refused = godel_cli(
        godel, "keys", "create", "--name", "escalate", "--role", "admin", "--api-key", secret, check=False
    )
    assert refused.returncode == 1 and "role 'viewer' may not create key" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


def _pids_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists()]


def test_make_up_and_down_stop_exactly_what_they_started(tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    bystander = subprocess.Popen(["sleep", "300"])  # must survive `make down`
    try:
        up = make_up(env)
        key = (tmp_path / "admin.key").read_text().strip()
        assert key in up.stdout and "Admin API key (shown once" in up.stdout
        assert oct((tmp_path / "admin.key").stat().st_mode & 0o777) == "0o600"
        state = json.loads((tmp_path / "mesh.json").read_text())
        pids = [p["pid"] for p in state["processes"]]
        assert len(pids) == 7  # kafka, four services, gateway, worker
        with httpx.Client(base_url=gateway_url(env), headers={"x-api-key": key}, timeout=15) as http:
            agent = http.post("/api/v1/agents", json={"task": "survive a restart"}).json()
            # The worker `make up` started runs agents in worktrees of the scratch repository.
            command = ["sh", "-c", "echo hi > hello.txt && git add . && git commit -q -m hi"]
            runner = http.post(
                "/api/v1/agents",
                json={"task": "commit", "config": {"runtime": "command", "command": command}},
            ).json()
            done = poll(
                lambda: http.get(f"/api/v1/agents/{runner['id']}").json(),
                lambda a: a["status"] == "AGENT_STATUS_COMPLETED",
                60,
                "the agent to commit and complete",
            )
            assert len(done["commits"]) == 1
            # The team service drives agents with the key `make up` made for it.
            assert oct((tmp_path / "team-service.key").stat().st_mode & 0o777) == "0o600"
            team = http.post(
                "/api/v1/teams", json={"name": "up", "task": "look", "config": {"size": 2}}
            ).json()
            with http.stream("POST", f"/api/v1/teams/{team['id']}/start", json={}, timeout=120) as stream:
                assert stream.status_code == 200
                last = [line for line in stream.iter_lines() if line.startswith("data:")][-1]
            assert '"TEAM_STATUS_COMPLETED"' in last, last

        make_down(env)
        assert _pids_alive(pids) == []
        assert bystander.poll() is None

        env = launcher_env(tmp_path)  # fresh ports: ones picked minutes ago may be taken by now
        again = make_up(env)
        assert key not in again.stdout, "the admin key is printed only once"
        with httpx.Client(base_url=gateway_url(env), headers={"x-api-key": key}, timeout=15) as http:
            assert http.get(f"/api/v1/agents/{agent['id']}").status_code == 200
    finally:
        make_down(env, check=False)
        bystander.kill()
