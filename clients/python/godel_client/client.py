"""GodelClient: a thin synchronous layer over the generated gRPC stubs.

Every method raises :class:`godel_client.errors.GodelError` (a subclass of it) on failure, never a
bare ``grpc.RpcError``. Listing methods return lazy iterators that follow ``next_page_token``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeAlias, TypeVar

import grpc

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
from godel_client.credentials import resolve_address, resolve_api_key
from godel_client.errors import GodelError, from_rpc_error, make_error, status_from_number

API_KEY_HEADER = "x-api-key"

AgentStatusLike: TypeAlias = "agent_pb2.AgentStatus.ValueType | str"
Metadata: TypeAlias = tuple[tuple[str, str | bytes], ...]
_Response = TypeVar("_Response")
_Item = TypeVar("_Item")


def agent_status(value: AgentStatusLike) -> agent_pb2.AgentStatus.ValueType:
    """``running``, ``AGENT_STATUS_RUNNING`` or the enum number -> the AgentStatus value."""
    if isinstance(value, int):
        return value
    name = value.strip().upper()
    if not name.startswith("AGENT_STATUS_"):
        name = f"AGENT_STATUS_{name}"
    try:
        return agent_pb2.AgentStatus.Value(name)
    except ValueError:
        choices = ", ".join(AGENT_STATUS_NAMES)
        raise ValueError(f"unknown agent status {value!r} (choose from {choices})") from None


AGENT_STATUS_NAMES: tuple[str, ...] = tuple(
    name.removeprefix("AGENT_STATUS_").lower()
    for name in agent_pb2.AgentStatus.keys()  # noqa: SIM118 - an EnumTypeWrapper is no dict
    if name != "AGENT_STATUS_UNSPECIFIED"
)


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
