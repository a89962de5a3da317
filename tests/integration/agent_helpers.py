"""Helpers for agent-execution tests: spawning through gRPC, waiting for states, finding processes."""

from __future__ import annotations

import os
import subprocess
import uuid
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
from tests.waits import wait_for

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
        seen: list[agent_pb2.Agent] = []

        def reached() -> agent_pb2.Agent | None:
            seen[:] = [self.get(agent_id)]
            return seen[0] if done(seen[0]) else None

        def describe() -> str:
            agent = seen[0]
            return f"{L.LifecycleState.Name(agent.lifecycle_state)} last_error={agent.last_error!r}"

        return wait_for(reached, timeout, f"agent {agent_id} {what or 'ready'}", describe=describe)

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
        seen: list[str] = []

        def stored() -> list[str] | None:
            seen[:] = self.event_types(agent_id)
            return list(seen) if all(t in seen for t in expected) else None

        return wait_for(stored, timeout, f"events {expected} of agent {agent_id}", describe=lambda: seen)


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


class Gate:
    """Something a test opens for its agents once it has done what must happen while they run.
    Agents are sandboxed and see nothing of the host but their worktree and the repository's git
    directory, so the gate is a git object the test writes into that repository."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.marker = f"gate-{uuid.uuid4().hex}"

    @property
    def check(self) -> str:
        """Shell code, run in a worktree of the repository, that succeeds when the gate is open."""
        return f'git cat-file -e "$(echo {self.marker} | git hash-object --stdin)" 2>/dev/null'

    @property
    def wait(self) -> str:
        """Shell code, run in a worktree of the repository, that returns once the gate is open."""
        return f"until {self.check}; do sleep 0.1; done"

    def open(self) -> None:
        subprocess.run(
            ["git", "-C", str(self.repo), "hash-object", "-w", "--stdin"],
            input=f"{self.marker}\n",
            text=True,
            capture_output=True,
            check=True,
        )
