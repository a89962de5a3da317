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
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
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
from godel_client import GodelClient
from godel_client.cli import main

API_KEY = "godel_sk_test_0123456789"
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
        return self.mesh.add_agent(
            request.task,
            status=agent_pb2.AGENT_STATUS_PENDING,
            model=request.model or "gpt-4o",
            label=request.label,
            config=request.config,
            max_retries=request.max_retries if request.HasField("max_retries") else 3,
        )

    def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        _require_key(context)
        if request.id not in self.mesh.agents:
            _abort(context, code_pb2.NOT_FOUND, f"agent {request.id!r} not found", "AGENT_NOT_FOUND")
        return self.mesh.agents[request.id]

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
    agents = [state.add_agent(f"task {n}", model="gpt-4o") for n in range(4)]
    agents.append(state.add_agent(long_task, model="gpt-4o", label="big"))
    result = godel(capsys, address, "agent", "list")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "MODEL", "LABEL", "SPAWNED", "TASK"]
    assert len(lines) == 1 + len(agents)  # five agents over three pages of two
    for agent in agents:
        assert any(line.startswith(agent.id) for line in lines)
    assert "running" in lines[1] and "2026-11-25 19:30:02Z" in lines[1]
    assert "AGENT_STATUS" not in result.out
    big = next(line for line in lines if "big" in line)
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
