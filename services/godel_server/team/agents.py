"""The team service's only way to act on agents: AgentService over gRPC, with the service's own
API key (role `service`: agent:*:all). Creation is idempotent by the member id (the CreateAgent
request id); a member's agent belongs to the user who owns its team or workflow."""

from __future__ import annotations

from typing import Any, Protocol

import grpc
from google.protobuf import duration_pb2, json_format

from godel.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from godel_server.runtime.config import Settings
from godel_server.runtime.context import current_caller
from godel_server.runtime.errors import ReferenceNotFoundError, UnavailableError
from godel_server.runtime.events import to_struct
from godel_server.runtime.ownership import Owner, Reach, require_reach
from godel_server.runtime.tls import open_channel

API_KEY_HEADER = "x-api-key"
CALL_TIMEOUT = 15.0
# Codes that mean "this agent cannot take the action now": nothing to retry.
SETTLED = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
MEMBER_METADATA_KEY = "godelMember"


def member_request(
    member_id: str, team_id: str | None, task: str, spec: dict[str, Any]
) -> agent_service_pb2.CreateAgentRequest:
    """The CreateAgent request of a member: idempotent by the member id; `spec` is what the team's
    config and the strategy say of the member (runtime, command, model, placement, ...)."""
    config = agent_pb2.AgentConfig(
        runtime=spec.get("runtime", ""),
        command=list(spec.get("command") or []),
        endpoint=spec.get("endpoint", ""),
    )
    if spec.get("timeoutSeconds"):
        config.timeout.CopyFrom(duration_pb2.Duration(seconds=int(spec["timeoutSeconds"])))
    request = agent_service_pb2.CreateAgentRequest(
        request_id=member_id,
        team_id=team_id or "",
        label=spec.get("label", ""),
        model=spec.get("model", ""),
        task=task,
        config=config,
        repo=spec.get("repo", ""),
        max_retries=int(spec.get("maxRetries", 0)),
        parent_session_id=spec.get("parentSessionId", ""),
        metadata=to_struct({MEMBER_METADATA_KEY: member_id, **(spec.get("metadata") or {})}),
    )
    if spec.get("context"):
        request.context.CopyFrom(to_struct(spec["context"]))
    if spec.get("placement"):
        json_format.ParseDict(spec["placement"], request.placement)
    if spec.get("budgetLimit") is not None:
        request.budget_limit = float(spec["budgetLimit"])
    return request


class AgentGateway:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._channel = open_channel(settings.service_addrs["agent"], settings.tls)
        self._stub = agent_service_pb2_grpc.AgentServiceStub(self._channel)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        key = self._settings.service_api_key()
        if not key:
            raise UnavailableError(
                "the team service has no API key yet (GODEL_API_KEY or GODEL_API_KEY_FILE)"
            )
        return ((API_KEY_HEADER, key),)

    async def create(
        self, member_id: str, team_id: str | None, task: str, spec: dict[str, Any], owner: Owner
    ) -> agent_pb2.Agent:
        """Creates the member's agent for `owner` (or returns the one a previous attempt created)."""
        request = member_request(member_id, team_id, task, spec)
        request.owner_user_id = owner.user_id or ""
        request.owner_team_id = (owner.team_id or "") if owner.user_id else ""
        reply: agent_pb2.Agent = await self._stub.CreateAgent(
            request, timeout=CALL_TIMEOUT, metadata=self._metadata()
        )
        return reply

    async def kill(self, agent_id: str, reason: str) -> None:
        await self._settle(
            self._stub.KillAgent, agent_service_pb2.KillAgentRequest(id=agent_id, reason=reason)
        )

    async def pause(self, agent_id: str) -> None:
        await self._settle(
            self._stub.PauseAgent, agent_service_pb2.PauseAgentRequest(id=agent_id, paused_by="team-service")
        )

    async def resume(self, agent_id: str) -> None:
        await self._settle(self._stub.ResumeAgent, agent_service_pb2.ResumeAgentRequest(id=agent_id))

    async def get(self, agent_id: str) -> agent_pb2.Agent:
        reply: agent_pb2.Agent = await self._stub.GetAgent(
            agent_service_pb2.GetAgentRequest(id=agent_id), timeout=CALL_TIMEOUT, metadata=self._metadata()
        )
        return reply

    async def find(self, agent_id: str) -> agent_pb2.Agent | None:
        """The agent, None when there is none (UNAVAILABLE when the agent service cannot say)."""
        try:
            return await self.get(agent_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise UnavailableError(f"agent service: {exc.code().name}") from None

    async def list_team(
        self, team_id: str, page_size: int, page_token: str
    ) -> agent_service_pb2.ListAgentsResponse:
        reply: agent_service_pb2.ListAgentsResponse = await self._stub.ListAgents(
            agent_service_pb2.ListAgentsRequest(team_id=team_id, page_size=page_size, page_token=page_token),
            timeout=CALL_TIMEOUT,
            metadata=self._metadata(),
        )
        return reply

    async def _settle(self, method: Any, request: Any) -> None:
        """A control call whose "already in that state / gone" answers count as done."""
        try:
            await method(request, timeout=CALL_TIMEOUT, metadata=self._metadata())
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in SETTLED:
                raise

    async def close(self) -> None:
        await self._channel.close()


class AgentFinder(Protocol):
    async def find(self, agent_id: str) -> agent_pb2.Agent | None: ...


def agent_owner(agent: agent_pb2.Agent) -> Owner:
    return Owner(agent.owner_user_id or None, agent.owner_team_id or None)


def readable(agent: agent_pb2.Agent | None) -> bool:
    """Whether the caller of the current RPC may read `agent` (the service's own key reads any
    agent, so the caller's reach is checked here)."""
    return agent is not None and Reach.of(current_caller(), "agent", "read").covers(agent_owner(agent))


async def require_agent(agents: AgentFinder, field: str, agent_id: str) -> agent_pb2.Agent:
    """The agent `agent_id` a request's `field` names; NOT_FOUND unless it exists and the caller
    may read it."""
    agent = await agents.find(agent_id)
    missing = ReferenceNotFoundError(field, "agent", agent_id)
    if agent is None:
        raise missing
    require_reach("agent", agent_owner(agent), missing)
    return agent
