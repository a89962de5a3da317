"""GodelClient: a thin synchronous layer over the generated gRPC stubs.

Every method raises :class:`godel_client.errors.GodelError` (a subclass of it) on failure, never a
bare ``grpc.RpcError``. Listing methods return lazy iterators that follow ``next_page_token``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeAlias

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
    ) -> agent_pb2.Agent:
        """Spawns an agent on ``task``; ``command`` is the argv of the ``command`` runtime."""
        config = agent_pb2.AgentConfig(runtime=runtime or "", command=list(command) if command else None)
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
        return self._list_agent_pages(request)

    def _list_agent_pages(self, request: agent_service_pb2.ListAgentsRequest) -> Iterator[agent_pb2.Agent]:
        while True:
            try:
                page: agent_service_pb2.ListAgentsResponse = self._agents.ListAgents(
                    request, timeout=self.timeout, metadata=self._metadata
                )
            except grpc.RpcError as exc:
                raise self._error(exc) from None
            yield from page.agents
            if not page.next_page_token or page.next_page_token == request.page_token:
                return
            request.page_token = page.next_page_token

    def delete_agent(self, id: str) -> None:
        """Deletes an agent; a running one is killed first."""
        request = agent_service_pb2.DeleteAgentRequest(id=id)
        try:
            self._agents.DeleteAgent(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

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
        while True:
            try:
                page: event_service_pb2.QueryEventsResponse = self._events.QueryEvents(
                    request, timeout=self.timeout, metadata=self._metadata
                )
            except grpc.RpcError as exc:
                raise self._error(exc) from None
            yield from page.events
            if not page.next_page_token or page.next_page_token == request.page_token:
                return
            request.page_token = page.next_page_token

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
        call = self._events.SubscribeEvents(request, metadata=self._metadata)
        try:
            for item in call:
                kind = item.WhichOneof("item")
                if kind == "event":
                    yield item.event
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
