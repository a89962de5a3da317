"""The ``godel`` team, workflow, task, budget and ``do`` commands against the fake mesh of
tests/fakes (shared with the CLI tests in clients/python/tests).

The fake mesh answers with the real intent parser, swarm generator and workflow definition parser;
a started team reports one update per member then ends, a workflow moves its steps one state per
look, and created agents run on the first look and complete on the second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2

from godel.v1 import (
    agent_events_pb2,
    agent_pb2,
    agent_service_pb2,
    budget_pb2,
    budget_service_pb2,
    event_pb2,
    event_service_pb2,
    intent_service_pb2,
    task_pb2,
    task_service_pb2,
    team_events_pb2,
    team_pb2,
    team_service_pb2,
    workflow_service_pb2,
)
from godel_client import cli_common, cli_workflows, render, teams
from godel_client.enums import execution_strategy, task_priority
from tests.fakes.cli import clean_environment, godel, run
from tests.fakes.mesh import FakeMesh, serve

ACTIVE = team_pb2.TEAM_STATUS_ACTIVE


def _struct(**values: Any) -> struct_pb2.Struct:
    document = struct_pb2.Struct()
    document.update(values)
    return document


@pytest.fixture
def mesh() -> Iterator[tuple[FakeMesh, str]]:
    """The fake mesh: created agents complete on their second look; event streams stay open."""
    with serve() as (state, address):
        state.run_created_agents()
        state.hold_stream_open = True
        yield state, address


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials of the developer's; no real sleeps."""
    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setattr(cli_common, "wait", lambda seconds: None)
    monkeypatch.setattr(cli_workflows, "POLL_INTERVAL", 0.01)


PROGRESS_LINE = re.compile(r"^\[\s*(\d+)%\] (\S+)  (agent [0-9a-f]{8}… \w+|team \w+) \((\d+)/(\d+)\)$")


# -- teams -----------------------------------------------------------------------------------------


def test_team_create_watch_streams_progress_then_a_summary(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    options = ["--task", "review the auth code", "--size", "3", "--strategy", "map-reduce", "--budget", "5"]
    inputs = ["--input", "auth.py", "--input", "session.py", "--model", "gpt-4o"]
    result = godel(
        capsys,
        address,
        "team",
        "create",
        "reviewers",
        *options,
        *inputs,
        "--watch",
        "--",
        "/bin/echo",
        "{task}",
    )
    assert result.code == 0, result.err
    team_id = result.lines[0]
    team = world.teams[team_id]
    progress = result.lines[1:5]
    assert [PROGRESS_LINE.match(line) is not None for line in progress] == [True] * 4, progress
    assert progress[0] == f"[ 33%] agent:complete  agent {team.agent_ids[0][:8]}… completed (1/3)"
    assert progress[2] == f"[100%] agent:complete  agent {team.agent_ids[2][:8]}… completed (3/3)"
    assert progress[3] == "[100%] team:complete  team completed (3/3)"
    assert result.lines[5] == (
        f"team {team_id} completed: 3/3 agents completed (100%), took 1m02s, cost $0.0300"
    )
    assert result.err == ""
    create = world.requests_of(team_service_pb2.CreateTeamRequest)[-1]
    assert (create.name, create.task) == ("reviewers", "review the auth code")
    assert create.execution_strategy == team_pb2.EXECUTION_STRATEGY_MAP_REDUCE
    assert (create.config.size, list(create.config.inputs), create.config.model) == (
        3,
        ["auth.py", "session.py"],
        "gpt-4o",
    )
    assert (create.config.runtime, list(create.config.command)) == ("command", ["/bin/echo", "{task}"])
    assert create.HasField("budget_allocated") and create.budget_allocated == 5.0


def test_team_watch_of_a_failing_team_exits_1_with_its_error(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    team = world.add_team("doomed", task="this will fail", config=team_pb2.TeamConfig(size=2))
    result = godel(capsys, address, "team", "start", team.id, "--watch")
    assert result.code == 1
    assert result.lines[1] == f"[100%] agent:error  agent {team.agent_ids[1][:8]}… failed (1/2)"
    assert result.lines[2] == "[100%] team:error  team failed (1/2)"
    assert result.lines[3].startswith(
        f"team {team.id} failed: 1/2 agents completed (50%), 1 failed, took 1m02s"
    )
    assert f"team {team.id} failed: agent {team.agent_ids[1]} failed: exit status 1" in result.err


def test_team_create_without_start_prints_the_id_and_json_prints_the_team(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    plain = godel(
        capsys, address, "team", "create", "t1", "--task", "x", "--stage", "plan", "--stage", "build"
    )
    assert plain.code == 0 and plain.out.strip() in world.teams
    assert list(world.teams[plain.out.strip()].config.stages) == ["plan", "build"]
    assert not world.requests_of(team_service_pb2.StartTeamRequest)
    as_json = godel(
        capsys,
        address,
        "--json",
        "team",
        "create",
        "t2",
        "--task",
        "y",
        "--strategy",
        "tree",
        "--max-depth",
        "2",
    )
    document = json.loads(as_json.out)
    assert document["name"] == "t2" and document["executionStrategy"] == "EXECUTION_STRATEGY_TREE"
    assert document["config"]["maxDepth"] == 2


def test_team_start_without_watch_reports_the_first_update(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    team = world.add_team("starter", task="go", config=team_pb2.TeamConfig(size=4))
    result = godel(capsys, address, "team", "start", team.id)
    assert (result.code, result.out) == (0, f"started team {team.id}: now active (25%)\n")
    created = godel(capsys, address, "team", "create", "both", "--task", "go", "--start")
    new_id = created.lines[0]
    assert created.code == 0 and created.lines[1].startswith(f"started team {new_id}: now active")


def test_team_start_watch_json_is_one_update_per_line(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    team = world.add_team("j", task="go", config=team_pb2.TeamConfig(size=2))
    result = godel(capsys, address, "--json", "team", "start", team.id, "--watch")
    assert result.code == 0
    updates = [json.loads(line) for line in result.lines]
    assert [u["event"]["type"] for u in updates] == ["agent:complete", "agent:complete", "team:complete"]
    assert updates[-1]["team"]["status"] == "TEAM_STATUS_COMPLETED"


def test_team_list_get_agents_metrics_scale_delete(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    team = world.add_team("squad", task="review", config=team_pb2.TeamConfig(size=2, model="gpt-4o"))
    world.add_team("old", status=team_pb2.TEAM_STATUS_COMPLETED)
    assert godel(capsys, address, "team", "start", team.id, "--watch").code == 0

    listing = godel(capsys, address, "team", "list", "--status", "completed")
    assert listing.lines[0].split() == [
        "ID",
        "STATUS",
        "STRATEGY",
        "AGENTS",
        "PROGRESS",
        "SPENT",
        "AGE",
        "NAME",
    ]
    assert len(listing.lines) == 3 and all("completed" in line for line in listing.lines[1:])
    assert len(godel(capsys, address, "team", "list", "--limit", "1").lines) == 2
    assert json.loads(godel(capsys, address, "--json", "team", "list", "--status", "paused").out) == {
        "teams": []
    }

    detail = godel(capsys, address, "team", "get", team.id).out
    assert re.search(r"^status +completed$", detail, re.MULTILINE)
    assert re.search(r"^model +gpt-4o$", detail, re.MULTILINE)

    agents = godel(capsys, address, "team", "agents", team.id)
    assert agents.code == 0 and all(a in agents.out for a in world.teams[team.id].agent_ids)

    metrics = godel(capsys, address, "team", "metrics", team.id).out
    assert re.search(r"^completion +100%$", metrics, re.MULTILINE)
    assert re.search(r"^cost +\$0\.0200$", metrics, re.MULTILINE)

    scaled = godel(capsys, address, "team", "scale", team.id, "5")
    assert scaled.out == f"scaled team {team.id} from 2 to 5 agents (added 3)\n"
    assert json.loads(godel(capsys, address, "--json", "team", "scale", team.id, "1").out)["currentSize"] == 1

    deleted = godel(capsys, address, "team", "delete", team.id)
    assert deleted.out == f"deleted team {team.id}\n" and team.id not in world.teams
    missing = godel(capsys, address, "team", "get", team.id)
    assert missing.code == 1 and "not found" in missing.err


def test_team_pause_and_resume(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    world, address = mesh
    team = world.add_team("busy")
    assert godel(capsys, address, "team", "pause", team.id).out == f"paused team {team.id}: now paused (0%)\n"
    refused = godel(capsys, address, "team", "pause", team.id)
    assert (
        refused.code == 1 and refused.err == f"error: cannot pause team {team.id}: the team is not active\n"
    )
    resumed = godel(capsys, address, "--json", "team", "resume", team.id)
    assert json.loads(resumed.out)["status"] == "TEAM_STATUS_ACTIVE"


# -- workflows -------------------------------------------------------------------------------------

PIPELINE = """\
name: release
steps:
  - id: build
    task: build the wheel
  - id: test
    task: run the tests
    dependsOn: [build]
"""


def _write(tmp_path: Path, text: str, name: str = "release.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_workflow_run_watch_prints_step_changes_then_a_table(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world, address = mesh
    path = _write(tmp_path, PIPELINE)
    result = godel(
        capsys,
        address,
        "workflow",
        "run",
        str(path),
        "--team",
        "t-1",
        "--context",
        '{"branch": "main"}',
        "--watch",
    )
    assert result.code == 0, result.err
    workflow_id = result.lines[0]
    assert result.lines[1:5] == [
        "step build  running    agent 1a2b3c4d…",
        "step build  completed  agent 1a2b3c4d…",
        "step test   running    agent 2a2b3c4d…",
        "step test   completed  agent 2a2b3c4d…",
    ]
    assert result.lines[5] == f"workflow {workflow_id} completed, took 42s"
    assert result.lines[6].split() == ["STEP", "STATUS", "DURATION", "RETRIES", "AGENT", "OUTPUT"]
    assert result.lines[7].split() == ["build", "completed", "7s", "0", "1a2b3c4d…", "build", "done", "more"]
    create = world.requests_of(workflow_service_pb2.CreateWorkflowRequest)[-1]
    assert (create.definition_text, create.start, create.team_id) == (PIPELINE, True, "t-1")
    assert dict(create.context) == {"branch": "main"}
    subscribe = world.requests_of(event_service_pb2.SubscribeEventsRequest)[-1]
    assert (list(subscribe.pattern), subscribe.workflow_id) == (["workflow:*"], workflow_id)


def test_workflow_with_a_failing_step_exits_1(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, address = mesh
    path = _write(tmp_path, PIPELINE.replace("run the tests", "fail the tests"))
    result = godel(capsys, address, "workflow", "run", str(path), "--watch")
    assert result.code == 1
    assert "step test   failed     agent 2a2b3c4d…  exit status 1 stack..." in result.lines
    assert result.lines[-1].split()[:3] == ["test", "failed", "7s"]
    assert "error: exit status 1 stack..." in result.lines[-1]


def test_workflow_watch_polls_when_there_is_no_event_stream(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world, address = mesh
    world.events_available = False
    result = godel(capsys, address, "workflow", "run", str(_write(tmp_path, PIPELINE)), "--watch")
    assert result.code == 0, result.err
    assert [line.split()[:3] for line in result.lines[1:5]] == [
        ["step", "build", "running"],
        ["step", "build", "completed"],
        ["step", "test", "running"],
        ["step", "test", "completed"],
    ]


def test_workflow_run_watch_json_is_one_look_per_line(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, address = mesh
    result = godel(capsys, address, "--json", "workflow", "run", str(_write(tmp_path, PIPELINE)), "--watch")
    assert result.code == 0
    looks = [json.loads(line) for line in result.lines]
    assert looks[0]["workflow"]["status"] == "WORKFLOW_STATUS_RUNNING"
    assert looks[-1]["workflow"]["status"] == "WORKFLOW_STATUS_COMPLETED"
    assert [s["status"] for s in looks[-1]["steps"]] == ["STEP_STATUS_COMPLETED"] * 2


def test_workflow_list_get_steps_control_delete(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world, address = mesh
    run_ = godel(capsys, address, "workflow", "run", str(_write(tmp_path, PIPELINE)))
    workflow_id = run_.out.strip()
    assert run_.code == 0 and workflow_id in world.workflows

    listing = godel(capsys, address, "workflow", "list", "--status", "running")
    assert listing.lines[0].split() == ["ID", "STATUS", "PROGRESS", "STEPS", "TEAM", "AGE", "NAME"]
    assert listing.lines[1].split()[:4] == [workflow_id, "running", "0%", "2"]
    assert "no workflows found" in godel(capsys, address, "workflow", "list", "--team", "nobody").err

    detail = godel(capsys, address, "workflow", "get", workflow_id).out
    assert re.search(r"^steps +build  build the wheel$", detail, re.MULTILINE)

    steps = godel(capsys, address, "workflow", "steps", workflow_id)
    assert [line.split()[:2] for line in steps.lines[1:]] == [["build", "running"], ["test", "pending"]]

    paused = godel(capsys, address, "workflow", "pause", workflow_id)
    assert paused.out == f"paused workflow {workflow_id}: now paused (0%)\n"
    assert godel(capsys, address, "workflow", "resume", workflow_id).code == 0
    cancelled = godel(capsys, address, "workflow", "cancel", workflow_id, "--reason", "wrong branch")
    assert cancelled.out == f"cancelled workflow {workflow_id}: now cancelled (0%)\n"
    assert world.requests_of(workflow_service_pb2.CancelWorkflowRequest)[-1].reason == "wrong branch"
    again = godel(capsys, address, "workflow", "cancel", workflow_id)
    assert again.code == 1 and f"cannot cancel workflow {workflow_id}: the workflow has ended" in again.err

    assert godel(capsys, address, "--json", "workflow", "delete", workflow_id).out == (
        json.dumps({"id": workflow_id, "deleted": True}, indent=2) + "\n"
    )


# -- tasks -----------------------------------------------------------------------------------------


def test_task_create_list_get_assign_complete(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    created = godel(
        capsys, address, "task", "create", "triage issue 42", "--priority", "high", "--team", "t-1",
        "--description", "label and route it",
    )  # fmt: skip
    task_id = created.out.strip()
    assert created.code == 0 and world.tasks[task_id].priority == task_pb2.TASK_PRIORITY_HIGH
    godel(capsys, address, "task", "create", "other")

    listing = godel(capsys, address, "task", "list", "--team", "t-1")
    assert listing.lines[0].split() == ["ID", "STATUS", "PRIORITY", "TEAM", "AGENT", "AGE", "TITLE"]
    assert len(listing.lines) == 2 and listing.lines[1].split()[:4] == [task_id, "pending", "high", "t-1"]

    detail = godel(capsys, address, "task", "get", task_id).out
    assert re.search(r"^description +label and route it$", detail, re.MULTILINE)

    assigned = godel(capsys, address, "task", "assign", task_id)
    assert assigned.out == f"assigned task {task_id} to agent idle-agent-1: now assigned\n"
    assert godel(capsys, address, "task", "assign", task_id, "--agent", "a-9").out.endswith(
        "agent a-9: now assigned\n"
    )

    completed = godel(capsys, address, "task", "complete", task_id, "--result", '{"labels": ["bug"]}')
    assert completed.out == f"completed task {task_id}: now completed\n"
    assert dict(world.requests_of(task_service_pb2.CompleteTaskRequest)[-1].result)["labels"] == ["bug"]
    failed = godel(capsys, address, "--json", "task", "complete", task_id, "--error", "cannot reproduce")
    assert json.loads(failed.out)["status"] == "TASK_STATUS_FAILED"


# -- budgets ---------------------------------------------------------------------------------------


def test_budget_set_list_get_delete(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    world, address = mesh
    result = godel(capsys, address, "budget", "set", "--team", "t-1", "25", "--period", "monthly")
    budget_id = result.out.split()[1].rstrip(":")
    assert result.out == f"budget {budget_id}: team:t-1 may spend $25.00 (monthly)\n"
    request = world.requests_of(budget_service_pb2.SetBudgetRequest)[-1]
    assert (request.entity_type, request.total_budget) == (budget_pb2.BUDGET_ENTITY_TYPE_TEAM, 25.0)
    assert request.period == budget_pb2.BUDGET_PERIOD_MONTHLY
    org = godel(capsys, address, "budget", "set", "--org", "acme", "100", "--currency", "EUR")
    assert org.out.endswith("organization:acme may spend 100.00 EUR (none)\n")

    listing = godel(capsys, address, "budget", "list")
    assert listing.lines[0].split() == ["ID", "ENTITY", "USED", "TOTAL", "USED%", "PERIOD"]
    assert listing.lines[1].split()[1:] == ["team:t-1", "$6.25", "$25.00", "25%", "monthly"]
    only_org = godel(capsys, address, "--json", "budget", "list", "--org", "acme")
    assert [b["entityId"] for b in json.loads(only_org.out)["budgets"]] == ["acme"]

    detail = godel(capsys, address, "budget", "get", budget_id).out
    assert re.search(r"^used +\$6\.25 \(25%\)$", detail, re.MULTILINE)
    assert godel(capsys, address, "budget", "delete", budget_id).out == f"deleted budget {budget_id}\n"
    assert budget_id not in world.budgets


# -- godel do --------------------------------------------------------------------------------------


def test_do_create_team_understands_creates_starts_and_follows(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    text = "create a team of 3 agents to review authentication code"
    result = godel(capsys, address, "do", text, "--", "claude", "-p", "{task}")
    assert result.code == 0, result.err
    assert result.lines[0] == 'Understood: create_team (95%) size=3 task="review authentication code"'
    (team_id,) = world.teams
    assert (
        result.lines[1] == f"created team {team_id} (review-authentication-code: strategy parallel, size 3)"
    )
    assert [PROGRESS_LINE.match(line) is not None for line in result.lines[2:6]] == [True] * 4
    assert result.lines[6].startswith(f"team {team_id} completed: 3/3 agents completed (100%)")
    swarm = world.requests_of(intent_service_pb2.GenerateSwarmConfigRequest)[-1]
    assert swarm.task == "review authentication code"
    create = world.requests_of(team_service_pb2.CreateTeamRequest)[-1]
    assert (create.name, create.task, create.config.size) == (
        "review-authentication-code",
        "review authentication code",
        3,
    )
    assert create.execution_strategy == team_pb2.EXECUTION_STRATEGY_PARALLEL
    assert list(create.config.command) == ["claude", "-p", "{task}"] and create.config.runtime == "command"


def test_do_dry_run_shows_the_plan_and_creates_nothing(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    result = godel(capsys, address, "do", "create a team of 4 agents to port the parser", "--dry-run")
    assert result.code == 0
    assert result.lines[:2] == [
        'Understood: create_team (95%) size=4 task="port parser"',
        "Plan (dry run, nothing done):",
    ]
    plan = "\n".join(result.lines[2:])
    for expected in (
        r"^action +create_team$",
        r"^name +port-parser$",
        r"^size +4$",
        r"^strategy +parallel$",
        r"^roles +1 worker \(kimi-k2\.5\)$",
    ):
        assert re.search(expected, plan, re.MULTILINE), (expected, plan)
    assert not world.teams and not world.requests_of(team_service_pb2.CreateTeamRequest)
    as_json = godel(capsys, address, "--json", "do", "scale team t-9 to 2", "--dry-run")
    intent, plan_doc = (json.loads(line) for line in as_json.lines)
    assert intent["intent"]["type"] == "INTENT_TYPE_SCALE_TEAM"
    assert plan_doc == {"plan": {"action": "scale_team", "team": "t-9", "size": 2}}


def test_do_scale_stop_and_status(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    world, address = mesh
    team = world.add_team("crew", task="x")
    scaled = godel(capsys, address, "do", f"scale team {team.id} to 2")
    assert scaled.code == 0 and scaled.lines[1] == f"scaled team {team.id} from 0 to 2 agents (added 2)"

    agent = world.add_agent("stuck")
    stopped = godel(capsys, address, "do", f"stop agent {agent.id}")
    assert stopped.lines[1] == f"killed agent {agent.id}: now killed/killed"
    kill = world.requests_of(agent_service_pb2.KillAgentRequest)[-1]
    assert (kill.id, kill.reason) == (agent.id, f"godel do: stop agent {agent.id}")

    status = godel(capsys, address, "do", "what is running")
    assert status.lines[0] == "Understood: query_status (80%)"
    assert (
        status.lines[1].split()[:2] == ["ID", "STATUS"] and team.id in status.out and agent.id in status.out
    )


def test_do_follows_the_parameters_of_the_real_parser(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """target/id for stop and status, delta for scale, inputs for a workflow's context."""
    world, address = mesh
    team = world.add_team("crew", task="x", agent_ids=["a1", "a2"])
    plan = godel(capsys, address, "--json", "do", f"add 2 agents to team {team.id}", "--dry-run")
    assert json.loads(plan.lines[1]) == {"plan": {"action": "scale_team", "team": team.id, "by": "+2 agents"}}
    grown = godel(capsys, address, "do", f"add 2 agents to team {team.id}")
    assert grown.lines[1] == f"scaled team {team.id} from 2 to 4 agents (added 2)"

    refused = godel(capsys, address, "do", f"stop team {team.id}")
    assert refused.code == 2 and "stops agents and workflows, not a team" in refused.err

    path = _write(tmp_path, PIPELINE)
    started = godel(capsys, address, "do", f"run workflow {path} with branch=main", "--no-watch")
    workflow_id = started.lines[1]
    assert dict(world.requests_of(workflow_service_pb2.CreateWorkflowRequest)[-1].context) == {
        "branch": "main"
    }
    shown = godel(capsys, address, "do", f"status of workflow {workflow_id}")
    assert re.search(rf"^id +{workflow_id}$", shown.out, re.MULTILINE)
    stopped = godel(capsys, address, "do", f"stop workflow {workflow_id}")
    assert stopped.lines[1] == f"cancelled workflow {workflow_id}"
    assert world.requests_of(workflow_service_pb2.CancelWorkflowRequest)[-1].reason.startswith(
        "godel do: stop"
    )

    world.add_agent("busy")
    world.add_agent("idle", status=agent_pb2.AGENT_STATUS_COMPLETED)
    running = godel(capsys, address, "do", "list running agents")
    assert running.lines[0] == "Understood: query_status (85%) filter=running target=agent"
    assert running.lines[1].split()[:2] == ["ID", "STATUS"]
    assert "busy" in running.out and "idle" not in running.out
    assert world.requests_of(agent_service_pb2.ListAgentsRequest)[-1].status == [
        agent_pb2.AGENT_STATUS_RUNNING
    ]


def test_do_spawn_agents_and_follow_them(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    result = godel(capsys, address, "do", "spawn 2 agents to fix the flaky test", "--", "/bin/true")
    assert result.code == 0, result.err
    created = world.requests_of(agent_service_pb2.CreateAgentRequest)
    assert [r.task for r in created] == ["fix flaky test"] * 2 and list(created[0].config.command) == [
        "/bin/true"
    ]
    ids = result.lines[1:3]
    assert set(ids) == set(world.agents)
    finished = [line for line in result.lines if "completed/completed" in line]
    assert {line.split()[1] for line in finished} == {f"{i[:8]}…" for i in ids}

    no_watch = godel(capsys, address, "do", "spawn 1 agent to say hi", "--no-watch")
    assert no_watch.code == 0 and len(no_watch.lines) == 2 and no_watch.lines[1] in world.agents


def test_do_execute_workflow_runs_the_named_file(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, address = mesh
    path = _write(tmp_path, PIPELINE)
    result = godel(capsys, address, "do", f"run workflow {path}")
    assert result.code == 0, result.err
    assert result.lines[0] == f"Understood: execute_workflow (95%) workflow={path}"
    assert "step test   completed  agent 2a2b3c4d…" in result.lines


def test_do_custom_request_prints_the_intent_and_a_hint(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    result = godel(capsys, address, "do", "sing me a song")
    assert result.code == 2
    assert result.out == 'Understood: custom (30%) text="sing me a song"\n'
    assert "don't know how to act on a custom request; try e.g." in result.err
    unknown = godel(capsys, address, "do", "run workflow 5e1f0000")
    assert unknown.code == 1 and "workflow '5e1f0000' not found" in unknown.err  # no file: taken as an id
    missing = godel(capsys, address, "do", "run workflow nope.yaml")
    assert missing.code == 2 and missing.err == "error: no workflow file nope.yaml\n"
    assert not world.teams


# -- parser errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["team", "create", "reviewers"], "the following arguments are required: --task"),
        (["team", "create", "r", "--task", "t", "--strategy", "swarm"], "invalid choice: 'swarm'"),
        (["team", "create", "r", "--task", "t", "--size", "0"], "must be greater than 0: '0'"),
        (["team", "scale", "t-1", "many"], "not a whole number: 'many'"),
        (["team", "list", "--status", "sleeping"], "invalid choice: 'sleeping'"),
        (["team", "start"], "the following arguments are required: id"),
        (["team", "list", "--", "echo"], "only accepted by `agent spawn`, `team create` and `do`"),
        (["workflow", "run", "/no/such/workflow.yaml"], "cannot read /no/such/workflow.yaml: No such file"),
        (["workflow", "run", "/dev/null", "--context", "[1, 2]"], "must be a JSON object"),
        (["task", "create", "t", "--priority", "urgent"], "invalid choice: 'urgent'"),
        (["task", "create", "  "], "must not be empty"),
        (["task", "complete", "t-1", "--result", "{}", "--error", "x"], "not allowed with argument --result"),
        (["budget", "set", "25"], "one of the arguments --agent --team --user --org is required"),
        (["budget", "set", "--agent", "a", "--team", "b", "25"], "not allowed with argument --agent"),
        (["budget", "set", "--team", "b", "-5"], "must not be negative: '-5'"),
        (["budget", "set", "--team", "b", "25", "--period", "hourly"], "invalid choice: 'hourly'"),
        (["do"], "the following arguments are required: text"),
    ],
)
def test_argument_errors_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    result = run(capsys, *argv)
    assert result.code == 2
    assert message in result.err, result.err


def test_do_dry_run_plan_shows_the_argv_after_double_dash(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    text = "spawn 2 agents to say hi"
    result = godel(capsys, address, "do", text, "--dry-run", "--", "/bin/echo", "hi there", "{task}")
    assert result.code == 0
    assert re.search(r"^command +/bin/echo 'hi there' '\{task\}'$", result.out, re.MULTILINE), result.out
    assert re.search(r"^runtime +command$", result.out, re.MULTILINE)
    assert not world.agents


# -- client and rendering ----------------------------------------------------------------------------


def test_enum_helpers_accept_cli_spellings_and_name_the_choices() -> None:
    assert execution_strategy("map-reduce") == team_pb2.EXECUTION_STRATEGY_MAP_REDUCE
    assert execution_strategy("EXECUTION_STRATEGY_TREE") == team_pb2.EXECUTION_STRATEGY_TREE
    assert task_priority(task_pb2.TaskPriority.ValueType(3)) == task_pb2.TASK_PRIORITY_HIGH
    with pytest.raises(
        ValueError, match=r"unknown task priority 'urgent' \(choose from low, medium, high, critical\)"
    ):
        task_priority("urgent")


def test_team_update_sends_only_the_fields_given_in_the_mask() -> None:
    request = teams.update_request("t-1", name="crew", max_agents=5, metadata={"owner": "ops"})
    assert list(request.update_mask.paths) == ["name", "config.max_agents", "metadata"]
    assert (request.team.id, request.team.name, request.team.config.max_agents) == ("t-1", "crew", 5)
    assert dict(request.team.metadata) == {"owner": "ops"}
    cleared = teams.update_request("t-1", description="")  # an empty value is a change too
    assert list(cleared.update_mask.paths) == ["description"]


def test_team_update_line_prefers_the_counts_the_event_carries() -> None:
    team = team_pb2.Team(id="t", status=ACTIVE, progress=40, agent_ids=["a" * 36, "b" * 36])
    agent_id = "3f2a1b2c-0000-4000-8000-000000000000"
    transition = agent_pb2.AgentTransition(
        agent_id=agent_id, to_status=agent_pb2.AGENT_STATUS_FAILED, reason="exit\nstatus 1"
    )
    failed = event_pb2.Event(
        type="agent:error",
        agent_failed=agent_events_pb2.AgentFailed(transition=transition, final=True),
        metadata=event_pb2.EventMetadata(agent_id=agent_id),
    )
    line = render.team_update_line(team_service_pb2.StartTeamResponse(team=team, event=failed))
    assert line == "[ 40%] agent:error  agent 3f2a1b2c… failed (2 agents) — exit status 1"
    progress = event_pb2.Event(
        type="team:progress", team_progress=team_events_pb2.TeamProgress(progress=40, completed=2, total=5)
    )
    line = render.team_update_line(team_service_pb2.StartTeamResponse(team=team, event=progress))
    assert line == "[ 40%] team:progress  team active (2/5)"
    bare = render.team_update_line(team_service_pb2.StartTeamResponse(team=team))
    assert bare == "[ 40%] team  active (2 agents)"
    team.status, team.progress = team_pb2.TEAM_STATUS_COMPLETED, 100
    end = event_pb2.Event(
        type="team:complete",
        team_completed=team_events_pb2.TeamCompleted(
            status=team_pb2.TEAM_STATUS_COMPLETED, completion_rate=0.75, members=4
        ),
    )
    line = render.team_update_line(team_service_pb2.StartTeamResponse(team=team, event=end))
    assert line == "[100%] team:complete  team completed (3/4)"
