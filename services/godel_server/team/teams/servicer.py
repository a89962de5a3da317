"""TeamService (spec §3.1 Teams) over the TeamOrchestrator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from godel.v1 import team_pb2, team_service_pb2, team_service_pb2_grpc
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.deadletter_rpcs import DeadLetterRpcs
from godel_server.runtime.errors import ValidationError
from godel_server.runtime.fieldmask import update_paths
from godel_server.runtime.ownership import reach
from godel_server.runtime.statuses import TEAM_STATUS
from godel_server.runtime.validation import Violations, check_id
from godel_server.team import owners
from godel_server.team.models import TeamRow
from godel_server.team.notifications import require_notify_permission
from godel_server.team.teams.mapping import new_team_row
from godel_server.team.teams.orchestrator import TeamNotFoundError, TeamOrchestrator
from godel_server.team.teams.validation import check_budget, check_config, check_create

UPDATABLE = ("name", "description", "metadata", "config", "budget_allocated")
DEFAULT_UPDATE = ("name", "description", "metadata")


class TeamServicer(DeadLetterRpcs, team_service_pb2_grpc.TeamServiceServicer):
    def __init__(self, orchestrator: TeamOrchestrator, db: Database) -> None:
        self._teams = orchestrator
        self._db = db

    async def _owned(self, team_id: str) -> None:
        await owners.require(self._db, TeamRow, team_id, TeamNotFoundError(team_id))

    async def CreateTeam(
        self, request: team_service_pb2.CreateTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        check_create(request)
        require_notify_permission(request.config.notify_channels)
        return await self._teams.create(new_team_row(request, current_caller()))

    async def GetTeam(
        self, request: team_service_pb2.GetTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        check_id("id", request.id)
        await self._owned(request.id)
        return await self._teams.get(request.id)

    async def ListTeams(
        self, request: team_service_pb2.ListTeamsRequest, context: grpc.aio.ServicerContext
    ) -> team_service_pb2.ListTeamsResponse:
        teams, token = await self._teams.find(
            [s for s in map(TEAM_STATUS.get, request.status) if s],
            reach(),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return team_service_pb2.ListTeamsResponse(teams=teams, next_page_token=token)

    async def UpdateTeam(
        self, request: team_service_pb2.UpdateTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        team = request.team
        check_id("team.id", team.id)
        await self._owned(team.id)
        v = Violations()
        fields = update_paths(request.update_mask, UPDATABLE, default=DEFAULT_UPDATE, nested=("config",), v=v)
        if "name" in fields:
            v.require("team.name", team.name, max_len=255)
        if "config" in fields:
            check_config(v, team.config, "team.config")
        if "budget_allocated" in fields:
            check_budget(v, "team.budget_allocated", team.budget_allocated)
        v.raise_if_any()
        if "config" in fields:
            require_notify_permission(team.config.notify_channels)
        return await self._teams.update(team, fields)

    async def DeleteTeam(
        self, request: team_service_pb2.DeleteTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_service_pb2.DeleteTeamResponse:
        check_id("id", request.id)
        await self._owned(request.id)
        await self._teams.delete(request.id)
        return team_service_pb2.DeleteTeamResponse()

    async def StartTeam(
        self, request: team_service_pb2.StartTeamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[team_service_pb2.StartTeamResponse]:
        check_id("id", request.id)
        await self._owned(request.id)
        async for update in self._teams.follow(request.id):
            yield update

    async def PauseTeam(
        self, request: team_service_pb2.PauseTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        check_id("id", request.id)
        await self._owned(request.id)
        return await self._teams.pause(request.id)

    async def ResumeTeam(
        self, request: team_service_pb2.ResumeTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.Team:
        check_id("id", request.id)
        await self._owned(request.id)
        return await self._teams.resume(request.id)

    async def ScaleTeam(
        self, request: team_service_pb2.ScaleTeamRequest, context: grpc.aio.ServicerContext
    ) -> team_service_pb2.ScaleTeamResponse:
        check_id("id", request.id)
        await self._owned(request.id)
        if not 1 <= request.target_size <= 1000:
            raise ValidationError.single("target_size", "must be between 1 and 1000")
        return await self._teams.scale(request.id, request.target_size)

    async def ListTeamAgents(
        self, request: team_service_pb2.ListTeamAgentsRequest, context: grpc.aio.ServicerContext
    ) -> team_service_pb2.ListTeamAgentsResponse:
        check_id("id", request.id)
        await self._owned(request.id)
        await self._teams.get(request.id)
        reply = await self._teams.agents(request.id, request.page_size, request.page_token)
        return team_service_pb2.ListTeamAgentsResponse(
            agents=reply.agents, next_page_token=reply.next_page_token
        )

    async def GetTeamMetrics(
        self, request: team_service_pb2.GetTeamMetricsRequest, context: grpc.aio.ServicerContext
    ) -> team_pb2.TeamMetrics:
        check_id("id", request.id)
        await self._owned(request.id)
        return await self._teams.metrics(request.id)
