"""The generated Go and TypeScript code talk to the running mesh (plain gRPC through Envoy)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import RunningMesh

REPO = Path(__file__).resolve().parents[2]


def _env(godel: RunningMesh) -> dict[str, str]:
    return {**os.environ, "GODEL_ADDR": godel.mesh.gateway_address, "GODEL_API_KEY": godel.admin_key}


def _check_agent(godel: RunningMesh, output: str, task: str) -> None:
    printed = json.loads(output.strip().splitlines()[-1])
    assert printed["task"] == task
    assert printed["status"] == "AGENT_STATUS_PENDING"
    with godel.http() as http:
        stored = http.get(f"/api/v1/agents/{printed['id']}").json()
    assert stored["task"] == task


def _run(argv: list[str], client: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO / "clients" / client, env=env, capture_output=True, text=True, timeout=300
    )


def test_go_client_creates_and_reads_an_agent(godel: RunningMesh) -> None:
    result = _run(["go", "run", "./examples/createagent"], "go", _env(godel))
    assert result.returncode == 0, result.stderr
    _check_agent(godel, result.stdout, "hello from go")


def test_ts_client_creates_and_reads_an_agent(godel: RunningMesh) -> None:
    if not (REPO / "clients" / "ts" / "node_modules").is_dir():
        assert _run(["npm", "ci", "--no-audit", "--no-fund"], "ts", dict(os.environ)).returncode == 0
    result = _run(["npm", "run", "--silent", "create-agent"], "ts", _env(godel))
    assert result.returncode == 0, result.stderr
    _check_agent(godel, result.stdout, "hello from ts")


def test_go_client_reports_a_wrong_key(godel: RunningMesh) -> None:
    env = {**_env(godel), "GODEL_API_KEY": "godel_sk_not-a-real-key-000000000000"}
    result = _run(["go", "run", "./examples/createagent"], "go", env)
    assert result.returncode == 1
    assert "Unauthenticated" in result.stderr
