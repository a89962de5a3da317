"""The team service's mapping between Team protobufs and rows."""

from __future__ import annotations

from google.protobuf import json_format

from godel.v1 import team_pb2
from godel_server.runtime.events import set_structs, set_times
from godel_server.team.models import TeamRow

STATUS_TO_PROTO: dict[str, team_pb2.TeamStatus.ValueType] = {
    "creating": team_pb2.TEAM_STATUS_CREATING,
    "active": team_pb2.TEAM_STATUS_ACTIVE,
    "paused": team_pb2.TEAM_STATUS_PAUSED,
    "completed": team_pb2.TEAM_STATUS_COMPLETED,
    "failed": team_pb2.TEAM_STATUS_FAILED,
    "archived": team_pb2.TEAM_STATUS_ARCHIVED,
}
STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}
TERMINAL = frozenset({"completed", "failed", "archived"})

STRATEGY_TO_PROTO: dict[str, team_pb2.ExecutionStrategy.ValueType] = {
    "parallel": team_pb2.EXECUTION_STRATEGY_PARALLEL,
    "map-reduce": team_pb2.EXECUTION_STRATEGY_MAP_REDUCE,
    "pipeline": team_pb2.EXECUTION_STRATEGY_PIPELINE,
    "tree": team_pb2.EXECUTION_STRATEGY_TREE,
}
STRATEGY_FROM_PROTO = {v: k for k, v in STRATEGY_TO_PROTO.items()}


def config_to_dict(config: team_pb2.TeamConfig) -> dict[str, object]:
    return json_format.MessageToDict(config)


def team_to_proto(row: TeamRow, agent_ids: list[str]) -> team_pb2.Team:
    team = team_pb2.Team(
        id=row.id,
        name=row.name,
        description=row.description or "",
        config=json_format.ParseDict(row.config or {}, team_pb2.TeamConfig(), ignore_unknown_fields=True),
        execution_strategy=STRATEGY_TO_PROTO[row.execution_strategy],
        effective_strategy=STRATEGY_TO_PROTO[row.effective_strategy or row.execution_strategy],
        status=STATUS_TO_PROTO[row.status],
        agent_ids=agent_ids,
        budget_consumed=row.budget_consumed or 0.0,
        task=row.task,
        progress=row.progress,
        error=row.error or "",
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
