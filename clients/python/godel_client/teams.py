"""``client.teams``: teams of agents that work on one task under an execution strategy; create,
start and follow, pause, scale and inspect them (TeamService)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, Unpack

from google.protobuf import field_mask_pb2

from godel.v1 import team_pb2, team_service_pb2
from godel_client.enums import StrategyLike, TeamStatusLike, enum_numbers, execution_strategy, team_status
from godel_client.methods import Mode, SubClient, by_id, paged, stream, unary
from godel_client.service import to_struct


class CreateOptions(TypedDict, total=False):
    """What :meth:`Teams.create` takes besides the name and the task (None or absent: the server's
    default)."""

    strategy: StrategyLike | None
    size: int | None
    inputs: Iterable[str]
    stages: Iterable[str]
    max_depth: int | None
    max_agents: int | None
    runtime: str | None
    command: Iterable[str] | None
    model: str | None
    budget: float | None
    description: str | None
    repo: str | None
    endpoint: str | None
    timeout_minutes: int | None
    metadata: Mapping[str, Any] | None
    request_id: str | None


def create_request(
    name: str, task: str = "", **options: Unpack[CreateOptions]
) -> team_service_pb2.CreateTeamRequest:
    """Creates a team (it does not start: see :meth:`Teams.start`).

    ``inputs`` feed the parallel and map-reduce strategies, ``stages`` the pipeline strategy,
    ``max_depth`` the tree strategy; ``command`` is the argv template of command-runtime members
    and ``budget`` the team's spend limit in USD.
    """
    command, strategy = options.get("command"), options.get("strategy")
    config = team_pb2.TeamConfig(
        size=options.get("size") or 0,
        inputs=list(options.get("inputs", ())),
        stages=list(options.get("stages", ())),
        max_depth=options.get("max_depth") or 0,
        max_agents=options.get("max_agents") or 0,
        runtime=options.get("runtime") or "",
        command=list(command) if command else None,
        model=options.get("model") or "",
        repo=options.get("repo") or "",
        endpoint=options.get("endpoint") or "",
        timeout_minutes=options.get("timeout_minutes") or 0,
    )
    return team_service_pb2.CreateTeamRequest(
        request_id=options.get("request_id") or "",
        name=name,
        description=options.get("description") or "",
        execution_strategy=execution_strategy(strategy)
        if strategy is not None
        else team_pb2.EXECUTION_STRATEGY_UNSPECIFIED,
        config=config if config.ByteSize() else None,
        task=task,
        budget_allocated=options.get("budget"),
        metadata=to_struct(options.get("metadata")),
    )


class UpdateOptions(TypedDict, total=False):
    """The fields :meth:`Teams.update` can change; only those given are sent."""

    name: str
    description: str
    budget: float
    max_agents: int
    metadata: Mapping[str, Any]


def update_request(id: str, **changes: Unpack[UpdateOptions]) -> team_service_pb2.UpdateTeamRequest:
    """Changes only the fields given (sent as the request's update_mask)."""
    team = team_pb2.Team(id=id)
    paths: list[str] = []
    if "name" in changes:
        team.name = changes["name"]
        paths.append("name")
    if "description" in changes:
        team.description = changes["description"]
        paths.append("description")
    if "budget" in changes:
        team.budget_allocated = changes["budget"]
        paths.append("budget_allocated")
    if "max_agents" in changes:
        team.config.max_agents = changes["max_agents"]
        paths.append("config.max_agents")
    if "metadata" in changes:
        team.metadata.update(dict(changes["metadata"]))
        paths.append("metadata")
    return team_service_pb2.UpdateTeamRequest(team=team, update_mask=field_mask_pb2.FieldMask(paths=paths))


def _list(
    *, status: TeamStatusLike | Iterable[TeamStatusLike] | None = None, page_size: int = 50
) -> team_service_pb2.ListTeamsRequest:
    """Teams, fetched page by page as the iterator is consumed."""
    return team_service_pb2.ListTeamsRequest(page_size=page_size, status=enum_numbers(status, team_status))


def _start(id: str) -> team_service_pb2.StartTeamRequest:
    """Starts the team now and returns its progress: a snapshot of the team after each team or
    member event, until the team ends. Closing the iterator stops following, not the team."""
    return team_service_pb2.StartTeamRequest(id=id)


def _scale(id: str, size: int) -> team_service_pb2.ScaleTeamRequest:
    """Grows or shrinks the team to ``size`` agents; the answer names the agents added/removed."""
    return team_service_pb2.ScaleTeamRequest(id=id, target_size=size)


def _agents(id: str, page_size: int = 100) -> team_service_pb2.ListTeamAgentsRequest:
    """The team's member agents."""
    return team_service_pb2.ListTeamAgentsRequest(id=id, page_size=page_size)


def _metrics(id: str) -> team_service_pb2.GetTeamMetricsRequest:
    """Member counts, completion rate, duration and cost of a team."""
    return team_service_pb2.GetTeamMetricsRequest(id=id)


class Teams(SubClient[Mode]):
    """The teams of the mesh. A created team does not run until :meth:`start`."""

    SERVICE = team_service_pb2.DESCRIPTOR.services_by_name["TeamService"]

    create = unary("CreateTeam", create_request, team_pb2.Team)
    get = unary("GetTeam", by_id(team_service_pb2.GetTeamRequest), team_pb2.Team)
    list = paged("ListTeams", _list, team_service_pb2.ListTeamsResponse, lambda page: page.teams)
    update = unary("UpdateTeam", update_request, team_pb2.Team)
    delete = unary(
        "DeleteTeam",
        by_id(team_service_pb2.DeleteTeamRequest),
        team_service_pb2.DeleteTeamResponse,
        lambda _: None,
    )
    start = stream("StartTeam", _start, team_service_pb2.StartTeamResponse)
    pause = unary("PauseTeam", by_id(team_service_pb2.PauseTeamRequest), team_pb2.Team)
    resume = unary("ResumeTeam", by_id(team_service_pb2.ResumeTeamRequest), team_pb2.Team)
    scale = unary("ScaleTeam", _scale, team_service_pb2.ScaleTeamResponse)
    agents = paged(
        "ListTeamAgents", _agents, team_service_pb2.ListTeamAgentsResponse, lambda page: page.agents
    )
    metrics = unary("GetTeamMetrics", _metrics, team_pb2.TeamMetrics)
