"""The spellings of the contract's enums that the client and the CLI accept (``running``,
``map-reduce``, ``AGENT_STATUS_RUNNING`` or the number), the short names the CLI offers as choices,
and whether a resource's status means it has ended. Everything is read from the generated enums, so
a value added to a proto is accepted without a change here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

from godel.v1 import agent_pb2, budget_pb2, cluster_pb2, event_service_pb2, task_pb2, team_pb2, workflow_pb2

AgentStatusLike: TypeAlias = "agent_pb2.AgentStatus.ValueType | str"
TeamStatusLike: TypeAlias = "team_pb2.TeamStatus.ValueType | str"
StrategyLike: TypeAlias = "team_pb2.ExecutionStrategy.ValueType | str"
WorkflowStatusLike: TypeAlias = "workflow_pb2.WorkflowStatus.ValueType | str"
TaskStatusLike: TypeAlias = "task_pb2.TaskStatus.ValueType | str"
TaskPriorityLike: TypeAlias = "task_pb2.TaskPriority.ValueType | str"
BudgetEntityLike: TypeAlias = "budget_pb2.BudgetEntityType.ValueType | str"
BudgetPeriodLike: TypeAlias = "budget_pb2.BudgetPeriod.ValueType | str"
BackpressureLike: TypeAlias = "event_service_pb2.BackpressureStrategy.ValueType | str"
BalanceStrategyLike: TypeAlias = "cluster_pb2.LoadBalanceStrategy.ValueType | str"
ClusterStatusLike: TypeAlias = "cluster_pb2.ClusterStatus.ValueType | str"
_Number = TypeVar("_Number", bound=int)


def _enum_names(enum: Any, prefix: str) -> tuple[str, ...]:
    """The short lower-case names of an enum's values, UNSPECIFIED left out."""
    return tuple(
        name.removeprefix(prefix).lower()
        for name in enum.keys()  # noqa: SIM118 - an EnumTypeWrapper is no dict
        if not name.endswith("_UNSPECIFIED")
    )


def _enum_number(enum: Any, prefix: str, value: int | str, what: str) -> int:
    """``running``, ``map-reduce``, ``AGENT_STATUS_RUNNING`` or the number -> the enum's number."""
    if isinstance(value, int):
        return value
    name = value.strip().upper().replace("-", "_")
    if not name.startswith(prefix):
        name = f"{prefix}{name}"
    try:
        return int(enum.Value(name))
    except ValueError:
        choices = ", ".join(_enum_names(enum, prefix))
        raise ValueError(f"unknown {what} {value!r} (choose from {choices})") from None


def enum_numbers(value: Any, convert: Callable[[Any], _Number]) -> list[_Number]:
    """One value, several or none -> the list of enum numbers a repeated filter field takes."""
    if value is None:
        return []
    if isinstance(value, str | int):
        return [convert(value)]
    return [convert(item) for item in value]


def agent_status(value: AgentStatusLike) -> agent_pb2.AgentStatus.ValueType:
    """``running``, ``AGENT_STATUS_RUNNING`` or the enum number -> the AgentStatus value."""
    number = _enum_number(agent_pb2.AgentStatus, "AGENT_STATUS_", value, "agent status")
    return agent_pb2.AgentStatus.ValueType(number)


def team_status(value: TeamStatusLike) -> team_pb2.TeamStatus.ValueType:
    number = _enum_number(team_pb2.TeamStatus, "TEAM_STATUS_", value, "team status")
    return team_pb2.TeamStatus.ValueType(number)


def execution_strategy(value: StrategyLike) -> team_pb2.ExecutionStrategy.ValueType:
    """``parallel``, ``map-reduce``, ``pipeline``, ``tree`` (or the enum name or number)."""
    number = _enum_number(team_pb2.ExecutionStrategy, "EXECUTION_STRATEGY_", value, "execution strategy")
    return team_pb2.ExecutionStrategy.ValueType(number)


def workflow_status(value: WorkflowStatusLike) -> workflow_pb2.WorkflowStatus.ValueType:
    number = _enum_number(workflow_pb2.WorkflowStatus, "WORKFLOW_STATUS_", value, "workflow status")
    return workflow_pb2.WorkflowStatus.ValueType(number)


def task_status(value: TaskStatusLike) -> task_pb2.TaskStatus.ValueType:
    number = _enum_number(task_pb2.TaskStatus, "TASK_STATUS_", value, "task status")
    return task_pb2.TaskStatus.ValueType(number)


def task_priority(value: TaskPriorityLike) -> task_pb2.TaskPriority.ValueType:
    number = _enum_number(task_pb2.TaskPriority, "TASK_PRIORITY_", value, "task priority")
    return task_pb2.TaskPriority.ValueType(number)


def budget_entity_type(value: BudgetEntityLike) -> budget_pb2.BudgetEntityType.ValueType:
    """``agent``, ``team``, ``user`` or ``organization`` (``org`` too)."""
    if isinstance(value, str) and value.strip().lower() == "org":
        value = "organization"
    number = _enum_number(budget_pb2.BudgetEntityType, "BUDGET_ENTITY_TYPE_", value, "budget entity type")
    return budget_pb2.BudgetEntityType.ValueType(number)


def budget_period(value: BudgetPeriodLike) -> budget_pb2.BudgetPeriod.ValueType:
    number = _enum_number(budget_pb2.BudgetPeriod, "BUDGET_PERIOD_", value, "budget period")
    return budget_pb2.BudgetPeriod.ValueType(number)


def backpressure(value: BackpressureLike) -> event_service_pb2.BackpressureStrategy.ValueType:
    """``sliding``, ``drop`` or ``block`` (or the enum name or number)."""
    number = _enum_number(
        event_service_pb2.BackpressureStrategy, "BACKPRESSURE_STRATEGY_", value, "backpressure"
    )
    return event_service_pb2.BackpressureStrategy.ValueType(number)


AGENT_STATUS_NAMES: tuple[str, ...] = _enum_names(agent_pb2.AgentStatus, "AGENT_STATUS_")
TEAM_STATUS_NAMES: tuple[str, ...] = _enum_names(team_pb2.TeamStatus, "TEAM_STATUS_")
STRATEGY_NAMES: tuple[str, ...] = tuple(
    name.replace("_", "-") for name in _enum_names(team_pb2.ExecutionStrategy, "EXECUTION_STRATEGY_")
)
WORKFLOW_STATUS_NAMES: tuple[str, ...] = _enum_names(workflow_pb2.WorkflowStatus, "WORKFLOW_STATUS_")
TASK_STATUS_NAMES: tuple[str, ...] = _enum_names(task_pb2.TaskStatus, "TASK_STATUS_")
TASK_PRIORITY_NAMES: tuple[str, ...] = _enum_names(task_pb2.TaskPriority, "TASK_PRIORITY_")
BUDGET_PERIOD_NAMES: tuple[str, ...] = _enum_names(budget_pb2.BudgetPeriod, "BUDGET_PERIOD_")
BACKPRESSURE_NAMES: tuple[str, ...] = _enum_names(
    event_service_pb2.BackpressureStrategy, "BACKPRESSURE_STRATEGY_"
)
BALANCE_STRATEGY_NAMES: tuple[str, ...] = tuple(
    name.replace("_", "-") for name in _enum_names(cluster_pb2.LoadBalanceStrategy, "LOAD_BALANCE_STRATEGY_")
)

_TEAM_ENDED = (team_pb2.TEAM_STATUS_COMPLETED, team_pb2.TEAM_STATUS_FAILED, team_pb2.TEAM_STATUS_ARCHIVED)
_WORKFLOW_ENDED = (
    workflow_pb2.WORKFLOW_STATUS_COMPLETED,
    workflow_pb2.WORKFLOW_STATUS_FAILED,
    workflow_pb2.WORKFLOW_STATUS_CANCELLED,
)
_STEP_ENDED = (
    workflow_pb2.STEP_STATUS_COMPLETED,
    workflow_pb2.STEP_STATUS_FAILED,
    workflow_pb2.STEP_STATUS_SKIPPED,
    workflow_pb2.STEP_STATUS_CANCELLED,
)


def agent_ended(agent: agent_pb2.Agent) -> bool:
    """Whether the agent is done for good: completed, killed, or failed with no retry to come."""
    if agent.status in (agent_pb2.AGENT_STATUS_COMPLETED, agent_pb2.AGENT_STATUS_KILLED):
        return True
    # A failed attempt that will be retried has no completion time yet.
    return agent.status == agent_pb2.AGENT_STATUS_FAILED and agent.HasField("completed_at")


def team_ended(team: team_pb2.Team) -> bool:
    """Whether the team is done: completed, failed or archived."""
    return team.status in _TEAM_ENDED


def workflow_ended(workflow: workflow_pb2.Workflow) -> bool:
    """Whether the workflow is done: completed, failed or cancelled."""
    return workflow.status in _WORKFLOW_ENDED


def step_ended(step: workflow_pb2.WorkflowStep) -> bool:
    """Whether a workflow step is done: completed, failed, skipped or cancelled."""
    return step.status in _STEP_ENDED


def load_balance_strategy(value: BalanceStrategyLike) -> cluster_pb2.LoadBalanceStrategy.ValueType:
    """``round-robin``, ``least-connections``, ``weighted-response-time``, ``health-score`` or
    ``geographic`` (or the enum name or number)."""
    number = _enum_number(cluster_pb2.LoadBalanceStrategy, "LOAD_BALANCE_STRATEGY_", value, "strategy")
    return cluster_pb2.LoadBalanceStrategy.ValueType(number)


def cluster_status(value: ClusterStatusLike) -> cluster_pb2.ClusterStatus.ValueType:
    """``online``, ``degraded``, ``offline``, ``draining`` (or the enum name or number)."""
    number = _enum_number(cluster_pb2.ClusterStatus, "CLUSTER_STATUS_", value, "cluster status")
    return cluster_pb2.ClusterStatus.ValueType(number)
