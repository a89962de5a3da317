"""What the fake services of the fake mesh share: the state a test arranges and inspects (FakeMesh),
the API key they accept, and how they fail (with the real services' error statuses)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from grpc_status import rpc_status

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    auth_service_pb2,
    budget_pb2,
    cluster_pb2,
    event_service_pb2,
    task_pb2,
    team_pb2,
    workflow_pb2,
)
from godel_server.agent import lifecycle
from godel_server.runtime.errors import AuthenticationError, GodelError
from godel_server.runtime.interceptors import status_for
from godel_server.runtime.statuses import AGENT_STATUS, LIFECYCLE_STATE

API_KEY = "godel_sk_test_0123456789"
T0 = 1795635002  # 2026-11-25 19:30:02Z, the time every fake resource starts at
PAGE_LIMIT = 2  # the fake pages its listings this small so that the client has to follow tokens
_Request = TypeVar("_Request")
_Item = TypeVar("_Item")


def ts(offset: float = 0) -> timestamp_pb2.Timestamp:
    """T0 plus ``offset`` seconds."""
    return timestamp_pb2.Timestamp(seconds=T0 + int(offset))


def new_id() -> str:
    return str(uuid.uuid4())


def fail(context: grpc.ServicerContext, error: GodelError) -> NoReturn:
    """Ends the call with the status the real services' error interceptor makes of ``error``."""
    context.abort_with_status(rpc_status.to_status(status_for(error)))
    raise AssertionError("abort_with_status returned")  # it raises; this satisfies NoReturn


def require_key(context: grpc.ServicerContext) -> None:
    """The caller presents the key, as ``x-api-key`` or as ``authorization: Bearer`` (as the real
    services accept it)."""
    metadata = dict(context.invocation_metadata())
    bearer = str(metadata.get("authorization", "")).removeprefix("Bearer ")
    credential = metadata.get("x-api-key") or bearer
    if not credential:
        fail(context, AuthenticationError("missing credentials"))
    if credential != API_KEY:
        fail(context, AuthenticationError("invalid API key"))


def find(context: grpc.ServicerContext, found: dict[str, _Item], id_: str, missing: GodelError) -> _Item:
    """``found[id_]`` for a caller with the key; the call fails with ``missing`` when there is none."""
    require_key(context)
    if id_ not in found:
        fail(context, missing)
    return found[id_]


# The first lifecycle state of each coarse status in the real state machine (running: executing).
_STATE_OF_STATUS: dict[str, str] = {}
for _state, _status in lifecycle.STATUS.items():
    _STATE_OF_STATUS.setdefault(_status, _state)


@dataclass
class FakeMesh:
    """Shared state of the fake services, for the tests to arrange and inspect."""

    requests: list[Any] = field(default_factory=list)
    # AgentService. `progress`: states GetAgent moves an agent through, one per call (then the last
    # one stays); `on_create` sees each agent CreateAgent makes.
    agents: dict[str, agent_pb2.Agent] = field(default_factory=dict)
    progress: dict[str, list[agent_pb2.Agent]] = field(default_factory=dict)
    on_create: Callable[[agent_pb2.Agent], None] | None = None
    logs: dict[str, list[agent_pb2.LogEntry]] = field(default_factory=dict)
    log_stream: list[agent_service_pb2.StreamAgentLogsResponse] = field(default_factory=list)
    transitions: dict[str, list[agent_pb2.AgentTransition]] = field(default_factory=dict)
    sessions: dict[str, list[agent_pb2.Session]] = field(default_factory=dict)
    # EventService: the stored events and stream items, in order. A subscription gets the matching
    # ones, then (while `hold_stream_open`) heartbeats until the client hangs up.
    stream: list[event_service_pb2.SubscribeEventsResponse] = field(default_factory=list)
    hold_stream_open: bool = False
    events_available: bool = True
    # TeamService, WorkflowService, TaskService, BudgetService. `scripts`: the states a started
    # workflow moves through, one per GetWorkflow (ListWorkflowSteps shows the current one).
    teams: dict[str, team_pb2.Team] = field(default_factory=dict)
    workflows: dict[str, workflow_pb2.Workflow] = field(default_factory=dict)
    steps: dict[str, list[workflow_pb2.WorkflowStep]] = field(default_factory=dict)
    scripts: dict[str, list[tuple[workflow_pb2.Workflow, list[workflow_pb2.WorkflowStep]]]] = field(
        default_factory=dict
    )
    tasks: dict[str, task_pb2.Task] = field(default_factory=dict)
    budgets: dict[str, budget_pb2.Budget] = field(default_factory=dict)
    # AuthService (never a secret), ClusterService.
    keys: dict[str, auth_service_pb2.ApiKey] = field(default_factory=dict)
    clusters: dict[str, cluster_pb2.Cluster] = field(default_factory=dict)

    def add_agent(
        self,
        task: str,
        status: agent_pb2.AgentStatus.ValueType = agent_pb2.AGENT_STATUS_RUNNING,
        **fields: Any,
    ) -> agent_pb2.Agent:
        """An agent in ``status`` (and, unless given, the lifecycle state the real state machine
        shows that status in)."""
        state = _STATE_OF_STATUS[AGENT_STATUS.name(status)]
        fields.setdefault("lifecycle_state", LIFECYCLE_STATE.to_proto(state))
        agent = agent_pb2.Agent(id=new_id(), task=task, status=status, spawned_at=ts(), **fields)
        self.agents[agent.id] = agent
        return agent

    def add_team(
        self, name: str, status: team_pb2.TeamStatus.ValueType = team_pb2.TEAM_STATUS_ACTIVE, **fields: Any
    ) -> team_pb2.Team:
        team = team_pb2.Team(id=new_id(), name=name, status=status, created_at=ts(), **fields)
        self.teams[team.id] = team
        return team

    def requests_of(self, kind: type[_Request]) -> list[_Request]:
        """The requests of one type the fake services received, oldest first."""
        return [request for request in self.requests if isinstance(request, kind)]

    def run_created_agents(self) -> None:
        """From now on a created agent is running at its first GetAgent and completed at its second."""

        def script(agent: agent_pb2.Agent) -> None:
            running = moved(agent, agent_pb2.AGENT_STATUS_RUNNING, agent_pb2.LIFECYCLE_STATE_EXECUTING)
            done = moved(running, agent_pb2.AGENT_STATUS_COMPLETED, agent_pb2.LIFECYCLE_STATE_COMPLETED)
            done.completed_at.CopyFrom(ts(5))
            self.progress[agent.id] = [running, done]

        self.on_create = script


def moved(
    agent: agent_pb2.Agent,
    status: agent_pb2.AgentStatus.ValueType,
    state: agent_pb2.LifecycleState.ValueType,
    **fields: Any,
) -> agent_pb2.Agent:
    """A copy of ``agent`` in a new status and lifecycle state, one version on, with ``fields`` set."""
    changed = agent_pb2.Agent()
    changed.CopyFrom(agent)
    changed.status, changed.lifecycle_state, changed.version = status, state, agent.version + 1
    for name, value in fields.items():
        if isinstance(value, timestamp_pb2.Timestamp):
            getattr(changed, name).CopyFrom(value)
        else:
            setattr(changed, name, value)
    return changed


def page(items: list[_Item], request: Any, default_size: int = 50) -> tuple[list[_Item], str]:
    """One page of ``items`` as a List request asks for it (at most PAGE_LIMIT), and the next token."""
    start = int(request.page_token or 0)
    end = start + min(request.page_size or default_size, PAGE_LIMIT)
    return items[start:end], str(end) if end < len(items) else ""
