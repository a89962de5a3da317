"""GodelClient: a thin synchronous layer over the generated gRPC stubs.

Every method raises :class:`godel_client.errors.GodelError` (a subclass of it) on failure, never a
bare ``grpc.RpcError``. Listing methods return lazy iterators that follow ``next_page_token``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf import field_mask_pb2, struct_pb2

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    budget_pb2,
    budget_service_pb2,
    budget_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    intent_pb2,
    intent_service_pb2,
    intent_service_pb2_grpc,
    system_service_pb2,
    system_service_pb2_grpc,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
    team_pb2,
    team_service_pb2,
    team_service_pb2_grpc,
    workflow_pb2,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from godel_client.credentials import resolve_address, resolve_api_key
from godel_client.errors import GodelError, from_rpc_error, make_error, status_from_number

API_KEY_HEADER = "x-api-key"

AgentStatusLike: TypeAlias = "agent_pb2.AgentStatus.ValueType | str"
TeamStatusLike: TypeAlias = "team_pb2.TeamStatus.ValueType | str"
StrategyLike: TypeAlias = "team_pb2.ExecutionStrategy.ValueType | str"
WorkflowStatusLike: TypeAlias = "workflow_pb2.WorkflowStatus.ValueType | str"
TaskStatusLike: TypeAlias = "task_pb2.TaskStatus.ValueType | str"
TaskPriorityLike: TypeAlias = "task_pb2.TaskPriority.ValueType | str"
BudgetEntityLike: TypeAlias = "budget_pb2.BudgetEntityType.ValueType | str"
BudgetPeriodLike: TypeAlias = "budget_pb2.BudgetPeriod.ValueType | str"
Metadata: TypeAlias = tuple[tuple[str, str | bytes], ...]
_Response = TypeVar("_Response")
_Item = TypeVar("_Item")
_Number = TypeVar("_Number", bound=int)


def _enum_names(enum: Any, prefix: str) -> tuple[str, ...]:
    """The short lower-case names of an enum's values, UNSPECIFIED left out."""
    return tuple(
        name.removeprefix(prefix).lower()
        for name in enum.keys()  # noqa: SIM118 - an EnumTypeWrapper is no dict
        if not name.endswith("_UNSPECIFIED")
    )


def _enum_number(enum: Any, prefix: str, value: int | str, what: str) -> int:
    """``running``, ``map-reduce``, ``AGENT_STATUS_RUNNING`` or the number -> the enum's number."""
    if isinstance(value, int):
        return value
    name = value.strip().upper().replace("-", "_")
    if not name.startswith(prefix):
        name = f"{prefix}{name}"
    try:
        return int(enum.Value(name))
    except ValueError:
        choices = ", ".join(_enum_names(enum, prefix))
        raise ValueError(f"unknown {what} {value!r} (choose from {choices})") from None


def _enum_numbers(value: Any, convert: Callable[[Any], _Number]) -> list[_Number]:
    """One value, several or none -> the list of enum numbers a repeated filter field takes."""
    if value is None:
        return []
    if isinstance(value, str | int):
        return [convert(value)]
    return [convert(item) for item in value]


def agent_status(value: AgentStatusLike) -> agent_pb2.AgentStatus.ValueType:
    """``running``, ``AGENT_STATUS_RUNNING`` or the enum number -> the AgentStatus value."""
    number = _enum_number(agent_pb2.AgentStatus, "AGENT_STATUS_", value, "agent status")
    return agent_pb2.AgentStatus.ValueType(number)


AGENT_STATUS_NAMES: tuple[str, ...] = _enum_names(agent_pb2.AgentStatus, "AGENT_STATUS_")


def team_status(value: TeamStatusLike) -> team_pb2.TeamStatus.ValueType:
    number = _enum_number(team_pb2.TeamStatus, "TEAM_STATUS_", value, "team status")
    return team_pb2.TeamStatus.ValueType(number)


def execution_strategy(value: StrategyLike) -> team_pb2.ExecutionStrategy.ValueType:
    """``parallel``, ``map-reduce``, ``pipeline``, ``tree`` (or the enum name or number)."""
    number = _enum_number(team_pb2.ExecutionStrategy, "EXECUTION_STRATEGY_", value, "execution strategy")
    return team_pb2.ExecutionStrategy.ValueType(number)


def workflow_status(value: WorkflowStatusLike) -> workflow_pb2.WorkflowStatus.ValueType:
    number = _enum_number(workflow_pb2.WorkflowStatus, "WORKFLOW_STATUS_", value, "workflow status")
    return workflow_pb2.WorkflowStatus.ValueType(number)


def task_status(value: TaskStatusLike) -> task_pb2.TaskStatus.ValueType:
    number = _enum_number(task_pb2.TaskStatus, "TASK_STATUS_", value, "task status")
    return task_pb2.TaskStatus.ValueType(number)


def task_priority(value: TaskPriorityLike) -> task_pb2.TaskPriority.ValueType:
    number = _enum_number(task_pb2.TaskPriority, "TASK_PRIORITY_", value, "task priority")
    return task_pb2.TaskPriority.ValueType(number)


def budget_entity_type(value: BudgetEntityLike) -> budget_pb2.BudgetEntityType.ValueType:
    """``agent``, ``team``, ``user`` or ``organization`` (``org`` too)."""
    if isinstance(value, str) and value.strip().lower() == "org":
        value = "organization"
    number = _enum_number(budget_pb2.BudgetEntityType, "BUDGET_ENTITY_TYPE_", value, "budget entity type")
    return budget_pb2.BudgetEntityType.ValueType(number)


def budget_period(value: BudgetPeriodLike) -> budget_pb2.BudgetPeriod.ValueType:
    number = _enum_number(budget_pb2.BudgetPeriod, "BUDGET_PERIOD_", value, "budget period")
    return budget_pb2.BudgetPeriod.ValueType(number)


TEAM_STATUS_NAMES: tuple[str, ...] = _enum_names(team_pb2.TeamStatus, "TEAM_STATUS_")
STRATEGY_NAMES: tuple[str, ...] = tuple(
    name.replace("_", "-") for name in _enum_names(team_pb2.ExecutionStrategy, "EXECUTION_STRATEGY_")
)
WORKFLOW_STATUS_NAMES: tuple[str, ...] = _enum_names(workflow_pb2.WorkflowStatus, "WORKFLOW_STATUS_")
TASK_STATUS_NAMES: tuple[str, ...] = _enum_names(task_pb2.TaskStatus, "TASK_STATUS_")
TASK_PRIORITY_NAMES: tuple[str, ...] = _enum_names(task_pb2.TaskPriority, "TASK_PRIORITY_")
BUDGET_PERIOD_NAMES: tuple[str, ...] = _enum_names(budget_pb2.BudgetPeriod, "BUDGET_PERIOD_")

_NO_STRATEGY = team_pb2.EXECUTION_STRATEGY_UNSPECIFIED
_TEAM_ENDED = (team_pb2.TEAM_STATUS_COMPLETED, team_pb2.TEAM_STATUS_FAILED, team_pb2.TEAM_STATUS_ARCHIVED)
_WORKFLOW_ENDED = (
    workflow_pb2.WORKFLOW_STATUS_COMPLETED,
    workflow_pb2.WORKFLOW_STATUS_FAILED,
    workflow_pb2.WORKFLOW_STATUS_CANCELLED,
)


def team_ended(team: team_pb2.Team) -> bool:
    """Whether the team is done: completed, failed or archived."""
    return team.status in _TEAM_ENDED


def workflow_ended(workflow: workflow_pb2.Workflow) -> bool:
    """Whether the workflow is done: completed, failed or cancelled."""
    return workflow.status in _WORKFLOW_ENDED


def _struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if not values:
        return None
    document = struct_pb2.Struct()
    document.update(dict(values))
    return document


@dataclass(frozen=True)
class WorkflowProgress:
    """One observation of a watched workflow: the workflow, its steps, and the event that prompted
    the look (None for the first look and for polls)."""

    workflow: workflow_pb2.Workflow
    steps: list[workflow_pb2.WorkflowStep] = field(default_factory=list)
    event: event_pb2.Event | None = None

    @property
    def ended(self) -> bool:
        return workflow_ended(self.workflow)

    def fingerprint(self) -> bytes:
        parts = [self.workflow, *self.steps]
        return b"\0".join(part.SerializeToString(deterministic=True) for part in parts)


def agent_ended(agent: agent_pb2.Agent) -> bool:
    """Whether the agent is done for good: completed, killed, or failed with no retry to come."""
    if agent.status in (agent_pb2.AGENT_STATUS_COMPLETED, agent_pb2.AGENT_STATUS_KILLED):
        return True
    # A failed attempt that will be retried has no completion time yet.
    return agent.status == agent_pb2.AGENT_STATUS_FAILED and agent.HasField("completed_at")


class GodelClient:
    """A connection to a Godel mesh (its Envoy gateway speaks plain gRPC).

    >>> with GodelClient() as godel:
    ...     agent = godel.create_agent("fix the flaky test", model="gpt-4o")
    ...     for event in godel.subscribe_events(["agent:*"], agent_id=agent.id):
    ...         print(event.type)
    """

    def __init__(self, address: str | None = None, api_key: str | None = None, timeout: float = 10.0) -> None:
        self.address = resolve_address(address)
        self.api_key = resolve_api_key(api_key)
        self.timeout = timeout
        self._metadata: Metadata = ((API_KEY_HEADER, self.api_key),) if self.api_key else ()
        self._channel = grpc.insecure_channel(
            self.address, options=[("grpc.primary_user_agent", "godel-client-python")]
        )
        self._agents = agent_service_pb2_grpc.AgentServiceStub(self._channel)
        self._events = event_service_pb2_grpc.EventServiceStub(self._channel)
        self._system = system_service_pb2_grpc.SystemServiceStub(self._channel)
        self._auth = auth_service_pb2_grpc.AuthServiceStub(self._channel)
        self._teams = team_service_pb2_grpc.TeamServiceStub(self._channel)
        self._workflows = workflow_service_pb2_grpc.WorkflowServiceStub(self._channel)
        self._tasks = task_service_pb2_grpc.TaskServiceStub(self._channel)
        self._budgets = budget_service_pb2_grpc.BudgetServiceStub(self._channel)
        self._intents = intent_service_pb2_grpc.IntentServiceStub(self._channel)

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GodelClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _error(self, error: grpc.RpcError) -> GodelError:
        return from_rpc_error(error, self.address)

    def _unary(self, method: Callable[..., _Response], request: Any) -> _Response:
        """One unary call with the client's deadline and key; failures become a GodelError."""
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _pages(
        self, method: Callable[..., _Response], request: Any, items: Callable[[_Response], Iterable[_Item]]
    ) -> Iterator[_Item]:
        """The items of every page, following ``next_page_token`` as the iterator is consumed."""
        while True:
            page = self._unary(method, request)
            yield from items(page)
            token: str = getattr(page, "next_page_token", "")
            if not token or token == request.page_token:
                return
            request.page_token = token

    # -- agents ----------------------------------------------------------------------------------

    def create_agent(
        self,
        task: str,
        *,
        model: str | None = None,
        label: str | None = None,
        team_id: str | None = None,
        repo: str | None = None,
        runtime: str | None = None,
        command: Iterable[str] | None = None,
        max_retries: int | None = None,
        budget_limit: float | None = None,
        request_id: str | None = None,
        env: Mapping[str, str] | None = None,
        run_timeout: float | None = None,
        keep_worktree: bool = False,
        endpoint: str | None = None,
    ) -> agent_pb2.Agent:
        """Spawns an agent on ``task``; ``command`` is the argv of the ``command`` runtime.

        ``run_timeout`` is the wall-clock limit of one run in seconds; ``endpoint`` the base URL of
        the OpenAI-compatible server for the ``openai`` runtime.
        """
        config = agent_pb2.AgentConfig(
            runtime=runtime or "",
            command=list(command) if command else None,
            env=dict(env) if env else None,
            keep_worktree=keep_worktree,
            endpoint=endpoint or "",
        )
        if run_timeout:
            config.timeout.FromTimedelta(timedelta(seconds=run_timeout))
        request = agent_service_pb2.CreateAgentRequest(
            task=task,
            model=model or "",
            label=label or "",
            team_id=team_id or "",
            repo=repo or "",
            max_retries=max_retries,
            budget_limit=budget_limit,
            request_id=request_id or "",
            config=config if config.ByteSize() else None,
        )
        try:
            agent: agent_pb2.Agent = self._agents.CreateAgent(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return agent

    def get_agent(self, id: str) -> agent_pb2.Agent:
        request = agent_service_pb2.GetAgentRequest(id=id)
        try:
            agent: agent_pb2.Agent = self._agents.GetAgent(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return agent

    def list_agents(
        self,
        *,
        status: AgentStatusLike | Iterable[AgentStatusLike] | None = None,
        team_id: str | None = None,
        model: str | None = None,
        label: str | None = None,
        page_size: int = 50,
    ) -> Iterator[agent_pb2.Agent]:
        """Agents, newest first, fetched page by page as the iterator is consumed."""
        statuses: list[AgentStatusLike]
        if status is None:
            statuses = []
        elif isinstance(status, str | int):
            statuses = [status]
        else:
            statuses = list(status)
        request = agent_service_pb2.ListAgentsRequest(
            page_size=page_size,
            status=[agent_status(s) for s in statuses],
            team_id=team_id or "",
            model=model or "",
            label=label or "",
        )
        return self._pages(self._agents.ListAgents, request, lambda page: page.agents)

    def delete_agent(self, id: str) -> None:
        """Deletes an agent; a running one is killed first."""
        request = agent_service_pb2.DeleteAgentRequest(id=id)
        try:
            self._agents.DeleteAgent(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    # Control: each returns the agent in its new state, and raises FailedPreconditionError when the
    # agent's state does not allow the action (e.g. pausing a completed agent).

    def pause_agent(self, id: str) -> agent_pb2.Agent:
        agent: agent_pb2.Agent = self._unary(
            self._agents.PauseAgent, agent_service_pb2.PauseAgentRequest(id=id)
        )
        return agent

    def resume_agent(self, id: str) -> agent_pb2.Agent:
        request = agent_service_pb2.ResumeAgentRequest(id=id)
        agent: agent_pb2.Agent = self._unary(self._agents.ResumeAgent, request)
        return agent

    def kill_agent(self, id: str, reason: str | None = None) -> agent_pb2.Agent:
        """Stops the agent's whole process tree; it ends ``killed``."""
        request = agent_service_pb2.KillAgentRequest(id=id, reason=reason or "")
        agent: agent_pb2.Agent = self._unary(self._agents.KillAgent, request)
        return agent

    def restart_agent(self, id: str) -> agent_pb2.Agent:
        """Starts the agent again in a new session (retries reset)."""
        request = agent_service_pb2.RestartAgentRequest(id=id)
        agent: agent_pb2.Agent = self._unary(self._agents.RestartAgent, request)
        return agent

    # History, sessions and logs of one agent.

    def agent_transitions(self, id: str, page_size: int = 100) -> Iterator[agent_pb2.AgentTransition]:
        """The agent's lifecycle transitions, oldest first."""
        request = agent_service_pb2.ListAgentTransitionsRequest(id=id, page_size=page_size)
        return self._pages(self._agents.ListAgentTransitions, request, lambda page: page.transitions)

    def agent_sessions(self, id: str, page_size: int = 100) -> Iterator[agent_pb2.Session]:
        """The agent's sessions (one per run attempt), oldest first."""
        request = agent_service_pb2.ListAgentSessionsRequest(id=id, page_size=page_size)
        return self._pages(self._agents.ListAgentSessions, request, lambda page: page.sessions)

    def get_session(self, id: str) -> agent_pb2.Session:
        """One session with its messages."""
        request = agent_service_pb2.GetSessionRequest(id=id)
        session: agent_pb2.Session = self._unary(self._agents.GetSession, request)
        return session

    def agent_logs(
        self, id: str, *, session_id: str | None = None, page_size: int = 500
    ) -> Iterator[agent_pb2.LogEntry]:
        """The agent's stored log lines, oldest first (only ``session_id``'s when given)."""
        request = agent_service_pb2.GetAgentLogsRequest(
            id=id, page_size=page_size, session_id=session_id or ""
        )
        return self._pages(self._agents.GetAgentLogs, request, lambda page: page.entries)

    def follow_agent_logs(self, id: str, after_sequence: int = 0) -> Iterator[agent_pb2.LogEntry]:
        """Log lines after ``after_sequence``, then new ones as they are written.

        The iterator ends when the server ends the stream in-band (the agent ended or was deleted)
        and raises :class:`GodelError` when that end carries an error. Closing it cancels the call.
        """
        request = agent_service_pb2.StreamAgentLogsRequest(id=id, after_sequence=after_sequence)
        # No deadline: the stream lives as long as the agent runs.
        yield from self._follow(self._agents.StreamAgentLogs(request, metadata=self._metadata), "entry")

    # -- events ----------------------------------------------------------------------------------

    def query_events(
        self,
        types: Iterable[str] = (),
        agent_id: str | None = None,
        page_size: int = 100,
        *,
        team_id: str | None = None,
        after_sequence: int | None = None,
    ) -> Iterator[event_pb2.Event]:
        """Stored events, oldest first, fetched page by page as the iterator is consumed.

        ``types`` are patterns: ``agent:*`` matches every agent event.
        """
        request = event_service_pb2.QueryEventsRequest(
            type=list(types),
            agent_id=agent_id or "",
            team_id=team_id or "",
            after_sequence=after_sequence or 0,
            page_size=page_size,
        )
        return self._event_pages(request)

    def _event_pages(self, request: event_service_pb2.QueryEventsRequest) -> Iterator[event_pb2.Event]:
        return self._pages(self._events.QueryEvents, request, lambda page: page.events)

    def subscribe_events(
        self,
        patterns: Iterable[str] = (),
        *,
        agent_id: str | None = None,
        from_sequence: int | None = None,
    ) -> Iterator[event_pb2.Event]:
        """Follows the live event stream (replaying stored events after ``from_sequence`` first).

        Heartbeats are skipped; the iterator ends when the server ends the stream cleanly and raises
        :class:`GodelError` when it ends it with an error. Closing the iterator cancels the call.
        """
        request = event_service_pb2.SubscribeEventsRequest(
            pattern=list(patterns), agent_id=agent_id or "", from_sequence=from_sequence
        )
        return self._subscription(request)

    def _subscription(self, request: event_service_pb2.SubscribeEventsRequest) -> Iterator[event_pb2.Event]:
        # No deadline: a subscription lives as long as the caller keeps reading.
        yield from self._follow(self._events.SubscribeEvents(request, metadata=self._metadata), "event")

    def _follow(self, call: Any, field: str) -> Iterator[Any]:
        """Items of a server stream whose messages are `oneof item {<field>, end}`: yields the
        `field` values, stops at the in-band end (raising when it carries an error)."""
        try:
            for item in call:
                kind = item.WhichOneof("item")
                if kind == field:
                    yield getattr(item, field)
                elif kind == "end":
                    if item.end.code != 0:
                        raise make_error(
                            status_from_number(item.end.code),
                            item.end.message,
                            address=self.address,
                            from_server=True,
                        )
                    return
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        finally:
            call.cancel()

    # -- system ----------------------------------------------------------------------------------

    def health(self) -> system_service_pb2.GetHealthResponse:
        """Overall health (public: needs no API key)."""
        try:
            response: system_service_pb2.GetHealthResponse = self._system.GetHealth(
                system_service_pb2.GetHealthRequest(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return response

    def detailed_health(self) -> system_service_pb2.GetDetailedHealthResponse:
        """Health of every service, Kafka and each database (needs an API key)."""
        try:
            response: system_service_pb2.GetDetailedHealthResponse = self._system.GetDetailedHealth(
                system_service_pb2.GetDetailedHealthRequest(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return response

    def capabilities(self) -> system_service_pb2.GetCapabilitiesResponse:
        """What this deployment can do (public)."""
        try:
            response: system_service_pb2.GetCapabilitiesResponse = self._system.GetCapabilities(
                system_service_pb2.GetCapabilitiesRequest(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return response

    # -- auth ------------------------------------------------------------------------------------

    def create_api_key(
        self, name: str, role: str = "developer", expires_in_days: int = 0
    ) -> auth_service_pb2.CreateApiKeyResponse:
        """Creates an API key; the secret (``.secret``) is returned only this once."""
        request = auth_service_pb2.CreateApiKeyRequest(name=name, role=role, expires_in_days=expires_in_days)
        try:
            response: auth_service_pb2.CreateApiKeyResponse = self._auth.CreateApiKey(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return response

    # -- streams ---------------------------------------------------------------------------------

    def _stream(self, call: Any) -> Iterator[Any]:
        """The messages of a server stream; failures become a GodelError, closing cancels the call."""
        try:
            yield from call
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        finally:
            call.cancel()

    # -- teams -----------------------------------------------------------------------------------

    def create_team(
        self,
        name: str,
        task: str = "",
        *,
        strategy: StrategyLike | None = None,
        size: int | None = None,
        inputs: Iterable[str] = (),
        stages: Iterable[str] = (),
        max_depth: int | None = None,
        max_agents: int | None = None,
        runtime: str | None = None,
        command: Iterable[str] | None = None,
        model: str | None = None,
        budget: float | None = None,
        description: str | None = None,
        repo: str | None = None,
        endpoint: str | None = None,
        timeout_minutes: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> team_pb2.Team:
        """Creates a team (it does not start: see :meth:`start_team`).

        ``inputs`` feed the parallel and map-reduce strategies, ``stages`` the pipeline strategy,
        ``max_depth`` the tree strategy; ``command`` is the argv template of command-runtime members
        and ``budget`` the team's spend limit in USD.
        """
        config = team_pb2.TeamConfig(
            size=size or 0,
            inputs=list(inputs),
            stages=list(stages),
            max_depth=max_depth or 0,
            max_agents=max_agents or 0,
            runtime=runtime or "",
            command=list(command) if command else None,
            model=model or "",
            repo=repo or "",
            endpoint=endpoint or "",
            timeout_minutes=timeout_minutes or 0,
        )
        request = team_service_pb2.CreateTeamRequest(
            request_id=request_id or "",
            name=name,
            description=description or "",
            execution_strategy=execution_strategy(strategy) if strategy is not None else _NO_STRATEGY,
            config=config if config.ByteSize() else None,
            task=task,
            budget_allocated=budget,
            metadata=_struct(metadata),
        )
        team: team_pb2.Team = self._unary(self._teams.CreateTeam, request)
        return team

    def get_team(self, id: str) -> team_pb2.Team:
        team: team_pb2.Team = self._unary(self._teams.GetTeam, team_service_pb2.GetTeamRequest(id=id))
        return team

    def list_teams(
        self, *, status: TeamStatusLike | Iterable[TeamStatusLike] | None = None, page_size: int = 50
    ) -> Iterator[team_pb2.Team]:
        """Teams, fetched page by page as the iterator is consumed."""
        request = team_service_pb2.ListTeamsRequest(
            page_size=page_size, status=_enum_numbers(status, team_status)
        )
        return self._pages(self._teams.ListTeams, request, lambda page: page.teams)

    def update_team(
        self,
        id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        budget: float | None = None,
        max_agents: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> team_pb2.Team:
        """Changes only the fields given (sent as the request's update_mask)."""
        team = team_pb2.Team(id=id)
        paths: list[str] = []
        if name is not None:
            team.name = name
            paths.append("name")
        if description is not None:
            team.description = description
            paths.append("description")
        if budget is not None:
            team.budget_allocated = budget
            paths.append("budget_allocated")
        if max_agents is not None:
            team.config.max_agents = max_agents
            paths.append("config.max_agents")
        if metadata is not None:
            team.metadata.update(dict(metadata))
            paths.append("metadata")
        request = team_service_pb2.UpdateTeamRequest(
            team=team, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        updated: team_pb2.Team = self._unary(self._teams.UpdateTeam, request)
        return updated

    def delete_team(self, id: str) -> None:
        self._unary(self._teams.DeleteTeam, team_service_pb2.DeleteTeamRequest(id=id))

    def start_team(self, id: str) -> Iterator[team_service_pb2.StartTeamResponse]:
        """Starts the team now and returns its progress: a snapshot of the team after each team or
        member event, until the team ends. Closing the iterator stops following, not the team."""
        # No deadline: the stream lives as long as the team runs.
        call = self._teams.StartTeam(team_service_pb2.StartTeamRequest(id=id), metadata=self._metadata)
        return self._stream(call)

    def pause_team(self, id: str) -> team_pb2.Team:
        team: team_pb2.Team = self._unary(self._teams.PauseTeam, team_service_pb2.PauseTeamRequest(id=id))
        return team

    def resume_team(self, id: str) -> team_pb2.Team:
        request = team_service_pb2.ResumeTeamRequest(id=id)
        team: team_pb2.Team = self._unary(self._teams.ResumeTeam, request)
        return team

    def scale_team(self, id: str, size: int) -> team_service_pb2.ScaleTeamResponse:
        """Grows or shrinks the team to ``size`` agents; the answer names the agents added/removed."""
        request = team_service_pb2.ScaleTeamRequest(id=id, target_size=size)
        response: team_service_pb2.ScaleTeamResponse = self._unary(self._teams.ScaleTeam, request)
        return response

    def list_team_agents(self, id: str, page_size: int = 100) -> Iterator[agent_pb2.Agent]:
        """The team's member agents."""
        request = team_service_pb2.ListTeamAgentsRequest(id=id, page_size=page_size)
        return self._pages(self._teams.ListTeamAgents, request, lambda page: page.agents)

    def team_metrics(self, id: str) -> team_pb2.TeamMetrics:
        """Member counts, completion rate, duration and cost of a team."""
        request = team_service_pb2.GetTeamMetricsRequest(id=id)
        metrics: team_pb2.TeamMetrics = self._unary(self._teams.GetTeamMetrics, request)
        return metrics

    # -- workflows -------------------------------------------------------------------------------

    def create_workflow(
        self,
        definition_text: str | None = None,
        *,
        definition: workflow_pb2.WorkflowDefinition | None = None,
        team_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        start: bool = False,
        request_id: str | None = None,
    ) -> workflow_pb2.Workflow:
        """Creates a workflow from YAML/JSON ``definition_text`` (or a structured ``definition``);
        with ``start`` it runs right away. ``context`` is the workflow's input document."""
        request = workflow_service_pb2.CreateWorkflowRequest(
            request_id=request_id or "",
            definition=definition,
            definition_text=definition_text or "",
            team_id=team_id or "",
            context=_struct(context),
            metadata=_struct(metadata),
            start=start,
        )
        workflow: workflow_pb2.Workflow = self._unary(self._workflows.CreateWorkflow, request)
        return workflow

    def get_workflow(self, id: str) -> workflow_pb2.Workflow:
        request = workflow_service_pb2.GetWorkflowRequest(id=id)
        workflow: workflow_pb2.Workflow = self._unary(self._workflows.GetWorkflow, request)
        return workflow

    def list_workflows(
        self,
        *,
        status: WorkflowStatusLike | Iterable[WorkflowStatusLike] | None = None,
        team_id: str | None = None,
        page_size: int = 50,
    ) -> Iterator[workflow_pb2.Workflow]:
        """Workflows, fetched page by page as the iterator is consumed."""
        request = workflow_service_pb2.ListWorkflowsRequest(
            page_size=page_size, status=_enum_numbers(status, workflow_status), team_id=team_id or ""
        )
        return self._pages(self._workflows.ListWorkflows, request, lambda page: page.workflows)

    def delete_workflow(self, id: str) -> None:
        self._unary(self._workflows.DeleteWorkflow, workflow_service_pb2.DeleteWorkflowRequest(id=id))

    def start_workflow(self, id: str) -> workflow_pb2.Workflow:
        request = workflow_service_pb2.StartWorkflowRequest(id=id)
        workflow: workflow_pb2.Workflow = self._unary(self._workflows.StartWorkflow, request)
        return workflow

    def cancel_workflow(self, id: str, reason: str | None = None) -> workflow_pb2.Workflow:
        """Cancels the workflow; the agents of its running steps are stopped."""
        request = workflow_service_pb2.CancelWorkflowRequest(id=id, reason=reason or "")
        workflow: workflow_pb2.Workflow = self._unary(self._workflows.CancelWorkflow, request)
        return workflow

    def pause_workflow(self, id: str) -> workflow_pb2.Workflow:
        request = workflow_service_pb2.PauseWorkflowRequest(id=id)
        workflow: workflow_pb2.Workflow = self._unary(self._workflows.PauseWorkflow, request)
        return workflow

    def resume_workflow(self, id: str) -> workflow_pb2.Workflow:
        request = workflow_service_pb2.ResumeWorkflowRequest(id=id)
        workflow: workflow_pb2.Workflow = self._unary(self._workflows.ResumeWorkflow, request)
        return workflow

    def list_workflow_steps(self, id: str, page_size: int = 100) -> Iterator[workflow_pb2.WorkflowStep]:
        """The state of each step of the workflow."""
        request = workflow_service_pb2.ListWorkflowStepsRequest(id=id, page_size=page_size)
        return self._pages(self._workflows.ListWorkflowSteps, request, lambda page: page.steps)

    def _workflow_progress(self, id: str, event: event_pb2.Event | None = None) -> WorkflowProgress:
        return WorkflowProgress(self.get_workflow(id), list(self.list_workflow_steps(id)), event)

    def watch_workflow(
        self, id: str, *, poll_interval: float = 0.5, heartbeat_seconds: int = 1
    ) -> Iterator[WorkflowProgress]:
        """The workflow and its steps now, then again whenever they change, until the workflow ends.

        Changes are noticed through the event stream (``workflow:*`` events of this workflow; each
        one, and each heartbeat of a quiet stream, prompts a fresh look). When the stream cannot be
        had or ends early, the workflow is polled every ``poll_interval`` seconds instead.
        """
        request = event_service_pb2.SubscribeEventsRequest(
            pattern=["workflow:*"], workflow_id=id, heartbeat_seconds=heartbeat_seconds
        )
        # Subscribed before the first look, so that no change falls between the two.
        call = self._events.SubscribeEvents(request, metadata=self._metadata)
        seen = b""
        try:
            current = self._workflow_progress(id)
            seen = current.fingerprint()
            yield current
            if current.ended:
                return
            for item in call:
                kind = item.WhichOneof("item")
                if kind == "end":
                    break  # ended early (cleanly or not): polling takes over
                current = self._workflow_progress(id, item.event if kind == "event" else None)
                if current.fingerprint() != seen:
                    seen = current.fingerprint()
                    yield current
                if current.ended:
                    return
        except grpc.RpcError:
            pass  # no event stream for us (e.g. not allowed, or the service is away): poll
        finally:
            call.cancel()
        while True:
            time.sleep(poll_interval)
            current = self._workflow_progress(id)
            if current.fingerprint() != seen:
                seen = current.fingerprint()
                yield current
            if current.ended:
                return

    # -- tasks -----------------------------------------------------------------------------------

    def create_task(
        self,
        title: str,
        *,
        description: str | None = None,
        priority: TaskPriorityLike | None = None,
        team_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> task_pb2.Task:
        """Queues a task (for the agents of ``team_id`` when given)."""
        request = task_service_pb2.CreateTaskRequest(
            request_id=request_id or "",
            title=title,
            description=description or "",
            priority=task_priority(priority) if priority is not None else task_pb2.TASK_PRIORITY_UNSPECIFIED,
            team_id=team_id or "",
            metadata=_struct(metadata),
        )
        task: task_pb2.Task = self._unary(self._tasks.CreateTask, request)
        return task

    def get_task(self, id: str) -> task_pb2.Task:
        task: task_pb2.Task = self._unary(self._tasks.GetTask, task_service_pb2.GetTaskRequest(id=id))
        return task

    def list_tasks(
        self,
        *,
        status: TaskStatusLike | Iterable[TaskStatusLike] | None = None,
        team_id: str | None = None,
        agent_id: str | None = None,
        page_size: int = 50,
    ) -> Iterator[task_pb2.Task]:
        """Tasks, fetched page by page as the iterator is consumed."""
        request = task_service_pb2.ListTasksRequest(
            page_size=page_size,
            status=_enum_numbers(status, task_status),
            team_id=team_id or "",
            agent_id=agent_id or "",
        )
        return self._pages(self._tasks.ListTasks, request, lambda page: page.tasks)

    def assign_task(self, id: str, agent_id: str | None = None) -> task_pb2.Task:
        """Assigns the task to ``agent_id``, or (None) to an idle agent of the task's team."""
        request = task_service_pb2.AssignTaskRequest(id=id, agent_id=agent_id or "")
        task: task_pb2.Task = self._unary(self._tasks.AssignTask, request)
        return task

    def complete_task(
        self, id: str, *, result: Mapping[str, Any] | None = None, error: str | None = None
    ) -> task_pb2.Task:
        """Completes the task with ``result``; with ``error`` it fails instead."""
        request = task_service_pb2.CompleteTaskRequest(id=id, result=_struct(result), error=error or "")
        task: task_pb2.Task = self._unary(self._tasks.CompleteTask, request)
        return task

    # -- budgets ---------------------------------------------------------------------------------

    def set_budget(
        self,
        entity_type: BudgetEntityLike,
        entity_id: str,
        amount: float,
        *,
        currency: str | None = None,
        period: BudgetPeriodLike | None = None,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
    ) -> budget_pb2.Budget:
        """Creates or replaces the budget of one agent, team, user or organization."""
        request = budget_service_pb2.SetBudgetRequest(
            entity_type=budget_entity_type(entity_type),
            entity_id=entity_id,
            total_budget=amount,
            currency=currency or "",
            period=budget_period(period) if period is not None else budget_pb2.BUDGET_PERIOD_UNSPECIFIED,
        )
        if period_start is not None:
            request.period_start.FromDatetime(period_start)
        if period_end is not None:
            request.period_end.FromDatetime(period_end)
        budget: budget_pb2.Budget = self._unary(self._budgets.SetBudget, request)
        return budget

    def get_budget(self, id: str) -> budget_pb2.Budget:
        request = budget_service_pb2.GetBudgetRequest(id=id)
        budget: budget_pb2.Budget = self._unary(self._budgets.GetBudget, request)
        return budget

    def list_budgets(
        self,
        *,
        entity_type: BudgetEntityLike | None = None,
        entity_id: str | None = None,
        page_size: int = 50,
    ) -> Iterator[budget_pb2.Budget]:
        """Budgets, fetched page by page as the iterator is consumed."""
        request = budget_service_pb2.ListBudgetsRequest(
            page_size=page_size,
            entity_type=budget_entity_type(entity_type)
            if entity_type is not None
            else budget_pb2.BUDGET_ENTITY_TYPE_UNSPECIFIED,
            entity_id=entity_id or "",
        )
        return self._pages(self._budgets.ListBudgets, request, lambda page: page.budgets)

    def delete_budget(self, id: str) -> None:
        self._unary(self._budgets.DeleteBudget, budget_service_pb2.DeleteBudgetRequest(id=id))

    # -- intent ----------------------------------------------------------------------------------

    def parse_intent(self, text: str, *, parser: str | None = None) -> intent_pb2.Intent:
        """What a natural-language request asks for; ``parser`` is ``deterministic`` (default) or
        ``llm``."""
        request = intent_service_pb2.ParseIntentRequest(input=text, parser=parser or "")
        intent: intent_pb2.Intent = self._unary(self._intents.ParseIntent, request)
        return intent

    def analyze_complexity(self, task: str) -> intent_pb2.ComplexityReport:
        request = intent_service_pb2.AnalyzeComplexityRequest(task=task)
        report: intent_pb2.ComplexityReport = self._unary(self._intents.AnalyzeComplexity, request)
        return report

    def generate_swarm_config(
        self,
        task: str,
        *,
        max_agents: int | None = None,
        budget_limit: float | None = None,
        models: Iterable[str] = (),
        strategy: StrategyLike | None = None,
    ) -> intent_pb2.SwarmConfig:
        """A team configuration (size, roles, strategy) for ``task`` within the given limits."""
        constraints = intent_pb2.SwarmConstraints(
            max_agents=max_agents or 0,
            budget_limit=budget_limit,
            models=list(models),
            strategy=execution_strategy(strategy) if strategy is not None else _NO_STRATEGY,
        )
        request = intent_service_pb2.GenerateSwarmConfigRequest(
            task=task, constraints=constraints if constraints.ByteSize() else None
        )
        config: intent_pb2.SwarmConfig = self._unary(self._intents.GenerateSwarmConfig, request)
        return config
