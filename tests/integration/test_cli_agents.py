"""`godel agent ...` against a running mesh with a worker, as a user runs the commands."""

from __future__ import annotations

import json
import uuid

from tests.conftest import RunningMesh, godel_cli
from tests.waits import poll


def agent_json(godel: RunningMesh, agent_id: str) -> dict[str, object]:
    document: dict[str, object] = json.loads(godel_cli(godel, "--json", "agent", "get", agent_id).stdout)
    return document


def wait_status(godel: RunningMesh, agent_id: str, status: str, timeout: float = 30) -> dict[str, object]:
    return poll(
        lambda: agent_json(godel, agent_id),
        lambda agent: agent.get("status") == f"AGENT_STATUS_{status.upper()}",
        timeout,
        f"agent {agent_id} to be {status}",
        interval=0.3,
    )


def test_spawn_watch_logs_history_sessions_a_refused_pause_and_a_restart(godel: RunningMesh) -> None:
    marker = uuid.uuid4().hex[:8]
    script = f"echo hello {{task}} {marker}; echo oops >&2"
    spawned = godel_cli(godel, "agent", "spawn", "say hi", "--watch", "--", "sh", "-c", script)
    lines = spawned.stdout.splitlines()
    agent_id = lines[0]
    assert "completed/completed" in lines[-1], spawned.stdout
    assert lines[1].split()[1] == "pending/initializing"  # polling may miss short states in between

    logs = godel_cli(godel, "agent", "logs", agent_id)
    assert f"[stdout] hello say hi {marker}" in logs.stdout.splitlines()
    assert "[stderr] oops" in logs.stderr.splitlines()
    followed = godel_cli(godel, "agent", "logs", agent_id, "-f", timeout=30)  # ends: the agent ended
    assert f"[stdout] hello say hi {marker}" in followed.stdout

    refused = godel_cli(godel, "agent", "pause", agent_id, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: cannot pause agent {agent_id}: it is completed")
    assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr

    history = godel_cli(godel, "agent", "history", agent_id).stdout
    assert "executing → completing" in history and "task_complete" in history
    sessions = godel_cli(godel, "agent", "sessions", agent_id).stdout.splitlines()
    assert len(sessions) == 2 and " completed " in f" {sessions[1]} "

    restarted = godel_cli(godel, "agent", "restart", agent_id).stdout
    assert restarted.startswith(f"restarted agent {agent_id}: now "), restarted
    assert "completed" not in restarted.splitlines()[0]
    wait_status(godel, agent_id, "completed")
    sessions = godel_cli(godel, "agent", "sessions", agent_id).stdout.splitlines()
    assert len(sessions) == 3 and all(" completed " in f" {row} " for row in sessions[1:]), sessions
    again = godel_cli(godel, "agent", "logs", agent_id).stdout.splitlines()
    assert again.count(f"[stdout] hello say hi {marker}") == 2, again


def test_pause_resume_kill_a_running_agent_and_watch_it_end(godel: RunningMesh) -> None:
    # A relative --repo is sent absolute: run from the default repository's parent.
    repo = godel.mesh.default_repo
    spawned = godel_cli(
        godel,
        "--json",
        "agent",
        "spawn",
        "wait",
        "--repo",
        repo.name,
        "--max-retries",
        "0",
        "--",
        "sleep",
        "60",
        cwd=repo.parent,
    )
    agent = json.loads(spawned.stdout)
    agent_id = str(agent["id"])
    assert agent["repo"] == str(repo)
    wait_status(godel, agent_id, "running")

    paused = godel_cli(godel, "agent", "pause", agent_id)
    assert paused.stdout.startswith(f"paused agent {agent_id}: now paused/paused")
    resumed = godel_cli(godel, "agent", "resume", agent_id)
    assert resumed.stdout.startswith(f"resumed agent {agent_id}: now running/executing")
    killed = godel_cli(godel, "agent", "kill", agent_id, "--reason", "enough")
    assert killed.stdout.startswith(f"killed agent {agent_id}: now killed/killed")

    watched = godel_cli(godel, "agent", "get", agent_id, "--watch", check=False, timeout=30)
    assert watched.returncode == 1
    assert "killed/killed" in watched.stdout.splitlines()[-1]
    history = godel_cli(godel, "agent", "history", agent_id).stdout
    assert "pause_command" in history and "resume_command" in history and "enough" in history

    listed = godel_cli(godel, "agent", "list", "--status", "killed", "--limit", "500").stdout
    row = next(line for line in listed.splitlines() if line.startswith(agent_id))
    assert row.split()[1:4] == ["killed", "killed", "command"]
