"""The `godel` CLI against a real mesh, and `make up` / `make down` (the launcher) end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from godel_deploy.ports import free_port
from tests.conftest import RunningMesh


def godel_cli(godel: RunningMesh, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GODEL_ADDR": godel.mesh.gateway_address, "GODEL_API_KEY": godel.admin_key}
    return subprocess.run(
        [sys.executable, "-m", "godel_client", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_spawn_get_list_and_tail(godel: RunningMesh) -> None:
    tail = subprocess.Popen(
        [sys.executable, "-m", "godel_client", "--json", "events", "tail", "--type", "agent:*"],
        env={**os.environ, "GODEL_ADDR": godel.mesh.gateway_address, "GODEL_API_KEY": godel.admin_key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        spawned = godel_cli(
            godel, "agent", "spawn", "cli task", "--label", "from-cli", "--", "echo", "{task}"
        )
        assert spawned.returncode == 0, spawned.stderr
        agent_id = spawned.stdout.strip()
        got = godel_cli(godel, "--json", "agent", "get", agent_id)
        assert json.loads(got.stdout)["task"] == "cli task"
        listed = godel_cli(godel, "agent", "list", "--label", "from-cli")
        assert agent_id in listed.stdout and "cli task" in listed.stdout
        assert tail.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = tail.stdout.readline()
            if line and json.loads(line).get("metadata", {}).get("agentId") == agent_id:
                break
        else:
            raise AssertionError("events tail did not show the agent's event")
    finally:
        tail.send_signal(signal.SIGINT)
        tail.wait(10)
    deleted = godel_cli(godel, "agent", "delete", agent_id)
    assert deleted.returncode == 0
    missing = godel_cli(godel, "agent", "get", agent_id)
    assert missing.returncode == 1 and "not found" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_errors_are_clear(godel: RunningMesh) -> None:
    bad = godel_cli(godel, "agent", "spawn", "  ")
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


def _pids_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists()]


def test_make_up_and_down_stop_exactly_what_they_started(tmp_path: Path) -> None:
    ports = {f"GODEL_{r.upper()}_PORT": str(free_port()) for r in ("agent", "team", "event", "cluster")}
    ports |= {
        f"GODEL_{r.upper()}_ADMIN_PORT": str(free_port()) for r in ("agent", "team", "event", "cluster")
    }
    gateway = free_port()
    env = {
        **os.environ,
        **ports,
        "GODEL_HOME": str(tmp_path),
        "GODEL_GATEWAY_PORT": str(gateway),
        "GODEL_GATEWAY_ADMIN_PORT": str(free_port()),
        "GODEL_KAFKA_PORT": str(free_port()),
        "GODEL_KAFKA_CONTROLLER_PORT": str(free_port()),
        "GODEL_EVENT_WS_PORT": str(free_port()),
    }
    env.pop("GODEL_DATABASE_URL", None)
    bystander = subprocess.Popen(["sleep", "300"])  # must survive `make down`
    try:
        up = subprocess.run(
            [sys.executable, "-m", "godel_deploy.up"], env=env, capture_output=True, text=True, timeout=300
        )
        assert up.returncode == 0, up.stdout + up.stderr
        key = (tmp_path / "admin.key").read_text().strip()
        assert key in up.stdout and "Admin API key (shown once" in up.stdout
        assert oct((tmp_path / "admin.key").stat().st_mode & 0o777) == "0o600"
        state = json.loads((tmp_path / "mesh.json").read_text())
        pids = [p["pid"] for p in state["processes"]]
        assert len(pids) == 7  # kafka, four services, gateway, worker
        with httpx.Client(
            base_url=f"http://127.0.0.1:{gateway}", headers={"x-api-key": key}, timeout=15
        ) as http:
            agent = http.post("/api/v1/agents", json={"task": "survive a restart"}).json()
            # The worker `make up` started runs agents in worktrees of the scratch repository.
            command = ["sh", "-c", "echo hi > hello.txt && git add . && git commit -q -m hi"]
            runner = http.post(
                "/api/v1/agents",
                json={"task": "commit", "config": {"runtime": "command", "command": command}},
            ).json()
            deadline = time.monotonic() + 60
            while (state := http.get(f"/api/v1/agents/{runner['id']}").json())[
                "status"
            ] != "AGENT_STATUS_COMPLETED":
                assert time.monotonic() < deadline, state
                time.sleep(0.2)
            assert len(state["commits"]) == 1
            # The team service drives agents with the key `make up` made for it.
            assert oct((tmp_path / "team-service.key").stat().st_mode & 0o777) == "0o600"
            team = http.post(
                "/api/v1/teams", json={"name": "up", "task": "look", "config": {"size": 2}}
            ).json()
            with http.stream("POST", f"/api/v1/teams/{team['id']}/start", json={}, timeout=120) as stream:
                assert stream.status_code == 200
                last = [line for line in stream.iter_lines() if line.startswith("data:")][-1]
            assert '"TEAM_STATUS_COMPLETED"' in last, last

        down = subprocess.run(
            [sys.executable, "-m", "godel_deploy.down"], env=env, capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, down.stderr
        assert _pids_alive(pids) == []
        assert bystander.poll() is None

        again = subprocess.run(
            [sys.executable, "-m", "godel_deploy.up"], env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert key not in again.stdout, "the admin key is printed only once"
        with httpx.Client(
            base_url=f"http://127.0.0.1:{gateway}", headers={"x-api-key": key}, timeout=15
        ) as http:
            assert http.get(f"/api/v1/agents/{agent['id']}").status_code == 200
    finally:
        subprocess.run([sys.executable, "-m", "godel_deploy.down"], env=env, capture_output=True, timeout=120)
        bystander.kill()
