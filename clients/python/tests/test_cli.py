"""The ``godel`` CLI and the client it runs on, against the fake mesh of tests/fakes.

The fake checks the ``x-api-key`` metadata, pages its listings two items at a time, moves agents by
the real state machine and fails with the real services' rich google.rpc statuses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from godel.v1 import agent_events_pb2, agent_pb2, agent_service_pb2, event_pb2, event_service_pb2
from godel_client import GodelClient, cli
from godel_deploy.ports import free_port
from tests.fakes.cli import godel, run
from tests.fakes.mesh import API_KEY, FakeMesh, moved, ts
from tests.waits import LineReader

RUNNING = agent_pb2.AGENT_STATUS_RUNNING
EXECUTING = agent_pb2.LIFECYCLE_STATE_EXECUTING
SPAWNED_AT = ts()  # 2026-11-25 19:30:02Z


def _event(
    sequence: int, type_: str, agent_id: str, **payload: Any
) -> event_service_pb2.SubscribeEventsResponse:
    body = struct_pb2.Struct()
    body.update(payload)
    event = event_pb2.Event(
        id=str(uuid.uuid4()),
        type=type_,
        sequence=sequence,
        timestamp=SPAWNED_AT,
        payload=body,
        metadata=event_pb2.EventMetadata(agent_id=agent_id),
    )
    return event_service_pb2.SubscribeEventsResponse(event=event)


def _started(sequence: int, agent_id: str) -> event_service_pb2.SubscribeEventsResponse:
    """An `agent:start` as the agent service publishes it (typed payload)."""
    transition = agent_pb2.AgentTransition(agent_id=agent_id, to_status=agent_pb2.AGENT_STATUS_RUNNING)
    event = event_pb2.Event(
        id=str(uuid.uuid4()),
        type="agent:start",
        sequence=sequence,
        timestamp=SPAWNED_AT,
        agent_started=agent_events_pb2.AgentStarted(transition=transition, session_id="s-1"),
        metadata=event_pb2.EventMetadata(agent_id=agent_id),
    )
    return event_service_pb2.SubscribeEventsResponse(event=event)


# -- agents ----------------------------------------------------------------------------------------


def test_spawn_prints_the_new_agent_id(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    result = godel(
        capsys, address, "agent", "spawn", "fix the flaky test", "--model", "gpt-4o", "--label", "flaky"
    )
    assert result.code == 0, result.err
    agent_id = result.out.strip()
    assert agent_id in state.agents
    assert state.agents[agent_id].task == "fix the flaky test"
    request = state.requests[-1]
    assert (request.model, request.label, request.config.runtime) == ("gpt-4o", "flaky", "")


def test_spawn_passes_the_argv_after_double_dash_to_the_command_runtime(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    options = ["--max-retries", "0", "--budget", "2.5", "--repo", "."]
    result = godel(
        capsys, address, "agent", "spawn", "say hi", *options, "--", "/bin/echo", "--loud", "{task}"
    )
    assert result.code == 0, result.err
    request = state.requests[-1]
    assert list(request.config.command) == ["/bin/echo", "--loud", "{task}"]
    assert request.config.runtime == "command"
    assert request.HasField("max_retries") and request.max_retries == 0
    assert request.budget_limit == 2.5
    assert request.repo == str(Path.cwd().resolve())  # a local path is sent absolute


def test_spawn_json_is_the_agent(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    result = godel(capsys, address, "--json", "agent", "spawn", "write docs")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["task"] == "write docs"
    assert document["status"] == "AGENT_STATUS_PENDING"
    assert document["id"] in state.agents


def test_list_shows_a_table_and_follows_pages(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    long_task = "refactor the scheduler so that it " + "really " * 20 + "scales"
    executing = agent_pb2.LIFECYCLE_STATE_EXECUTING
    agents = [state.add_agent(f"task {n}", model="gpt-4o", lifecycle_state=executing) for n in range(4)]
    config = agent_pb2.AgentConfig(runtime="command", command=["true"])
    agents.append(state.add_agent(long_task, model="gpt-4o", config=config, lifecycle_state=executing))
    result = godel(capsys, address, "agent", "list")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "LIFECYCLE", "RUNTIME", "MODEL", "AGE", "TASK"]
    assert len(lines) == 1 + len(agents)  # five agents over three pages of two
    for agent in agents:
        assert any(line.startswith(agent.id) for line in lines)
    assert lines[1].split()[1:3] == ["running", "executing"]
    assert "AGENT_STATUS" not in result.out
    big = next(line for line in lines if "scheduler" in line)
    assert big.split()[3] == "command"
    assert big.endswith("…") and long_task not in big
    # Columns line up: every row has STATUS where the header has it.
    column = lines[0].index("STATUS")
    assert all(line[column:].startswith("running") for line in lines[1:])


def test_list_filters_and_limit(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    for n in range(3):
        state.add_agent(f"running {n}")
    state.add_agent("done", status=agent_pb2.AGENT_STATUS_COMPLETED)
    result = godel(capsys, address, "agent", "list", "--status", "running", "--limit", "2")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 3
    request = state.requests[-1]
    assert list(request.status) == [agent_pb2.AGENT_STATUS_RUNNING]
    assert request.page_size == 2


def test_list_json_parses(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    ids = {state.add_agent(f"task {n}").id for n in range(3)}
    result = godel(capsys, address, "agent", "list", "--json")  # --json is accepted after the command too
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert {agent["id"] for agent in document["agents"]} == ids
    assert all(agent["status"] == "AGENT_STATUS_RUNNING" for agent in document["agents"])


def test_list_empty(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    result = godel(capsys, address, "agent", "list")
    assert (result.code, result.out) == (0, "")
    assert "no agents" in result.err
    assert json.loads(godel(capsys, address, "--json", "agent", "list").out) == {"agents": []}


def test_get_shows_the_agent(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    agent = state.add_agent("line one\nline two", model="gpt-4o", last_error="boom", budget_limit=5.0)
    result = godel(capsys, address, "agent", "get", agent.id)
    assert result.code == 0, result.err
    fields = {line.split()[0]: line for line in result.out.splitlines() if line and not line.startswith(" ")}
    assert agent.id in fields["id"]
    assert "running" in fields["status"]
    assert "gpt-4o" in fields["model"]
    assert "$0.00 of $5.00" in fields["budget"]
    assert "line two" in result.out
    assert json.loads(godel(capsys, address, "--json", "agent", "get", agent.id).out)["id"] == agent.id


def test_get_shows_result_commits_tokens_and_session(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    agent = state.add_agent(
        "ship it",
        status=agent_pb2.AGENT_STATUS_COMPLETED,
        lifecycle_state=agent_pb2.LIFECYCLE_STATE_COMPLETED,
        commits=["abc123 first", "def456 second"],
        worktree="/tmp/wt/1",
        result="all done",
        session_id="session-1",
        prompt_tokens=1200,
        completion_tokens=34,
        retry_count=1,
        max_retries=3,
        version=9,
    )
    result = godel(capsys, address, "agent", "get", agent.id)
    assert result.code == 0, result.err
    for expected in (
        "abc123 first",
        "def456 second",
        "/tmp/wt/1",
        "all done",
        "session-1",
        "1,200 prompt + 34 completion",
        "1 of 3",
    ):
        assert expected in result.out
    assert any(line.split() == ["version", "9"] for line in result.out.splitlines())


def test_get_unknown_agent_is_not_found(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = mesh
    result = godel(capsys, address, "agent", "get", "nope")
    assert result.code == 1
    assert result.err == "error: agent 'nope' not found\n"


def test_delete(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    agent = state.add_agent("doomed")
    result = godel(capsys, address, "agent", "delete", agent.id)
    assert result.code == 0, result.err
    assert agent.id in result.out and agent.id not in state.agents


# -- spawn options, watching ------------------------------------------------------------------------


def test_spawn_makes_a_relative_repo_absolute(
    mesh: tuple[FakeMesh, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    state, address = mesh
    monkeypatch.chdir(tmp_path)
    assert godel(capsys, address, "agent", "spawn", "t", "--repo", "work/repo").code == 0
    assert state.requests[-1].repo == str(tmp_path.resolve() / "work" / "repo")  # even when missing
    assert godel(capsys, address, "agent", "spawn", "t", "--repo", "/srv/repo").code == 0
    assert state.requests[-1].repo == "/srv/repo"


def test_spawn_sends_the_run_config(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    result = godel(
        capsys,
        address,
        "agent",
        "spawn",
        "summarise",
        "--runtime",
        "openai",
        "--endpoint",
        "http://127.0.0.1:8000/v1",
        "--timeout",
        "90.5",
        "--keep-worktree",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--team",
        "team-1",
        "--worker",
        "language=go",
        "--worker",
        "pool=gpu",
    )
    assert result.code == 0, result.err
    request = state.requests[-1]
    config = request.config
    assert dict(config.worker_selector) == {"language": "go", "pool": "gpu"}
    assert (config.runtime, config.endpoint, config.keep_worktree) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        True,
    )
    assert dict(config.env) == {"A": "1", "B": "x=y"}
    assert config.timeout.ToTimedelta().total_seconds() == 90.5
    assert list(config.command) == [] and request.team_id == "team-1"


def test_spawn_usage_errors(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    bad_env = godel(capsys, address, "agent", "spawn", "t", "--env", "NOVALUE")
    assert bad_env.code == 2 and "NAME=VALUE" in bad_env.err
    assert godel(capsys, address, "agent", "spawn", "t", "--runtime", "bash").code == 2
    assert godel(capsys, address, "agent", "spawn", "t", "--timeout", "0").code == 2


@pytest.fixture
def fast_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "WATCH_INTERVAL", 0.01)


@pytest.mark.timeout(60)
def test_spawn_watch_follows_the_agent_until_it_completes(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], fast_watch: None
) -> None:
    state, address = mesh
    created: list[str] = []

    def script(agent: agent_pb2.Agent) -> None:
        agent.updated_at.CopyFrom(SPAWNED_AT)
        running = moved(agent, RUNNING, EXECUTING)
        spent = moved(running, RUNNING, EXECUTING, budget_consumed=0.0123)
        done = moved(spent, agent_pb2.AGENT_STATUS_COMPLETED, agent_pb2.LIFECYCLE_STATE_COMPLETED)
        # Unchanged polls print nothing.
        state.progress[agent.id] = [running, running, spent, spent, done]
        created.append(agent.id)

    state.on_create = script
    result = godel(capsys, address, "agent", "spawn", "say hi", "--watch", "--", "/bin/echo", "hi")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == created[0]
    clock = SPAWNED_AT.ToDatetime(tzinfo=UTC).astimezone().strftime("%H:%M:%S")
    assert lines[1:] == [
        f"{clock}  pending/initializing  v1  $0.0000  (retries 0)",
        f"{clock}  running/executing  v2  $0.0000  (retries 0)",
        f"{clock}  running/executing  v3  $0.0123  (retries 0)",
        f"{clock}  completed/completed  v4  $0.0123  (retries 0)",
    ]


@pytest.mark.timeout(60)
def test_watch_waits_through_retries_and_exits_1_when_failed(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], fast_watch: None
) -> None:
    state, address = mesh
    agent = state.add_agent("flaky", version=2, max_retries=1)
    failed = agent_pb2.AGENT_STATUS_FAILED
    failed_state = agent_pb2.LIFECYCLE_STATE_FAILED
    retrying = moved(agent, failed, failed_state, retry_count=1, last_error="exit 1")  # a retry is coming
    retried = moved(retrying, RUNNING, EXECUTING)
    ended = moved(retried, failed, failed_state, last_error="exited with code 2", completed_at=SPAWNED_AT)
    # The first state is what the first GetAgent (of `agent get`) sees.
    state.progress[agent.id] = [agent, retrying, retried, ended]
    result = godel(capsys, address, "agent", "get", agent.id, "--watch")
    assert result.code == 1
    assert result.out.startswith("id ")  # the details first
    states = [line.split()[1] for line in result.out.splitlines() if " v" in line and "(retries" in line]
    assert states == ["running/executing", "failed/failed", "running/executing", "failed/failed"]
    assert result.err == f"agent {agent.id} failed: exited with code 2\n"


@pytest.mark.timeout(60)
def test_watch_json_is_ndjson(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], fast_watch: None
) -> None:
    state, address = mesh
    agent = state.add_agent("t", version=1)
    state.progress[agent.id] = [
        agent,
        moved(agent, agent_pb2.AGENT_STATUS_KILLED, agent_pb2.LIFECYCLE_STATE_KILLED),
    ]
    result = godel(capsys, address, "--json", "agent", "get", agent.id, "--watch")
    assert result.code == 1
    assert [json.loads(line)["status"] for line in result.out.splitlines()] == [
        "AGENT_STATUS_RUNNING",
        "AGENT_STATUS_KILLED",
    ]


NO_WORKER = "no worker is connected to agent-service replica agent-1"


def _state(
    agent: agent_pb2.Agent,
    status: agent_pb2.AgentStatus.ValueType,
    lifecycle: agent_pb2.LifecycleState.ValueType,
    version: int,
    **fields: Any,
) -> agent_pb2.Agent:
    """``agent`` moved to a state at an explicit version (a pending reason does not bump it)."""
    changed = moved(agent, status, lifecycle, **fields)
    changed.version = version
    return changed


def test_get_says_why_a_pending_agent_waits(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    agent = state.add_agent(
        "wait",
        status=agent_pb2.AGENT_STATUS_PENDING,
        lifecycle_state=agent_pb2.LIFECYCLE_STATE_INITIALIZING,
        pending_reason=agent_pb2.PENDING_REASON_NO_WORKER,
        pending_message=NO_WORKER,
    )
    result = godel(capsys, address, "agent", "get", agent.id)
    assert result.code == 0, result.err
    waiting = next(line for line in result.out.splitlines() if line.startswith("waiting"))
    assert NO_WORKER in waiting
    placed = state.add_agent("placed", status=agent_pb2.AGENT_STATUS_PENDING)
    assert "waiting" not in godel(capsys, address, "agent", "get", placed.id).out


@pytest.mark.timeout(60)
def test_watch_says_why_the_agent_waits_and_keeps_saying_it(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, address = mesh
    pending, initializing = agent_pb2.AGENT_STATUS_PENDING, agent_pb2.LIFECYCLE_STATE_INITIALIZING
    agent = state.add_agent("wait", status=pending, lifecycle_state=initializing, version=1)
    agent.updated_at.CopyFrom(SPAWNED_AT)
    waiting = _state(
        agent,
        pending,
        initializing,
        1,
        pending_reason=agent_pb2.PENDING_REASON_NO_WORKER,
        pending_message=NO_WORKER,
    )
    busy = _state(
        agent,
        pending,
        initializing,
        1,
        pending_reason=agent_pb2.PENDING_REASON_NO_FREE_SLOT,
        pending_message="",
    )
    running = _state(agent, RUNNING, agent_pb2.LIFECYCLE_STATE_EXECUTING, 2)
    done = _state(running, agent_pb2.AGENT_STATUS_COMPLETED, agent_pb2.LIFECYCLE_STATE_COMPLETED, 3)
    # Polls 5 s apart (a fake clock): the reason stays for 40 s, then changes, then the agent runs.
    state.progress[agent.id] = [agent, waiting, *[waiting] * 8, busy, busy, busy, busy, running, done]
    clock = [1000.0]  # never zero: the CLI must not assume where the monotonic clock starts
    monkeypatch.setattr(cli, "_clock", lambda: clock[0])
    monkeypatch.setattr(cli, "_wait", lambda seconds: clock.__setitem__(0, clock[0] + 5.0))

    result = godel(capsys, address, "agent", "get", agent.id, "--watch")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if " v" in line or line.startswith("still")]
    at = SPAWNED_AT.ToDatetime(tzinfo=UTC).astimezone().strftime("%H:%M:%S")
    assert lines == [
        f"{at}  pending/initializing  v1  $0.0000  (retries 0)",
        f"{at}  pending/initializing  v1  $0.0000  (retries 0)  waiting: {NO_WORKER}",
        f"still waiting for a worker after 15s: {NO_WORKER}",
        f"still waiting for a worker after 30s: {NO_WORKER}",
        f"{at}  pending/initializing  v1  $0.0000  (retries 0)  waiting: no free slot",
        "still waiting for a worker after 15s: no free slot",
        f"{at}  running/executing  v2  $0.0000  (retries 0)",
        f"{at}  completed/completed  v3  $0.0000  (retries 0)",
    ]
    json_state = mesh[0]
    json_state.progress[agent.id] = [waiting, waiting, waiting, waiting, done]
    ndjson = godel(capsys, address, "--json", "agent", "get", agent.id, "--watch").out.splitlines()
    assert [json.loads(line).get("pendingReason") for line in ndjson] == ["PENDING_REASON_NO_WORKER", None]


def test_workers_lists_free_slots(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    result = godel(capsys, address, "workers")
    assert result.code == 0, result.err
    row = next(line for line in result.out.splitlines() if line.startswith("worker-a"))
    assert row.split()[:4] == ["worker-a", "3/4", "1", "command,openai"]
    health = godel(capsys, address, "health")
    assert "WORKER" in health.out and "worker-a" in health.out


def test_list_watch_redraws_until_ctrl_c(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, address = mesh
    agent = state.add_agent("watch me")
    draws: list[float] = []

    def sleep(seconds: float) -> None:
        draws.append(seconds)
        if len(draws) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_wait", sleep)
    result = godel(capsys, address, "agent", "list", "--watch")
    assert result.code == 130
    assert draws == [1.0, 1.0]
    assert result.out.count("1 agent(s), every 1s") == 2
    assert result.out.count(agent.id) == 2
    assert "\x1b[" not in result.out  # no screen clearing when stdout is not a terminal
    assert result.err == ""


# -- control ---------------------------------------------------------------------------------------


def test_pause_resume_kill_restart_print_the_new_state(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    agent = state.add_agent("long job", version=4)
    paused = godel(capsys, address, "agent", "pause", agent.id)
    assert (paused.code, paused.out) == (0, f"paused agent {agent.id}: now paused/paused (v5)\n")
    resumed = godel(capsys, address, "agent", "resume", agent.id)
    assert resumed.out == f"resumed agent {agent.id}: now running/executing (v6)\n"
    killed = godel(capsys, address, "agent", "kill", agent.id, "--reason", "stuck")
    assert killed.out == f"killed agent {agent.id}: now killed/killed (v7)\n"
    assert state.requests[-1].reason == "stuck"
    restarted = godel(capsys, address, "--json", "agent", "restart", agent.id)
    assert json.loads(restarted.out)["lifecycleState"] == "LIFECYCLE_STATE_INITIALIZING"


def test_control_refused_by_the_state_is_one_clear_line(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    done = state.add_agent("done", status=agent_pb2.AGENT_STATUS_COMPLETED)
    result = godel(capsys, address, "agent", "pause", done.id)
    assert result.code == 1 and result.out == ""
    assert result.err == (
        f"error: cannot pause agent {done.id}: it is completed (allowed from: executing, waiting)\n"
    )
    running = state.add_agent("busy")
    resumed = godel(capsys, address, "agent", "resume", running.id)
    assert resumed.code == 1
    assert resumed.err == f"error: cannot resume agent {running.id}: it is executing (allowed from: paused)\n"
    missing = godel(capsys, address, "agent", "kill", "nope")
    assert (missing.code, missing.err) == (1, "error: agent 'nope' not found\n")


def test_client_maps_failed_precondition(mesh: tuple[FakeMesh, str]) -> None:
    from godel_client import FailedPreconditionError

    state, address = mesh
    done = state.add_agent("done", status=agent_pb2.AGENT_STATUS_KILLED)
    with GodelClient(address, api_key=API_KEY) as client, pytest.raises(FailedPreconditionError) as refused:
        client.agents.pause(done.id)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert "it is killed" in refused.value.message


# -- logs, history, sessions -----------------------------------------------------------------------


def _line(
    agent_id: str, sequence: int, message: str, stream: str = "stdout", session: str = "s1"
) -> agent_pb2.LogEntry:
    return agent_pb2.LogEntry(
        agent_id=agent_id,
        session_id=session,
        sequence=sequence,
        stream=stream,
        message=message,
        time=SPAWNED_AT,
    )


def test_logs_pages_and_sends_stderr_to_stderr(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    agent = state.add_agent("noisy")
    state.logs[agent.id] = [
        _line(agent.id, 1, "one"),
        _line(agent.id, 2, "warning!", "stderr"),
        _line(agent.id, 3, "three"),
        _line(agent.id, 4, "other session", session="s2"),
    ]
    result = godel(capsys, address, "agent", "logs", agent.id)
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["[stdout] one", "[stdout] three", "[stdout] other session"]
    assert result.err == "[stderr] warning!\n"
    only = godel(capsys, address, "agent", "logs", agent.id, "--session", "s2")
    assert only.out == "[stdout] other session\n"
    assert state.requests[-1].session_id == "s2"


def test_logs_follow_continues_after_the_last_line_and_ends_on_end(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    agent = state.add_agent("streaming")
    state.logs[agent.id] = [_line(agent.id, 1, "one"), _line(agent.id, 2, "two"), _line(agent.id, 3, "three")]
    state.log_stream = [
        agent_service_pb2.StreamAgentLogsResponse(entry=_line(agent.id, 4, "four")),
        agent_service_pb2.StreamAgentLogsResponse(entry=_line(agent.id, 5, "boom", "stderr")),
        agent_service_pb2.StreamAgentLogsResponse(
            end=agent_service_pb2.StreamEnd(code=0, message="agent completed")
        ),
        agent_service_pb2.StreamAgentLogsResponse(entry=_line(agent.id, 6, "after the end")),
    ]
    state.hold_stream_open = True  # only the in-band end may stop the CLI
    result = godel(capsys, address, "agent", "logs", agent.id, "-f")
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["[stdout] one", "[stdout] two", "[stdout] three", "[stdout] four"]
    assert result.err == "[stderr] boom\n"
    stream_request = state.requests[-1]
    assert isinstance(stream_request, agent_service_pb2.StreamAgentLogsRequest)
    assert stream_request.after_sequence == 3


def test_logs_follow_error_end(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    agent = state.add_agent("streaming")
    state.log_stream = [
        agent_service_pb2.StreamAgentLogsResponse(entry=_line(agent.id, 1, "one")),
        agent_service_pb2.StreamAgentLogsResponse(
            end=agent_service_pb2.StreamEnd(code=code_pb2.UNAVAILABLE, message="log store unavailable")
        ),
    ]
    result = godel(capsys, address, "agent", "logs", agent.id, "--follow")
    assert result.code == 1
    assert result.out == "[stdout] one\n"
    assert result.err == "error: log store unavailable\n"


def test_logs_follow_ctrl_c_exits_130_quietly(mesh: tuple[FakeMesh, str]) -> None:
    state, address = mesh
    agent = state.add_agent("forever")
    state.log_stream = [agent_service_pb2.StreamAgentLogsResponse(entry=_line(agent.id, 1, "tick"))]
    state.hold_stream_open = True
    first, code, err = _interrupt_after_first_line(address, "agent", "logs", agent.id, "-f")
    assert first == "[stdout] tick"
    assert code == 130
    assert err == ""


# Starts the CLI with SIGINT handled as Python does when a terminal's Ctrl-C can reach it (by
# raising KeyboardInterrupt): a suite started as a background job (`make test &` in a script)
# ignores SIGINT, and its children would too. The child sets this itself before it runs the CLI;
# `preexec_fn` would fork a pytest process with live gRPC threads, and such a child died before
# its exec in a loaded run (the CLI "ended" with no output).
_CLI_WITH_DEFAULT_SIGINT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('godel_client', run_name='__main__', alter_sys=True)"
)


def _interrupt_after_first_line(address: str, *argv: str) -> tuple[str, int, str]:
    """Runs `godel --addr address --api-key … argv` as a process, waits (with a deadline) for its
    first line of output, which shows its stream is open, then sends it SIGINT (Ctrl-C).
    Returns that line, the exit code and stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen(
        [sys.executable, "-c", _CLI_WITH_DEFAULT_SIGINT, "--addr", address, "--api-key", API_KEY, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        try:
            first = LineReader(process.stdout, f"godel {' '.join(argv)}").next_line(30, "its first output")
        except AssertionError as failure:
            process.kill()
            _, err = process.communicate(timeout=20)
            raise AssertionError(f"{failure}; exit code {process.returncode}, stderr: {err!r}") from None
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    return first, process.returncode, err


def test_history_and_sessions(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    agent = state.add_agent("audited")
    L = agent_pb2
    state.transitions[agent.id] = [
        L.AgentTransition(
            agent_id=agent.id,
            version=v,
            from_state=f,
            to_state=t,
            trigger=trigger,
            reason=reason,
            actor=actor,
            time=SPAWNED_AT,
        )
        for v, f, t, trigger, reason, actor in [
            (1, L.LIFECYCLE_STATE_UNSPECIFIED, L.LIFECYCLE_STATE_INITIALIZING, "create", "", "key-1"),
            (
                2,
                L.LIFECYCLE_STATE_INITIALIZING,
                L.LIFECYCLE_STATE_SPAWNING,
                "worktree_created",
                "",
                "worker-1",
            ),
            (3, L.LIFECYCLE_STATE_SPAWNING, L.LIFECYCLE_STATE_EXECUTING, "session_started", "", "worker-1"),
            (
                4,
                L.LIFECYCLE_STATE_EXECUTING,
                L.LIFECYCLE_STATE_PAUSED,
                "pause_command",
                "paused by key-1",
                "key-1",
            ),
        ]
    ]
    state.sessions[agent.id] = [
        L.Session(id="s1", agent_id=agent.id, status=L.SESSION_STATUS_FAILED, created_at=SPAWNED_AT),
        L.Session(id="s2", agent_id=agent.id, status=L.SESSION_STATUS_ACTIVE, created_at=SPAWNED_AT),
    ]
    history = godel(capsys, address, "agent", "history", agent.id)
    assert history.code == 0, history.err
    lines = history.out.splitlines()
    assert lines[0].split() == ["TIME", "FROM", "→", "TO", "TRIGGER", "REASON", "ACTOR"]
    assert len(lines) == 5  # four transitions over two pages
    assert "- → initializing" in lines[1]
    assert "executing → paused" in lines[4] and "pause_command" in lines[4] and "paused by key-1" in lines[4]
    document = json.loads(godel(capsys, address, "--json", "agent", "history", agent.id).out)
    assert [t["trigger"] for t in document["transitions"]][-1] == "pause_command"

    sessions = godel(capsys, address, "agent", "sessions", agent.id)
    assert sessions.code == 0, sessions.err
    rows = [line.split() for line in sessions.out.splitlines()]
    assert rows[0][:2] == ["ID", "STATUS"]
    assert [r[:2] for r in rows[1:]] == [["s1", "failed"], ["s2", "active"]]
    empty = state.add_agent("new")
    none = godel(capsys, address, "agent", "sessions", empty.id)
    assert (none.code, none.out, none.err) == (0, "", "no sessions found\n")


# -- errors ----------------------------------------------------------------------------------------


def test_unreachable_mesh(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = godel(capsys, address, "agent", "list")
    assert result.code == 1
    assert result.err.startswith(f"error: cannot reach Godel at {address}")
    assert "make up" in result.err
    assert "Traceback" not in result.err + result.out


def test_missing_key_gives_the_auth_hint(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = mesh
    result = run(capsys, "--addr", address, "agent", "list")
    assert result.code == 1
    assert result.err.startswith("error: missing or invalid credentials: run `godel login`, pass --api-key")
    assert len(result.err.splitlines()) == 1
    assert "Traceback" not in result.err


def test_invalid_argument_prints_the_field(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = mesh
    result = godel(capsys, address, "agent", "spawn", "   ")
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0] == "error: invalid request: task: must not be empty"
    assert "  field: task — must not be empty" in lines


def test_client_error_carries_code_and_details(mesh: tuple[FakeMesh, str]) -> None:
    from godel_client import InvalidArgumentError, NotFoundError

    _, address = mesh
    with GodelClient(address, api_key=API_KEY) as client:
        with pytest.raises(InvalidArgumentError) as invalid:
            client.agents.create("")
        assert invalid.value.code == "VALIDATION_ERROR"
        assert [(v.field, v.description) for v in invalid.value.violations] == [("task", "must not be empty")]
        with pytest.raises(NotFoundError) as missing:
            client.agents.get("nope")
        assert missing.value.code == "AGENT_NOT_FOUND"


def test_usage_errors_exit_2(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    assert godel(capsys, address, "agent").code == 2
    assert godel(capsys, address, "agent", "list", "--status", "sleeping").code == 2
    misplaced = godel(capsys, address, "agent", "list", "--", "echo")
    assert misplaced.code == 2 and "only accepted by `agent spawn`" in misplaced.err
    assert run(capsys, "--help").code == 0


# -- credentials -----------------------------------------------------------------------------------


def test_admin_key_file_in_godel_home(
    mesh: tuple[FakeMesh, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, address = mesh
    home = tmp_path / "home"
    home.mkdir()
    (home / "admin.key").write_text(API_KEY + "\n")
    monkeypatch.setenv("GODEL_HOME", str(home))
    assert run(capsys, "--addr", address, "agent", "list").code == 0


def test_credentials_file_and_env_key(
    mesh: tuple[FakeMesh, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, address = mesh
    monkeypatch.setenv("GODEL_ADDR", address)
    monkeypatch.setenv("GODEL_CREDENTIALS_FILE", str(tmp_path / "missing.key"))
    missing = run(capsys, "agent", "list")
    assert missing.code == 1 and "cannot read the API key file" in missing.err
    (tmp_path / "missing.key").write_text(API_KEY)
    assert run(capsys, "agent", "list").code == 0
    monkeypatch.setenv("GODEL_API_KEY", "wrong")  # the environment variable wins over the file
    assert "invalid API key" in run(capsys, "agent", "list").err


# -- events ----------------------------------------------------------------------------------------


def test_events_tail_prints_one_line_per_event(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    heartbeat = event_service_pb2.SubscribeEventsResponse(
        heartbeat=event_service_pb2.Heartbeat(last_sequence=6)
    )
    state.stream = [
        heartbeat,
        _started(7, "agent-1"),
        heartbeat,
        _event(8, "deploy:done", "agent-1", ok=True, note="all\ngood"),
        event_service_pb2.SubscribeEventsResponse(end=agent_service_pb2.StreamEnd(code=0)),
    ]
    patterns = ["--type", "agent:*", "--type", "deploy:*"]
    result = godel(capsys, address, "events", "tail", *patterns, "--agent", "agent-1", "--from-seq", "6")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        '2026-11-25 19:30:02Z  #7  agent:start  agent-1  {"sessionId":"s-1","transition":{"agentId":"agent-1",'
        '"toStatus":"AGENT_STATUS_RUNNING"}}',
        '2026-11-25 19:30:02Z  #8  deploy:done  agent-1  {"note":"all\\ngood","ok":true}',
    ]
    request = state.requests[-1]
    assert list(request.pattern) == ["agent:*", "deploy:*"]
    assert (request.agent_id, request.from_sequence) == ("agent-1", 6)


def test_events_tail_json_is_ndjson(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    state.stream = [_started(1, "a"), _event(2, "note:log", "a", line="hi")]
    result = godel(capsys, address, "--json", "events", "tail")
    assert result.code == 0, result.err
    documents = [json.loads(line) for line in result.out.splitlines()]
    assert [d["sequence"] for d in documents] == ["1", "2"]  # int64 is a string in proto3 JSON
    # A service event's typed payload under its oneof field's JSON name; a client event's payload.
    assert documents[0]["agentStarted"]["sessionId"] == "s-1" and "payload" not in documents[0]
    assert documents[1]["payload"] == {"line": "hi"}


def test_events_tail_error_end(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    state.stream = [
        _event(1, "agent:start", "a"),
        event_service_pb2.SubscribeEventsResponse(
            end=agent_service_pb2.StreamEnd(code=code_pb2.RESOURCE_EXHAUSTED, message="subscriber too slow")
        ),
    ]
    result = godel(capsys, address, "events", "tail")
    assert result.code == 1
    assert "#1" in result.out
    assert result.err == "error: subscriber too slow\n"


def test_events_tail_sends_every_filter_and_the_durable_subscription(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    state.stream = [event_service_pb2.SubscribeEventsResponse(end=agent_service_pb2.StreamEnd(code=0))]
    filters = ["--team", "t-1", "--workflow", "w-1", "--correlation", "c-1", "--trace", "tr-1"]
    result = godel(capsys, address, "events", "tail", *filters, "--source", "ci", "--subscription", "nightly")
    assert (result.code, result.out) == (0, ""), result.err
    request = state.requests_of(event_service_pb2.SubscribeEventsRequest)[-1]
    assert (request.team_id, request.workflow_id, request.correlation_id, request.trace_id) == (
        "t-1",
        "w-1",
        "c-1",
        "tr-1",
    )
    assert (request.source_component, request.subscription_name) == ("ci", "nightly")
    assert not request.HasField("from_sequence")  # a durable subscription resumes where it was


def test_events_query_filters_orders_and_limits(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    state.stream = [
        _event(1, "agent:start", "a"),
        _event(2, "team:start", "a"),
        _event(3, "agent:log", "a", line="hi"),
        _event(4, "agent:complete", "b"),
        _event(5, "agent:complete", "a"),
    ]
    options = ["--type", "agent:*", "--agent", "a", "--after-seq", "1", "--since", "2026-01-01", "--desc"]
    result = godel(capsys, address, "events", "query", *options, "--limit", "1")
    assert result.code == 0, result.err
    assert [line.split()[2:4] for line in result.lines] == [["#5", "agent:complete"]]
    assert result.err == "1 event(s)\n"
    request = state.requests_of(event_service_pb2.QueryEventsRequest)[-1]
    assert (list(request.type), request.agent_id, request.after_sequence) == (["agent:*"], "a", 1)
    assert request.order == event_service_pb2.SORT_ORDER_DESCENDING and request.page_size == 1
    assert request.start_time.ToJsonString() == "2026-01-01T00:00:00Z"
    everything = godel(capsys, address, "--json", "events", "query", "--type", "agent:*", "--agent", "a")
    # Oldest first, over three pages of the fake's two.
    assert [e["sequence"] for e in json.loads(everything.out)["events"]] == ["1", "3", "5"]


def test_events_publish_prints_the_id_of_the_stored_event(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    event_id = str(uuid.uuid4())
    result = godel(
        capsys, address, "events", "publish", "deploy:finished", "--payload", '{"ok": true}',
        "--workflow", "w-1", "--correlation", "c-1", "--id", event_id,
    )  # fmt: skip
    assert (result.code, result.out) == (0, f"{event_id}\n"), result.err
    (stored,) = [item.event for item in state.stream]
    assert (stored.type, dict(stored.payload), stored.source.component) == (
        "deploy:finished",
        {"ok": True},
        "cli",
    )
    assert (stored.metadata.workflow_id, stored.metadata.correlation_id) == ("w-1", "c-1")
    as_json = godel(capsys, address, "--json", "events", "publish", "deploy:started")
    assert json.loads(as_json.out)["type"] == "deploy:started"


def test_events_tail_ctrl_c_exits_quietly(mesh: tuple[FakeMesh, str]) -> None:
    state, address = mesh
    state.stream = [_event(1, "agent:start", "a")]
    state.hold_stream_open = True
    first, code, err = _interrupt_after_first_line(address, "events", "tail")
    assert "#1  agent:start" in first
    assert code == 0
    assert err == ""


# -- health and keys -------------------------------------------------------------------------------


def test_health_is_detailed_with_a_key(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = mesh
    result = godel(capsys, address, "health")
    assert result.code == 0, result.err
    assert "degraded" in result.out
    assert "COMPONENT" in result.out and "agent-service" in result.out and "1.2 ms" in result.out
    kafka = next(line for line in result.out.splitlines() if line.startswith("kafka"))
    assert "unhealthy" in kafka and "broker down" in kafka


def test_health_is_public_without_a_key(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = mesh
    result = run(capsys, "--addr", address, "health")
    assert result.code == 0, result.err
    assert "healthy" in result.out and "COMPONENT" not in result.out
    assert (
        json.loads(run(capsys, "--addr", address, "--json", "health").out)["status"]
        == "HEALTH_STATUS_HEALTHY"
    )


def test_keys_create_prints_the_secret_once(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = mesh
    result = godel(capsys, address, "keys", "create", "--name", "ci", "--role", "viewer")
    assert result.code == 0, result.err
    assert result.out == "godel_sk_new_secret\n"
    assert "not shown again" in result.err
    assert "viewer" in result.err
    document = json.loads(godel(capsys, address, "--json", "keys", "create", "--name", "ci").out)
    assert document["secret"] == "godel_sk_new_secret"
    assert document["apiKey"]["role"] == "developer"
