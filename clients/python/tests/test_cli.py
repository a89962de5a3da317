"""The ``godel`` CLI against an in-process fake of the Godel gRPC services.

The fake implements just enough of AgentService, EventService, SystemService and AuthService (on the
generated servicer base classes) to exercise the client: it checks the ``x-api-key`` metadata, pages
ListAgents two agents at a time and fails with rich google.rpc statuses like the real services.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, struct_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    system_service_pb2,
    system_service_pb2_grpc,
)
from godel_client import GodelClient, cli
from godel_client.cli import main

API_KEY = "godel_sk_test_0123456789"
RUNNING = agent_pb2.AGENT_STATUS_RUNNING
PAUSED = agent_pb2.AGENT_STATUS_PAUSED
SPAWNED_AT = timestamp_pb2.Timestamp(seconds=1795635002)  # 2026-11-25 19:30:02Z
PAGE_LIMIT = 2  # the fake pages ListAgents this small so that the client has to follow tokens


# -- the fake mesh ---------------------------------------------------------------------------------


def _abort(context: grpc.ServicerContext, code: int, message: str, reason: str, *extra: Any) -> None:
    info = error_details_pb2.ErrorInfo(reason=reason, domain="godel.dev")
    details = []
    for detail in (info, *extra):
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    context.abort_with_status(
        rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))
    )


def _require_key(context: grpc.ServicerContext) -> None:
    metadata = dict(context.invocation_metadata())
    if "x-api-key" not in metadata:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing credentials")
    if metadata["x-api-key"] != API_KEY:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")


@dataclass
class Mesh:
    """Shared state of the fake services, for the tests to arrange and inspect."""

    agents: dict[str, agent_pb2.Agent] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)
    stream: list[event_service_pb2.SubscribeEventsResponse] = field(default_factory=list)
    hold_stream_open: bool = False
    # Agent states GetAgent moves through, one per call (then the last one stays).
    progress: dict[str, list[agent_pb2.Agent]] = field(default_factory=dict)
    on_create: Callable[[agent_pb2.Agent], None] | None = None
    logs: dict[str, list[agent_pb2.LogEntry]] = field(default_factory=dict)
    log_stream: list[agent_service_pb2.StreamAgentLogsResponse] = field(default_factory=list)
    transitions: dict[str, list[agent_pb2.AgentTransition]] = field(default_factory=dict)
    sessions: dict[str, list[agent_pb2.Session]] = field(default_factory=dict)

    def add_agent(
        self,
        task: str,
        status: agent_pb2.AgentStatus.ValueType = agent_pb2.AGENT_STATUS_RUNNING,
        **kwargs: Any,
    ) -> agent_pb2.Agent:
        agent = agent_pb2.Agent(
            id=str(uuid.uuid4()), task=task, status=status, spawned_at=SPAWNED_AT, **kwargs
        )
        self.agents[agent.id] = agent
        return agent


class FakeAgents(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh

    def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        _require_key(context)
        self.mesh.requests.append(request)
        if not request.task.strip():
            violation = error_details_pb2.BadRequest.FieldViolation(
                field="task", description="must not be empty"
            )
            _abort(
                context,
                code_pb2.INVALID_ARGUMENT,
                "invalid request: task: must not be empty",
                "VALIDATION_ERROR",
                error_details_pb2.BadRequest(field_violations=[violation]),
            )
        agent = self.mesh.add_agent(
            request.task,
            status=agent_pb2.AGENT_STATUS_PENDING,
            model=request.model or "gpt-4o",
            label=request.label,
            config=request.config,
            max_retries=request.max_retries if request.HasField("max_retries") else 3,
        )
        if self.mesh.on_create is not None:
            self.mesh.on_create(agent)
        return agent

    def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        _require_key(context)
        self._agent(request.id, context)
        upcoming = self.mesh.progress.get(request.id)
        if upcoming:
            self.mesh.agents[request.id] = upcoming.pop(0)
        return self.mesh.agents[request.id]

    def _agent(self, agent_id: str, context: grpc.ServicerContext) -> agent_pb2.Agent:
        if agent_id not in self.mesh.agents:
            _abort(context, code_pb2.NOT_FOUND, f"agent {agent_id!r} not found", "AGENT_NOT_FOUND")
        return self.mesh.agents[agent_id]

    def _move(
        self,
        request: Any,
        context: grpc.ServicerContext,
        verb: str,
        allowed: dict[agent_pb2.AgentStatus.ValueType, tuple[agent_pb2.AgentStatus.ValueType, int]],
    ) -> agent_pb2.Agent:
        """Like the real state machine: FAILED_PRECONDITION naming the state when it forbids ``verb``."""
        _require_key(context)
        self.mesh.requests.append(request)
        agent = self._agent(request.id, context)
        if agent.status not in allowed:
            state = agent_pb2.AgentStatus.Name(agent.status).removeprefix("AGENT_STATUS_").lower()
            message = f"cannot {verb} agent {agent.id}: it is {state} (allowed from: executing, waiting)"
            if verb == "resume":  # a message without the verb, to check that the CLI adds it
                message = "the agent is not paused"
            _abort(context, code_pb2.FAILED_PRECONDITION, message, "FAILED_PRECONDITION")
        status, lifecycle = allowed[agent.status]
        agent.status, agent.lifecycle_state, agent.version = status, lifecycle, agent.version + 1  # type: ignore[assignment]
        return agent

    def PauseAgent(
        self, request: agent_service_pb2.PauseAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        return self._move(request, context, "pause", {RUNNING: (PAUSED, agent_pb2.LIFECYCLE_STATE_PAUSED)})

    def ResumeAgent(
        self, request: agent_service_pb2.ResumeAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        return self._move(
            request, context, "resume", {PAUSED: (RUNNING, agent_pb2.LIFECYCLE_STATE_EXECUTING)}
        )

    def KillAgent(
        self, request: agent_service_pb2.KillAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        killed = (agent_pb2.AGENT_STATUS_KILLED, agent_pb2.LIFECYCLE_STATE_KILLED)
        return self._move(request, context, "kill", {RUNNING: killed, PAUSED: killed})

    def RestartAgent(
        self, request: agent_service_pb2.RestartAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        pending = (agent_pb2.AGENT_STATUS_PENDING, agent_pb2.LIFECYCLE_STATE_INITIALIZING)
        ended = (
            agent_pb2.AGENT_STATUS_COMPLETED,
            agent_pb2.AGENT_STATUS_FAILED,
            agent_pb2.AGENT_STATUS_KILLED,
        )
        return self._move(request, context, "restart", dict.fromkeys((RUNNING, PAUSED, *ended), pending))

    def GetAgentLogs(
        self, request: agent_service_pb2.GetAgentLogsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.GetAgentLogsResponse:
        _require_key(context)
        self.mesh.requests.append(request)
        self._agent(request.id, context)
        lines = [
            e
            for e in self.mesh.logs.get(request.id, [])
            if not request.session_id or e.session_id == request.session_id
        ]
        start = int(request.page_token or 0)
        end = start + min(request.page_size or 100, PAGE_LIMIT)
        token = str(end) if end < len(lines) else ""
        return agent_service_pb2.GetAgentLogsResponse(entries=lines[start:end], next_page_token=token)

    def StreamAgentLogs(
        self, request: agent_service_pb2.StreamAgentLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_service_pb2.StreamAgentLogsResponse]:
        _require_key(context)
        self.mesh.requests.append(request)
        self._agent(request.id, context)
        yield from self.mesh.log_stream
        while self.mesh.hold_stream_open and context.is_active():
            time.sleep(0.05)

    def ListAgentTransitions(
        self, request: agent_service_pb2.ListAgentTransitionsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentTransitionsResponse:
        _require_key(context)
        self._agent(request.id, context)
        found = self.mesh.transitions.get(request.id, [])
        start = int(request.page_token or 0)
        end = start + PAGE_LIMIT
        token = str(end) if end < len(found) else ""
        return agent_service_pb2.ListAgentTransitionsResponse(
            transitions=found[start:end], next_page_token=token
        )

    def ListAgentSessions(
        self, request: agent_service_pb2.ListAgentSessionsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentSessionsResponse:
        _require_key(context)
        self._agent(request.id, context)
        return agent_service_pb2.ListAgentSessionsResponse(sessions=self.mesh.sessions.get(request.id, []))

    def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        _require_key(context)
        self.mesh.requests.append(request)
        matching = [
            a
            for a in self.mesh.agents.values()
            if (not request.status or a.status in request.status)
            and (not request.model or a.model == request.model)
        ]
        start = int(request.page_token or 0)
        end = start + min(request.page_size or 50, PAGE_LIMIT)
        token = str(end) if end < len(matching) else ""
        return agent_service_pb2.ListAgentsResponse(agents=matching[start:end], next_page_token=token)

    def DeleteAgent(
        self, request: agent_service_pb2.DeleteAgentRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.DeleteAgentResponse:
        _require_key(context)
        if self.mesh.agents.pop(request.id, None) is None:
            _abort(context, code_pb2.NOT_FOUND, f"agent {request.id!r} not found", "AGENT_NOT_FOUND")
        return agent_service_pb2.DeleteAgentResponse()


class FakeEvents(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh

    def SubscribeEvents(
        self, request: event_service_pb2.SubscribeEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[event_service_pb2.SubscribeEventsResponse]:
        _require_key(context)
        self.mesh.requests.append(request)
        yield from self.mesh.stream
        while self.mesh.hold_stream_open and context.is_active():
            time.sleep(0.05)


class FakeSystem(system_service_pb2_grpc.SystemServiceServicer):
    def GetHealth(
        self, request: system_service_pb2.GetHealthRequest, context: grpc.ServicerContext
    ) -> system_service_pb2.GetHealthResponse:
        return system_service_pb2.GetHealthResponse(
            status=system_service_pb2.HEALTH_STATUS_HEALTHY, version="0.1.0", time=SPAWNED_AT
        )

    def GetDetailedHealth(
        self, request: system_service_pb2.GetDetailedHealthRequest, context: grpc.ServicerContext
    ) -> system_service_pb2.GetDetailedHealthResponse:
        _require_key(context)
        return system_service_pb2.GetDetailedHealthResponse(
            status=system_service_pb2.HEALTH_STATUS_DEGRADED,
            version="0.1.0",
            time=SPAWNED_AT,
            components=[
                system_service_pb2.ComponentHealth(
                    name="agent-service", status=system_service_pb2.HEALTH_STATUS_HEALTHY, latency_ms=1.25
                ),
                system_service_pb2.ComponentHealth(
                    name="kafka", status=system_service_pb2.HEALTH_STATUS_UNHEALTHY, message="broker down"
                ),
            ],
        )


class FakeAuth(auth_service_pb2_grpc.AuthServiceServicer):
    def CreateApiKey(
        self, request: auth_service_pb2.CreateApiKeyRequest, context: grpc.ServicerContext
    ) -> auth_service_pb2.CreateApiKeyResponse:
        _require_key(context)
        key = auth_service_pb2.ApiKey(id="key-1", name=request.name, role=request.role, prefix="godel_sk_new")
        return auth_service_pb2.CreateApiKeyResponse(api_key=key, secret="godel_sk_new_secret")


@pytest.fixture
def mesh() -> Iterator[tuple[Mesh, str]]:
    state = Mesh()
    # The fakes implement only the methods the client calls; the rest answer UNIMPLEMENTED.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(FakeAgents(state), server)  # type: ignore[abstract]
    event_service_pb2_grpc.add_EventServiceServicer_to_server(FakeEvents(state), server)  # type: ignore[abstract]
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(FakeSystem(), server)  # type: ignore[abstract]
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield state, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials leak in from the developer's shell or the checkout's .data/admin.key."""
    for name in ("GODEL_ADDR", "GODEL_API_KEY", "GODEL_CREDENTIALS_FILE", "GODEL_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GODEL_HOME", str(tmp_path / "godel-home"))


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def godel(capsys: pytest.CaptureFixture[str], address: str, *argv: str) -> Run:
    return run(capsys, "--addr", address, "--api-key", API_KEY, *argv)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


# -- agents ----------------------------------------------------------------------------------------


def test_spawn_prints_the_new_agent_id(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
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
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
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


def test_spawn_json_is_the_agent(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    result = godel(capsys, address, "--json", "agent", "spawn", "write docs")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["task"] == "write docs"
    assert document["status"] == "AGENT_STATUS_PENDING"
    assert document["id"] in state.agents


def test_list_shows_a_table_and_follows_pages(
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
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


def test_list_filters_and_limit(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
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


def test_list_json_parses(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    ids = {state.add_agent(f"task {n}").id for n in range(3)}
    result = godel(capsys, address, "agent", "list", "--json")  # --json is accepted after the command too
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert {agent["id"] for agent in document["agents"]} == ids
    assert all(agent["status"] == "AGENT_STATUS_RUNNING" for agent in document["agents"])


def test_list_empty(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    result = godel(capsys, address, "agent", "list")
    assert (result.code, result.out) == (0, "")
    assert "no agents" in result.err
    assert json.loads(godel(capsys, address, "--json", "agent", "list").out) == {"agents": []}


def test_get_shows_the_agent(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
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
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
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


def test_get_unknown_agent_is_not_found(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    result = godel(capsys, address, "agent", "get", "nope")
    assert result.code == 1
    assert result.err == "error: agent 'nope' not found\n"


def test_delete(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    agent = state.add_agent("doomed")
    result = godel(capsys, address, "agent", "delete", agent.id)
    assert result.code == 0, result.err
    assert agent.id in result.out and agent.id not in state.agents


# -- spawn options, watching ------------------------------------------------------------------------


def test_spawn_makes_a_relative_repo_absolute(
    mesh: tuple[Mesh, str],
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


def test_spawn_sends_the_run_config(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
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
    )
    assert result.code == 0, result.err
    request = state.requests[-1]
    config = request.config
    assert (config.runtime, config.endpoint, config.keep_worktree) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        True,
    )
    assert dict(config.env) == {"A": "1", "B": "x=y"}
    assert config.timeout.ToTimedelta().total_seconds() == 90.5
    assert list(config.command) == [] and request.team_id == "team-1"


def test_spawn_usage_errors(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    bad_env = godel(capsys, address, "agent", "spawn", "t", "--env", "NOVALUE")
    assert bad_env.code == 2 and "NAME=VALUE" in bad_env.err
    assert godel(capsys, address, "agent", "spawn", "t", "--runtime", "bash").code == 2
    assert godel(capsys, address, "agent", "spawn", "t", "--timeout", "0").code == 2


def _state(
    agent: agent_pb2.Agent,
    status: agent_pb2.AgentStatus.ValueType,
    lifecycle: agent_pb2.LifecycleState.ValueType,
    version: int,
    **fields: Any,
) -> agent_pb2.Agent:
    changed = agent_pb2.Agent()
    changed.CopyFrom(agent)
    changed.status, changed.lifecycle_state, changed.version = status, lifecycle, version
    for name, value in fields.items():
        if name == "completed_at":
            changed.completed_at.CopyFrom(value)
        else:
            setattr(changed, name, value)
    return changed


@pytest.fixture
def fast_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "WATCH_INTERVAL", 0.01)


@pytest.mark.timeout(60)
def test_spawn_watch_follows_the_agent_until_it_completes(
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str], fast_watch: None
) -> None:
    state, address = mesh
    created: list[str] = []

    def script(agent: agent_pb2.Agent) -> None:
        agent.version = 1
        agent.updated_at.CopyFrom(SPAWNED_AT)
        running = _state(agent, RUNNING, agent_pb2.LIFECYCLE_STATE_EXECUTING, 2)
        spent = _state(agent, RUNNING, agent_pb2.LIFECYCLE_STATE_EXECUTING, 3, budget_consumed=0.0123)
        done = _state(spent, agent_pb2.AGENT_STATUS_COMPLETED, agent_pb2.LIFECYCLE_STATE_COMPLETED, 4)
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
        f"{clock}  pending/unspecified  v1  $0.0000  (retries 0)",
        f"{clock}  running/executing  v2  $0.0000  (retries 0)",
        f"{clock}  running/executing  v3  $0.0123  (retries 0)",
        f"{clock}  completed/completed  v4  $0.0123  (retries 0)",
    ]


@pytest.mark.timeout(60)
def test_watch_waits_through_retries_and_exits_1_when_failed(
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str], fast_watch: None
) -> None:
    state, address = mesh
    agent = state.add_agent(
        "flaky", lifecycle_state=agent_pb2.LIFECYCLE_STATE_EXECUTING, version=2, max_retries=1
    )
    failed = agent_pb2.AGENT_STATUS_FAILED
    failed_state = agent_pb2.LIFECYCLE_STATE_FAILED
    state.progress[agent.id] = [
        agent,  # what the first GetAgent (of `agent get`) sees
        _state(agent, failed, failed_state, 3, retry_count=1, last_error="exit 1"),  # a retry is coming
        _state(agent, RUNNING, agent_pb2.LIFECYCLE_STATE_EXECUTING, 4, retry_count=1),
        _state(
            agent,
            failed,
            failed_state,
            5,
            retry_count=1,
            last_error="exited with code 2",
            completed_at=SPAWNED_AT,
        ),
    ]
    result = godel(capsys, address, "agent", "get", agent.id, "--watch")
    assert result.code == 1
    assert result.out.startswith("id ")  # the details first
    states = [line.split()[1] for line in result.out.splitlines() if " v" in line and "(retries" in line]
    assert states == ["running/executing", "failed/failed", "running/executing", "failed/failed"]
    assert result.err == f"agent {agent.id} failed: exited with code 2\n"


@pytest.mark.timeout(60)
def test_watch_json_is_ndjson(
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str], fast_watch: None
) -> None:
    state, address = mesh
    agent = state.add_agent("t", version=1)
    state.progress[agent.id] = [
        agent,
        _state(agent, agent_pb2.AGENT_STATUS_KILLED, agent_pb2.LIFECYCLE_STATE_KILLED, 2),
    ]
    result = godel(capsys, address, "--json", "agent", "get", agent.id, "--watch")
    assert result.code == 1
    assert [json.loads(line)["status"] for line in result.out.splitlines()] == [
        "AGENT_STATUS_RUNNING",
        "AGENT_STATUS_KILLED",
    ]


def test_list_watch_redraws_until_ctrl_c(
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
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
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    agent = state.add_agent("long job", lifecycle_state=agent_pb2.LIFECYCLE_STATE_EXECUTING, version=4)
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
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    done = state.add_agent("done", status=agent_pb2.AGENT_STATUS_COMPLETED)
    result = godel(capsys, address, "agent", "pause", done.id)
    assert result.code == 1 and result.out == ""
    assert result.err == (
        f"error: cannot pause agent {done.id}: it is completed (allowed from: executing, waiting)\n"
    )
    # A server message that does not say what was refused gets the verb and the id.
    running = state.add_agent("busy")
    resumed = godel(capsys, address, "agent", "resume", running.id)
    assert resumed.code == 1
    assert resumed.err == f"error: cannot resume agent {running.id}: the agent is not paused\n"
    missing = godel(capsys, address, "agent", "kill", "nope")
    assert (missing.code, missing.err) == (1, "error: agent 'nope' not found\n")


def test_client_maps_failed_precondition(mesh: tuple[Mesh, str]) -> None:
    from godel_client import FailedPreconditionError

    state, address = mesh
    done = state.add_agent("done", status=agent_pb2.AGENT_STATUS_KILLED)
    with GodelClient(address, api_key=API_KEY) as client, pytest.raises(FailedPreconditionError) as refused:
        client.pause_agent(done.id)
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
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
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
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
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


def test_logs_follow_error_end(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
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


def test_logs_follow_ctrl_c_exits_130_quietly(mesh: tuple[Mesh, str]) -> None:
    state, address = mesh
    agent = state.add_agent("forever")
    state.log_stream = [agent_service_pb2.StreamAgentLogsResponse(entry=_line(agent.id, 1, "tick"))]
    state.hold_stream_open = True
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    argv = ["--addr", address, "--api-key", API_KEY, "agent", "logs", agent.id, "-f"]
    process = subprocess.Popen(
        [sys.executable, "-m", "godel_client", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert first == "[stdout] tick\n"
    assert process.returncode == 130
    assert err == ""


def test_history_and_sessions(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
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
    address = f"127.0.0.1:{_free_port()}"
    result = godel(capsys, address, "agent", "list")
    assert result.code == 1
    assert result.err.startswith(f"error: cannot reach Godel at {address}")
    assert "make up" in result.err
    assert "Traceback" not in result.err + result.out


def test_missing_key_gives_the_auth_hint(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    result = run(capsys, "--addr", address, "agent", "list")
    assert result.code == 1
    assert result.err.startswith("error: missing or invalid API key: set GODEL_API_KEY")
    assert len(result.err.splitlines()) == 1
    assert "Traceback" not in result.err


def test_invalid_argument_prints_the_field(
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = mesh
    result = godel(capsys, address, "agent", "spawn", "   ")
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0] == "error: invalid request: task: must not be empty"
    assert "  field: task — must not be empty" in lines


def test_client_error_carries_code_and_details(mesh: tuple[Mesh, str]) -> None:
    from godel_client import InvalidArgumentError, NotFoundError

    _, address = mesh
    with GodelClient(address, api_key=API_KEY) as client:
        with pytest.raises(InvalidArgumentError) as invalid:
            client.create_agent("")
        assert invalid.value.code == "VALIDATION_ERROR"
        assert [(v.field, v.description) for v in invalid.value.violations] == [("task", "must not be empty")]
        with pytest.raises(NotFoundError) as missing:
            client.get_agent("nope")
        assert missing.value.code == "AGENT_NOT_FOUND"


def test_usage_errors_exit_2(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    assert godel(capsys, address, "agent").code == 2
    assert godel(capsys, address, "agent", "list", "--status", "sleeping").code == 2
    misplaced = godel(capsys, address, "agent", "list", "--", "echo")
    assert misplaced.code == 2 and "only accepted by `agent spawn`" in misplaced.err
    assert run(capsys, "--help").code == 0


# -- credentials -----------------------------------------------------------------------------------


def test_admin_key_file_in_godel_home(
    mesh: tuple[Mesh, str],
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
    mesh: tuple[Mesh, str],
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
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    heartbeat = event_service_pb2.SubscribeEventsResponse(
        heartbeat=event_service_pb2.Heartbeat(last_sequence=6)
    )
    state.stream = [
        heartbeat,
        _event(7, "agent:start", "agent-1", pid=42),
        heartbeat,
        _event(8, "agent:complete", "agent-1", ok=True, note="all\ngood"),
        event_service_pb2.SubscribeEventsResponse(end=agent_service_pb2.StreamEnd(code=0)),
    ]
    patterns = ["--type", "agent:*", "--type", "team:*"]
    result = godel(capsys, address, "events", "tail", *patterns, "--agent", "agent-1", "--from-seq", "6")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        '2026-11-25 19:30:02Z  #7  agent:start  agent-1  {"pid":42}',
        '2026-11-25 19:30:02Z  #8  agent:complete  agent-1  {"note":"all\\ngood","ok":true}',
    ]
    request = state.requests[-1]
    assert list(request.pattern) == ["agent:*", "team:*"]
    assert (request.agent_id, request.from_sequence) == ("agent-1", 6)


def test_events_tail_json_is_ndjson(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    state.stream = [_event(1, "agent:start", "a"), _event(2, "agent:log", "a", line="hi")]
    result = godel(capsys, address, "--json", "events", "tail")
    assert result.code == 0, result.err
    documents = [json.loads(line) for line in result.out.splitlines()]
    assert [d["sequence"] for d in documents] == ["1", "2"]  # int64 is a string in proto3 JSON
    assert documents[1]["payload"] == {"line": "hi"}


def test_events_tail_error_end(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
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


def test_events_tail_ctrl_c_exits_quietly(mesh: tuple[Mesh, str]) -> None:
    state, address = mesh
    state.stream = [_event(1, "agent:start", "a")]
    state.hold_stream_open = True
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen(
        [sys.executable, "-m", "godel_client", "--addr", address, "--api-key", API_KEY, "events", "tail"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the event arrived: the stream is open
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert "#1  agent:start" in first
    assert process.returncode == 0
    assert err == ""


# -- health and keys -------------------------------------------------------------------------------


def test_health_is_detailed_with_a_key(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    result = godel(capsys, address, "health")
    assert result.code == 0, result.err
    assert "degraded" in result.out
    assert "COMPONENT" in result.out and "agent-service" in result.out and "1.2 ms" in result.out
    kafka = next(line for line in result.out.splitlines() if line.startswith("kafka"))
    assert "unhealthy" in kafka and "broker down" in kafka


def test_health_is_public_without_a_key(mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    result = run(capsys, "--addr", address, "health")
    assert result.code == 0, result.err
    assert "healthy" in result.out and "COMPONENT" not in result.out
    assert (
        json.loads(run(capsys, "--addr", address, "--json", "health").out)["status"]
        == "HEALTH_STATUS_HEALTHY"
    )


def test_keys_create_prints_the_secret_once(
    mesh: tuple[Mesh, str], capsys: pytest.CaptureFixture[str]
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
