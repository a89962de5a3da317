"""TeamService (spec §3.1 Teams) over the TeamOrchestrator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from godel.v1 import team_pb2, team_service_pb2, team_service_pb2_grpc
from godel_server.agent.validation import check_id
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import ValidationError
from godel_server.runtime.events import struct_to_dict, utcnow
from godel_server.runtime.validation import Violations
from godel_server.team.listing import newest_first
from godel_server.team.models import MemberRow, TeamRow
from godel_server.team.teams.mapping import STATUS_FROM_PROTO, STRATEGY_FROM_PROTO, config_to_dict
from godel_server.team.teams.orchestrator import TeamNotFoundError, TeamOrchestrator, new_team_id
from godel_server.team.teams.validation import check_budget, check_config, check_create

UPDATABLE = ("name", "description", "metadata", "config", "budget_allocated")


class TeamServicer(team_service_pb2_grpc.TeamServiceServicer):
    def __init__(self, db: Database, orchestrator: TeamOrchestrator) -> None:
        self._db = db
        self._teams = orchestrator

    async def CreateTeam(
        self, request: team_service_pb2.CreateTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        check_create(request)
        if request.request_id:
            existing = await self._by_request(request.request_id)
            if existing is not None:
                return existing
        now = utcnow()
        caller = current_caller()
        row = TeamRow(
            id=new_team_id(),
            request_id=request.request_id or None,
            name=request.name,
            description=request.description or None,
            config=config_to_dict(request.config),
            execution_strategy=STRATEGY_FROM_PROTO.get(request.execution_strategy, "parallel"),
            status="creating",
            task=request.task,
            progress=0,
            results={},
            budget_allocated=request.budget_allocated if request.HasField("budget_allocated") else None,
            budget_consumed=0.0,
            created_by=caller.key_id if caller else None,
            created_at=now,
            updated_at=now,
            meta=struct_to_dict(request.metadata),
        )
        try:
            async with self._db.session() as session:
                await self._teams.create(session, row)
        except IntegrityError:
            existing = await self._by_request(request.request_id) if request.request_id else None
            if existing is None:
                raise
            return existing
        return await self._teams.get(row.id)

    async def _by_request(self, request_id: str) -> team_pb2.Team | None:
        async with self._db.reader() as session:
            team_id = await session.scalar(select(TeamRow.id).where(TeamRow.request_id == request_id))
        return await self._teams.get(team_id) if team_id else None

    async def GetTeam(
        self, request: team_service_pb2.GetTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        check_id("id", request.id)
        return await self._teams.get(request.id)

    async def ListTeams(
        self, request: team_service_pb2.ListTeamsRequest, context: grpc.aio.ServicerContext
    ) -> team_service_pb2.ListTeamsResponse:
        statuses = sorted(STATUS_FROM_PROTO[s] for s in request.status if s in STATUS_FROM_PROTO)
        stmt = select(TeamRow)
        if statuses:
            stmt = stmt.where(TeamRow.status.in_(statuses))
        async with self._db.reader() as session:
            rows: Sequence[TeamRow]
            rows, token = await newest_first(
                session,
                stmt,
                TeamRow.created_at,
                TeamRow.id,
                requested_size=request.page_size,
                token=request.page_token,
                query=("teams", statuses),
            )
            members = (
                await session.scalars(select(MemberRow).where(MemberRow.team_id.in_([r.id for r in rows])))
            ).all()
        by_team: dict[str, list[MemberRow]] = {}
        for m in members:
            by_team.setdefault(m.team_id or "", []).append(m)
        return team_service_pb2.ListTeamsResponse(
            teams=[self._teams.snapshot(r, by_team.get(r.id, [])) for r in rows], next_page_token=token
        )

    async def UpdateTeam(
        self, request: team_service_pb2.UpdateTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        team = request.team
        check_id("team.id", team.id)
        paths = list(request.update_mask.paths) or ["name", "description", "metadata"]
        v = Violations()
        for path in paths:
            if path.split(".")[0] not in UPDATABLE:
                v.add("update_mask", f"{path!r} cannot be updated (updatable: {', '.join(UPDATABLE)})")
        if "name" in paths:
            v.require("team.name", team.name, max_len=255)
        if any(p.startswith("config") for p in paths):
            check_config(v, team.config, "team.config")
        if "budget_allocated" in paths:
            check_budget(v, "team.budget_allocated", team.budget_allocated)
        v.raise_if_any()
        async with self._db.session() as session:
            row = await session.get(TeamRow, team.id, with_for_update=True)
            if row is None:
                raise TeamNotFoundError(team.id)
            if "name" in paths:
                row.name = team.name
            if "description" in paths:
                row.description = team.description or None
            if "metadata" in paths:
                row.meta = struct_to_dict(team.metadata)
            if any(p.startswith("config") for p in paths):
                row.config = config_to_dict(team.config)
            if "budget_allocated" in paths:
                row.budget_allocated = team.budget_allocated
                await self._teams.set_budget(session, row)
            row.updated_at = utcnow()
        return await self._teams.get(team.id)

    async def DeleteTeam(
        self, request: team_service_pb2.DeleteTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_service_pb2.DeleteTeamResponse:
        check_id("id", request.id)
        await self._teams.delete(request.id)
        return team_service_pb2.DeleteTeamResponse()

    async def StartTeam(
        self, request: team_service_pb2.StartTeamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[team_service_pb2.StartTeamResponse]:
        check_id("id", request.id)
        async for update in self._teams.follow(request.id):
            yield update

    async def PauseTeam(
        self, request: team_service_pb2.PauseTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        check_id("id", request.id)
        return await self._teams.pause(request.id)

    async def ResumeTeam(
        self, request: team_service_pb2.ResumeTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        check_id("id", request.id)
        return await self._teams.resume(request.id)

    async def ScaleTeam(
        self, request: team_service_pb2.ScaleTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_service_pb2.ScaleTeamResponse:
        check_id("id", request.id)
        if not 1 <= request.target_size <= 1000:
            raise ValidationError.single("target_size", "must be between 1 and 1000")
        return await self._teams.scale(request.id, request.target_size)

    async def ListTeamAgents(
        self, request: team_service_pb2.ListTeamAgentsRequest, context: grpc.aio.ServicerContext
    ) -> team_service_pb2.ListTeamAgentsResponse:
        check_id("id", request.id)
        await self._teams.get(request.id)
        reply = await self._teams.agents(request.id, request.page_size, request.page_token)
        return team_service_pb2.ListTeamAgentsResponse(
            agents=reply.agents, next_page_token=reply.next_page_token
        )

    async def GetTeamMetrics(
        self, request: team_service_pb2.GetTeamMetricsRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.TeamMetrics:
        check_id("id", request.id)
        return await self._teams.metrics(request.id)
