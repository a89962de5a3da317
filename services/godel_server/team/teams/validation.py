"""Input checks for TeamService requests; every violation is reported at once."""

from __future__ import annotations

import math

from godel.v1 import team_pb2, team_service_pb2
from godel_server.runtime.agent_rules import KNOWN_RUNTIMES, placement_problems
from godel_server.runtime.enums import one_of
from godel_server.runtime.validation import Violations
from godel_server.team.notifications import check_notify_channels
from godel_server.team.teams.mapping import DEFAULT_STRATEGY, STRATEGY
from godel_server.team.teams.strategies import STRATEGIES

MAX_TASK_LEN = 100_000
MAX_MEMBERS = 1000
MAX_DEPTH = 5


def check_config(v: Violations, config: team_pb2.TeamConfig, prefix: str = "config") -> None:
    for name, value, high in (
        ("size", config.size, MAX_MEMBERS),
        ("max_agents", config.max_agents, MAX_MEMBERS),
        ("min_agents", config.min_agents, MAX_MEMBERS),
        ("max_depth", config.max_depth, MAX_DEPTH),
        ("timeout_minutes", config.timeout_minutes, 7 * 24 * 60),
    ):
        if not 0 <= value <= high:
            v.add(f"{prefix}.{name}", f"must be between 0 and {high}")
    if config.max_agents and config.min_agents > config.max_agents:
        v.add(f"{prefix}.min_agents", "must not exceed max_agents")
    if len(config.inputs) > MAX_MEMBERS:
        v.add(f"{prefix}.inputs", f"must have at most {MAX_MEMBERS} items")
    if len(config.stages) > 100:
        v.add(f"{prefix}.stages", "must have at most 100 stages")
    for i, text in enumerate([*config.inputs, *config.stages]):
        if len(text) > MAX_TASK_LEN:
            v.add(f"{prefix}.inputs[{i}]", f"must be at most {MAX_TASK_LEN} characters")
    for name, problem in placement_problems(config.placement):
        v.add(f"{prefix}.placement.{name}", problem)
    if config.runtime not in KNOWN_RUNTIMES:
        v.add(f"{prefix}.runtime", "must be command or openai")
    if config.HasField("retry_policy") and not 0 <= config.retry_policy.max_retries <= 10:
        v.add(f"{prefix}.retry_policy.max_retries", "must be between 0 and 10")
    v.max_len(f"{prefix}.model", config.model, 255)
    check_notify_channels(v, f"{prefix}.notify_channels", config.notify_channels)


def check_budget(v: Violations, field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        v.add(field, "must be a number greater than 0")


def check_create(request: team_service_pb2.CreateTeamRequest) -> None:
    v = Violations()
    v.require("name", request.name, max_len=255)
    v.max_len("description", request.description, 10_000)
    v.max_len("request_id", request.request_id, 100)
    v.max_len("task", request.task, MAX_TASK_LEN)
    name = STRATEGY.get(request.execution_strategy) if request.execution_strategy else DEFAULT_STRATEGY
    strategy = STRATEGIES.get(name or "")
    if strategy is None:
        v.add("execution_strategy", f"must be {one_of(STRATEGIES)}")
    else:
        strategy.check_create(request, v)
    check_config(v, request.config)
    if request.HasField("budget_allocated"):
        check_budget(v, "budget_allocated", request.budget_allocated)
    v.raise_if_any()
