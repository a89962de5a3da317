"""The objects a CreateAgent request points at, which its caller must be able to read (NOT_FOUND
naming the field otherwise, as if they did not exist): the parent session of a sub-agent (its
agent, here) and the team (in the team service, asked with the caller's own credential, so the
team service decides with its own ownership rules). A caller whose agent:create permission has
scope `all` (the team service creating its members' agents, an admin, a peer cluster) may name
any team."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from godel.v1 import team_service_pb2, team_service_pb2_grpc
from godel_server.agent.mapping import agent_owner
from godel_server.agent.models import AgentRow, SessionRow
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import ReferenceNotFoundError, UnavailableError
from godel_server.runtime.ownership import require_reach
from godel_server.runtime.rbac import widest_scope
from godel_server.runtime.tls import open_channel

CALL_TIMEOUT = 10.0
# What identifies the caller to the team service: its own credential, and the request id.
FORWARDED = ("x-api-key", "authorization", "x-request-id")
# The team service's answers that mean "no such team for this caller".
HIDDEN = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


class References:
    def __init__(self, db: Database, team_addr: str, tls: TlsSettings) -> None:
        self._db = db
        self._team_addr = team_addr
        self._tls = tls
        self._teams: team_service_pb2_grpc.TeamServiceStub | None = None
        self._channel: grpc.aio.Channel | None = None

    async def require_parent_session(self, session_id: str) -> None:
        missing = ReferenceNotFoundError("parent_session_id", "session", session_id)
        async with self._db.reader() as session:
            parent = await session.get(SessionRow, session_id)
            agent = await session.get(AgentRow, parent.agent_id) if parent else None
        if agent is None:
            raise missing
        require_reach("agent", agent_owner(agent), missing)

    async def require_team(self, team_id: str, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        if widest_scope(current_caller(), "agent", "create") == "all":
            return
        forwarded = [(k, v) for k, v in metadata if k in FORWARDED and isinstance(v, str)]
        try:
            await self._stub().GetTeam(
                team_service_pb2.GetTeamRequest(id=team_id), metadata=forwarded, timeout=CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in HIDDEN:
                raise ReferenceNotFoundError("team_id", "team", team_id) from None
            raise UnavailableError(f"team service: {exc.code().name}") from None

    def _stub(self) -> team_service_pb2_grpc.TeamServiceStub:
        if self._teams is None:
            self._channel = open_channel(self._team_addr, self._tls)
            self._teams = team_service_pb2_grpc.TeamServiceStub(self._channel)
        return self._teams

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
