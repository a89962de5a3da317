"""Helpers for agent-execution tests: spawning through gRPC, waiting for states, finding processes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
)
from tests.conftest import RunningMesh

L = agent_pb2


class Agents:
    def __init__(self, godel: RunningMesh, target: str | None = None) -> None:
        self.godel = godel
        self.channel = godel.channel(target)
        self.stub = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        self.events = event_service_pb2_grpc.EventServiceStub(godel.channel(godel.mesh.address("event")))
        self.md = godel.metadata()

    def spawn(
        self,
        argv: list[str],
        *,
        task: str = "test task",
        max_retries: int = 0,
        timeout_s: int = 0,
        runtime: str = "command",
        **fields: object,
    ) -> agent_pb2.Agent:
        config = agent_pb2.AgentConfig(runtime=runtime, command=argv)
        if timeout_s:
            config.timeout.CopyFrom(duration_pb2.Duration(seconds=timeout_s))
        request = agent_service_pb2.CreateAgentRequest(task=task, config=config, max_retries=max_retries)
        for name, value in fields.items():
            if name == "config":
                request.config.MergeFrom(value)  # type: ignore[arg-type]
            else:
                setattr(request, name, value)
        agent: agent_pb2.Agent = self.stub.CreateAgent(request, metadata=self.md, timeout=15)
        return agent

    def get(self, agent_id: str) -> agent_pb2.Agent:
        agent: agent_pb2.Agent = self.stub.GetAgent(
            agent_service_pb2.GetAgentRequest(id=agent_id), metadata=self.md, timeout=10
        )
        return agent

    def wait(
        self, agent_id: str, done: Callable[[agent_pb2.Agent], bool], timeout: float = 30.0, what: str = ""
    ) -> agent_pb2.Agent:
        deadline = time.monotonic() + timeout
        agent = self.get(agent_id)
        while not done(agent):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"agent {agent_id} not {what or 'ready'} after {timeout}s: "
                    f"{L.LifecycleState.Name(agent.lifecycle_state)} last_error={agent.last_error!r}"
                )
            time.sleep(0.1)
            agent = self.get(agent_id)
        return agent

    def wait_state(
        self, agent_id: str, state: agent_pb2.LifecycleState.ValueType, timeout: float = 30.0
    ) -> agent_pb2.Agent:
        return self.wait(
            agent_id, lambda a: a.lifecycle_state == state, timeout, L.LifecycleState.Name(state)
        )

    def wait_final(self, agent_id: str, timeout: float = 30.0) -> agent_pb2.Agent:
        """Completed, killed, or failed with no retry pending."""

        def final(a: agent_pb2.Agent) -> bool:
            if a.lifecycle_state in (L.LIFECYCLE_STATE_COMPLETED, L.LIFECYCLE_STATE_KILLED):
                return True
            # A failed agent with a retry pending has no completion time yet.
            return a.lifecycle_state == L.LIFECYCLE_STATE_FAILED and a.HasField("completed_at")

        return self.wait(agent_id, final, timeout, "finished")

    def logs(self, agent_id: str) -> list[agent_pb2.LogEntry]:
        entries: list[agent_pb2.LogEntry] = []
        token = ""
        while True:
            page = self.stub.GetAgentLogs(
                agent_service_pb2.GetAgentLogsRequest(id=agent_id, page_size=100, page_token=token),
                metadata=self.md,
                timeout=10,
            )
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return entries

    def event_types(self, agent_id: str, pattern: str = "*") -> list[str]:
        response = self.events.QueryEvents(
            event_service_pb2.QueryEventsRequest(type=[pattern], agent_id=agent_id, page_size=1000),
            metadata=self.md,
            timeout=10,
        )
        return [e.type for e in response.events]

    def wait_events(self, agent_id: str, expected: list[str], timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            types = self.event_types(agent_id)
            if all(t in types for t in expected):
                return types
            if time.monotonic() > deadline:
                raise AssertionError(f"events of {agent_id}: {types}, missing {set(expected) - set(types)}")
            time.sleep(0.2)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


def pids_with(marker: str) -> list[int]:
    """Processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def proc_state(pid: int) -> str:
    """The one-letter state of /proc/<pid>/stat ('T' = stopped), or '' when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout
