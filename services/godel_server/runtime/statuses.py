"""The contract's enums as the services store and compare them: one `StrEnum` per proto enum whose
values rows keep (their values are the strings stored today), each with its mapper to and from the
proto. Building a mapper checks its `StrEnum` against the proto's values (runtime/enums.py), so a
value added to a proto enum fails at import until the code names it. Shared by the services
because they share the contract (the team service keeps the status of the agents it spawns)."""

from __future__ import annotations

from enum import StrEnum

from godel.v1 import agent_pb2, budget_pb2, cluster_pb2, task_pb2, team_pb2, workflow_pb2
from godel_server.runtime.enums import ProtoEnum, kebab


class AgentStatus(StrEnum):
    """The coarse status of an agent (spec §2.1)."""

    PENDING = "pending"
    INITIALIZING = "initializing"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"


class LifecycleState(StrEnum):
    """The state of the agent state machine (spec §2.3, agent/lifecycle.py)."""

    INITIALIZING = "initializing"
    SPAWNING = "spawning"
    EXECUTING = "executing"
    WAITING = "waiting"
    PAUSED = "paused"
    COMPLETING = "completing"
    CLEANING_UP = "cleaning_up"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"


class SessionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class TeamStatus(StrEnum):
    CREATING = "creating"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ARCHIVED = "archived"


class WorkflowStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ClusterStatus(StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"
    DRAINING = "draining"


class LoadBalanceStrategy(StrEnum):
    """How the cluster registry routes (GODEL_CLUSTER_ROUTING, RouteRequest.strategy)."""

    ROUND_ROBIN = "round-robin"
    LEAST_CONNECTIONS = "least-connections"
    WEIGHTED_RESPONSE_TIME = "weighted-response-time"
    HEALTH_SCORE = "health-score"
    GEOGRAPHIC = "geographic"


class BudgetEntity(StrEnum):
    AGENT = "agent"
    TEAM = "team"
    USER = "user"
    ORGANIZATION = "organization"


class BudgetPeriod(StrEnum):
    NONE = "none"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


AGENT_STATUS = ProtoEnum(agent_pb2.AgentStatus, AgentStatus)
LIFECYCLE_STATE = ProtoEnum(agent_pb2.LifecycleState, LifecycleState)
SESSION_STATUS = ProtoEnum(agent_pb2.SessionStatus, SessionStatus)
TEAM_STATUS = ProtoEnum(team_pb2.TeamStatus, TeamStatus)
WORKFLOW_STATUS = ProtoEnum(workflow_pb2.WorkflowStatus, WorkflowStatus)
STEP_STATUS = ProtoEnum(workflow_pb2.StepStatus, StepStatus)
TASK_STATUS = ProtoEnum(task_pb2.TaskStatus, TaskStatus)
CLUSTER_STATUS = ProtoEnum(cluster_pb2.ClusterStatus, ClusterStatus)
LOAD_BALANCE_STRATEGY = ProtoEnum(cluster_pb2.LoadBalanceStrategy, LoadBalanceStrategy, spelling=kebab)
BUDGET_ENTITY = ProtoEnum(budget_pb2.BudgetEntityType, BudgetEntity)
BUDGET_PERIOD = ProtoEnum(budget_pb2.BudgetPeriod, BudgetPeriod)
