"""The team service's mapping between Team protobufs and rows."""

from __future__ import annotations

from google.protobuf import json_format

from godel.v1 import team_pb2, team_service_pb2
from godel_server.runtime.context import Caller
from godel_server.runtime.enums import ProtoEnum, kebab
from godel_server.runtime.events import set_structs, set_times, struct_to_dict, utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import Owner
from godel_server.runtime.statuses import TEAM_STATUS, TeamStatus
from godel_server.team.models import TeamRow

TERMINAL = frozenset({TeamStatus.COMPLETED, TeamStatus.FAILED, TeamStatus.ARCHIVED})
# Teams store their strategy by its short name: EXECUTION_STRATEGY_MAP_REDUCE <-> "map-reduce".
STRATEGY = ProtoEnum(team_pb2.ExecutionStrategy, str, spelling=kebab)
DEFAULT_STRATEGY = STRATEGY.name(team_pb2.EXECUTION_STRATEGY_PARALLEL)


def config_to_dict(config: team_pb2.TeamConfig) -> dict[str, object]:
    return json_format.MessageToDict(config)


def new_config(config: team_pb2.TeamConfig) -> dict[str, object]:
    """The stored config of a new team: an autoscaling team shrinks to its first size by default."""
    stored = config_to_dict(config)
    if config.auto_scale and not config.min_agents:
        stored["minAgents"] = max(1, config.size)
    return stored


def new_team_row(request: team_service_pb2.CreateTeamRequest, caller: Caller | None) -> TeamRow:
    """The row of a team a CreateTeam request asks for (checked), before it starts. A request
    without a strategy gets the default one (parallel)."""
    now = utcnow()
    owner = Owner.of(caller)
    return TeamRow(
        id=new_id(),
        request_id=request.request_id or None,
        name=request.name,
        description=request.description or None,
        config=new_config(request.config),
        execution_strategy=STRATEGY.get(request.execution_strategy) or DEFAULT_STRATEGY,
        status=TeamStatus.CREATING,
        task=request.task,
        progress=0,
        results={},
        budget_allocated=request.budget_allocated if request.HasField("budget_allocated") else None,
        budget_consumed=0.0,
        created_by=caller.key_id if caller else None,
        user_id=owner.user_id,
        user_team_id=owner.team_id,
        created_at=now,
        updated_at=now,
        meta=struct_to_dict(request.metadata),
    )


def team_to_proto(row: TeamRow, agent_ids: list[str]) -> team_pb2.Team:
    team = team_pb2.Team(
        id=row.id,
        name=row.name,
        description=row.description or "",
        config=json_format.ParseDict(row.config or {}, team_pb2.TeamConfig(), ignore_unknown_fields=True),
        execution_strategy=STRATEGY.to_proto(row.execution_strategy),
        effective_strategy=STRATEGY.to_proto(row.effective_strategy or row.execution_strategy),
        status=TEAM_STATUS.to_proto(row.status),
        agent_ids=agent_ids,
        budget_consumed=row.budget_consumed or 0.0,
        task=row.task,
        progress=row.progress,
        error=row.error or "",
        owner_user_id=row.user_id or "",
        owner_team_id=row.user_team_id or "",
    )
    if row.budget_allocated is not None:
        team.budget_allocated = row.budget_allocated
    set_times(
        team,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        started_at=row.started_at,
    )
    set_structs(team, metadata=row.meta, results=row.results)
    return team
