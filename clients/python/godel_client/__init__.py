"""Python client and CLI for Godel, the gRPC-first platform that runs fleets of AI agents.

>>> from godel_client import GodelClient
>>> with GodelClient() as godel:  # GODEL_ADDR / GODEL_API_KEY, a profile, or the local `make up` mesh
...     print(godel.system.health().version)

One sub-client per service: ``godel.agents``, ``godel.teams``, ``godel.workflows``, ``godel.tasks``,
``godel.budgets``, ``godel.intent``, ``godel.events``, ``godel.auth``, ``godel.users``,
``godel.keys``, ``godel.clusters``, ``godel.system``. :class:`AsyncGodelClient` has the same ones for asyncio.
"""

from __future__ import annotations

from importlib import metadata

from godel_client.client import AsyncGodelClient, GodelClient
from godel_client.enums import (
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
    AbortedError,
    AlreadyExistsError,
    AuthError,
    CancelledError,
    ConfigError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    GodelError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
    UnimplementedError,
)
from godel_client.workflows import WorkflowProgress

try:
    __version__ = metadata.version("godel-client")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncGodelClient",
    "AuthError",
    "CancelledError",
    "ConfigError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "GodelClient",
    "GodelError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnavailableError",
    "UnimplementedError",
    "WorkflowProgress",
    "__version__",
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
