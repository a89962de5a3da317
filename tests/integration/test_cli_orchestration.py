"""The orchestration commands against a running mesh, as a user runs them: `godel do "Create a team
of 3 agents to review the authentication code"`, `godel workflow run examples/diamond.yaml --watch`,
and every `godel team`, `godel workflow` and `godel task` command."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tests.conftest import RunningMesh, godel_cli, godel_cli_lines
from tests.integration.agent_helpers import Gate
from tests.integration.team_helpers import ok
from tests.terminal import Screen, Terminal
from tests.waits import poll, wait_for

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
    # The summary closes the output: `team <id> completed: 3/3 agents completed (100%), ...`.
    summary = out.splitlines()[-1]
    assert summary.startswith("team ") and " completed: 3/3 agents completed (100%)" in summary, out
    team_id = summary.split()[1]
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


def test_workflow_run_watch_on_a_terminal_shows_a_bar_and_the_live_steps(godel: RunningMesh) -> None:
    """On a pseudo-terminal: a bar and the table of every step (not yet started ones too) redrawn
    below the step lines while the workflow runs, erased at the end."""
    argv = [
        sys.executable,
        "-m",
        "godel_client",
        "workflow",
        "run",
        str(EXAMPLES / "diamond.yaml"),
        "--watch",
    ]
    terminal = Terminal(argv, godel.client_env())
    try:
        wait_for(
            lambda: terminal.process.poll() is not None, 180, "the workflow to end", describe=terminal.read
        )
        terminal.read()
        assert terminal.process.returncode == 0, terminal.screen[-3000:]
    finally:
        terminal.close()
    screen = Screen(terminal.screen)
    frames = [frame for frame in screen.frames if "steps ended" in frame]
    assert frames, terminal.screen[-3000:]
    assert re.search(r"\[[█░]+\]\s+\d+%  [0-5]/6 steps ended", frames[0]), frames[0]
    assert re.search(r"^package\s+pending", frames[0], re.M), frames[0]  # not started yet, listed
    assert re.search(r"\[█+\] 100%  6/6 steps ended", frames[-1]), frames[-1]
    final = screen.text
    assert "█" not in final and "░" not in final
    assert re.search(r"^workflow \S+ completed", final, re.M), final
    assert any(line.startswith("step package") and "completed" in line for line in final.splitlines())


def _json(godel: RunningMesh, *argv: str) -> Any:
    return json.loads(godel_cli(godel, "--json", *argv).stdout)


def test_team_commands(godel: RunningMesh) -> None:
    go = Gate(godel.mesh.default_repo)
    member = ["sh", "-c", f"{go.wait}; echo done {{task}}"]
    team = _json(godel, "team", "create", "cli-team", "--task", "wait", "--size", "1", "--", *member)
    team_id = team["id"]
    assert team["status"] == "TEAM_STATUS_CREATING"
    assert team_id in godel_cli(godel, "team", "list", "--status", "creating").stdout
    assert "cli-team" in godel_cli(godel, "team", "get", team_id).stdout

    started = godel_cli(godel, "team", "start", team_id).stdout
    assert started.startswith(f"started team {team_id}: now active"), started
    assert _json(godel, "team", "pause", team_id)["status"] == "TEAM_STATUS_PAUSED"
    assert _json(godel, "team", "resume", team_id)["status"] == "TEAM_STATUS_ACTIVE"
    scaled = _json(godel, "team", "scale", team_id, "2")
    assert (scaled["previousSize"], scaled["currentSize"]) == (1, 2)
    members = poll(
        lambda: _json(godel, "team", "agents", team_id).get("agents", []),
        lambda agents: len(agents) == 2,
        60,
        "the team's two members",
    )
    # `start --watch` on the running team follows it to its end; the members finish once it does.
    with godel_cli_lines(godel, "team", "start", team_id, "--watch") as (watch, lines):
        lines.next_line(60, "the first progress update")
        go.open()
        summary = lines.wait_line(lambda line: line.startswith("team "), 120, "the summary")
        assert watch.wait(30) == 0, lines.seen
    assert summary.startswith(f"team {team_id} completed: 2/2 agents completed (100%)"), lines.seen
    done = _json(godel, "team", "get", team_id)
    assert sorted(done["agentIds"]) == sorted(a["id"] for a in members)
    assert sorted(done["results"].values()) == ["done wait", "done wait"]
    metrics = _json(godel, "team", "metrics", team_id)
    assert (metrics["completedAgents"], metrics["completionRate"]) == (2, 1.0)

    godel_cli(godel, "team", "delete", team_id)
    gone = godel_cli(godel, "team", "get", team_id, check=False)
    assert gone.returncode == 1 and "not found" in gone.stderr and "Traceback" not in gone.stderr


def test_workflow_commands(godel: RunningMesh, tmp_path: Path) -> None:
    go = Gate(godel.mesh.default_repo)
    definition = {
        "name": "cli-workflow",
        "command": ["sh", "-c", "{task}"],
        "steps": [
            {"id": "wait", "name": "wait", "task": f"{go.wait}; echo waited"},
            {"id": "then", "name": "then", "task": "echo then", "dependsOn": ["wait"]},
        ],
    }
    # `godel workflow run` creates and starts at once: a workflow to start is created over REST.
    with godel.http() as http:
        created = ok(http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition)}))
    wf_id = created["id"]
    assert created["status"] == "WORKFLOW_STATUS_PENDING"
    assert _json(godel, "workflow", "start", wf_id)["status"] == "WORKFLOW_STATUS_RUNNING"
    poll(
        lambda: {s["stepId"]: s for s in _json(godel, "workflow", "steps", wf_id)["steps"]},
        lambda steps: steps["wait"]["status"] == "STEP_STATUS_RUNNING",
        60,
        "the first step to run",
    )
    assert _json(godel, "workflow", "pause", wf_id)["status"] == "WORKFLOW_STATUS_PAUSED"
    assert _json(godel, "workflow", "resume", wf_id)["status"] == "WORKFLOW_STATUS_RUNNING"
    go.open()
    watched = godel_cli(godel, "workflow", "get", wf_id, "--watch", check=False, timeout=120)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    assert any(line.startswith("step then") and "completed" in line for line in lines), watched.stdout
    assert any(
        line == f"workflow {wf_id} completed" or line.startswith(f"workflow {wf_id} completed,")
        for line in lines
    )
    steps = {s["stepId"]: s for s in _json(godel, "workflow", "steps", wf_id)["steps"]}
    assert steps["wait"]["result"]["output"] == "waited" and steps["then"]["result"]["output"] == "then"
    listed = _json(godel, "workflow", "list", "--status", "completed", "--limit", "1000")["workflows"]
    assert wf_id in [w["id"] for w in listed]
    godel_cli(godel, "workflow", "delete", wf_id)
    gone = godel_cli(godel, "workflow", "get", wf_id, check=False)
    assert gone.returncode == 1 and "not found" in gone.stderr

    # `run` creates and starts; `cancel` ends the workflow.
    slow = tmp_path / "slow.json"
    slow.write_text(
        json.dumps(
            {**definition, "name": "cli-cancel", "steps": [{"id": "s", "name": "s", "task": "sleep 300"}]}
        )
    )
    run_id = godel_cli(godel, "workflow", "run", str(slow)).stdout.strip()
    assert _json(godel, "workflow", "get", run_id)["status"] == "WORKFLOW_STATUS_RUNNING"
    cancelled = _json(godel, "workflow", "cancel", run_id, "--reason", "enough")
    assert cancelled["status"] == "WORKFLOW_STATUS_CANCELLED"
    assert "cancelled" in godel_cli(godel, "workflow", "get", run_id).stdout


def test_task_commands(godel: RunningMesh) -> None:
    with godel.http() as http:
        agent_id = ok(http.post("/api/v1/agents", json={"task": "takes tasks"}))["id"]
    task = _json(godel, "task", "create", "cli task", "--priority", "high", "--description", "from the CLI")
    assert (task["status"], task["priority"]) == ("TASK_STATUS_PENDING", "TASK_PRIORITY_HIGH")
    assigned = godel_cli(godel, "task", "assign", task["id"], "--agent", agent_id).stdout
    assert assigned.startswith(f"assigned task {task['id']} to agent {agent_id}: now assigned"), assigned
    mine = _json(godel, "task", "list", "--agent", agent_id)["tasks"]
    assert [t["id"] for t in mine] == [task["id"]]
    assert "from the CLI" in godel_cli(godel, "task", "get", task["id"]).stdout
    done = _json(godel, "task", "complete", task["id"], "--result", '{"ok": true}')
    assert (done["status"], done["result"]) == ("TASK_STATUS_COMPLETED", {"ok": True})

    other = _json(godel, "task", "create", "cli task 2")
    failed = _json(godel, "task", "complete", other["id"], "--error", "no luck")
    assert failed["status"] == "TASK_STATUS_FAILED"
    refused = godel_cli(godel, "task", "assign", task["id"], "--agent", agent_id, check=False)
    assert refused.returncode == 1 and "already completed" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
