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


def test_go_client_creates_and_reads_an_agent(godel: RunningMesh) -> None:
    result = subprocess.run(
        ["go", "run", "./examples/createagent"],
        cwd=REPO / "clients" / "go",
        env=_env(godel),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    _check_agent(godel, result.stdout, "hello from go")


def test_ts_client_creates_and_reads_an_agent(godel: RunningMesh) -> None:
    ts = REPO / "clients" / "ts"
    if not (ts / "node_modules").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=ts, check=True, capture_output=True, timeout=300
        )
    result = subprocess.run(
        ["npm", "run", "--silent", "create-agent"],
        cwd=ts,
        env=_env(godel),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    _check_agent(godel, result.stdout, "hello from ts")


def test_go_client_reports_a_wrong_key(godel: RunningMesh) -> None:
    env = {**_env(godel), "GODEL_API_KEY": "godel_sk_not-a-real-key-000000000000"}
    result = subprocess.run(
        ["go", "run", "./examples/createagent"],
        cwd=REPO / "clients" / "go",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "Unauthenticated" in result.stderr
