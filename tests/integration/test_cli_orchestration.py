"""The issue's done-when commands against a running mesh: `godel do "Create a team of 3 agents to
review the authentication code"` and `godel workflow run examples/diamond.yaml --watch`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunningMesh
from tests.integration.test_cli_agents import godel_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_godel_do_runs_a_team_of_three_with_live_progress(godel: RunningMesh) -> None:
    run = godel_cli(
        godel, "do", "Create a team of 3 agents to review the authentication code", check=False, timeout=180
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert 'Understood: create_team (95%) size=3 task="review authentication code"' in out, out
    progress = [line for line in out.splitlines() if line.startswith("[") and "%]" in line]
    assert any("100%]" in line for line in progress), out
    assert "completed" in out.splitlines()[-1] or "completed" in out
    team_id = next(
        line.split()[1] for line in out.splitlines() if line.startswith("team ") and "completed" in line
    )
    team = json.loads(godel_cli(godel, "--json", "team", "get", team_id).stdout)
    assert team["status"] == "TEAM_STATUS_COMPLETED" and len(team["agentIds"]) == 3
    # The default member command printed the task and summarized the repository.
    assert all("task: review authentication code" in r for r in team["results"].values()), team["results"]
    metrics = json.loads(godel_cli(godel, "--json", "team", "metrics", team_id).stdout)
    assert metrics["completionRate"] == 1.0


def test_workflow_run_example_diamond_with_watch(godel: RunningMesh) -> None:
    run = godel_cli(
        godel, "workflow", "run", str(EXAMPLES / "diamond.yaml"), "--watch", check=False, timeout=180
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for step in ("fetch", "lint", "unit-tests", "build", "package"):
        assert any(line.startswith("step ") and step in line and "running" in line for line in lines), (
            run.stdout
        )
    assert any("notify-failure" in line and "skipped" in line for line in lines), run.stdout
    assert any(line.startswith("workflow ") and "completed" in line for line in lines), run.stdout
