"""Python client and CLI for Godel, the gRPC-first platform that runs fleets of AI agents.

>>> from godel_client import GodelClient
>>> with GodelClient() as godel:  # GODEL_ADDR / GODEL_API_KEY, or the local `make up` mesh
...     print(godel.health().version)
"""

from __future__ import annotations

from godel_client.client import (
    GodelClient,
    WorkflowProgress,
    agent_ended,
    agent_status,
    budget_entity_type,
    budget_period,
    execution_strategy,
    task_priority,
    task_status,
    team_ended,
    team_status,
    workflow_ended,
    workflow_status,
)
from godel_client.errors import (
    AuthError,
    ConfigError,
    FailedPreconditionError,
    FieldViolation,
    GodelError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)

__all__ = [
    "AuthError",
    "ConfigError",
    "FailedPreconditionError",
    "FieldViolation",
    "GodelClient",
    "GodelError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "UnavailableError",
    "WorkflowProgress",
    "agent_ended",
    "agent_status",
    "budget_entity_type",
    "budget_period",
    "execution_strategy",
    "task_priority",
    "task_status",
    "team_ended",
    "team_status",
    "workflow_ended",
    "workflow_status",
]
