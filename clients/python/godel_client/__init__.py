"""Python client and CLI for Godel, the gRPC-first platform that runs fleets of AI agents.

>>> from godel_client import GodelClient
>>> with GodelClient() as godel:  # GODEL_ADDR / GODEL_API_KEY, or the local `make up` mesh
...     print(godel.health().version)
"""

from __future__ import annotations

from godel_client.client import GodelClient, agent_status
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
    "agent_status",
]
