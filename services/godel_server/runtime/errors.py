"""The one exception hierarchy (spec §5.3). The error interceptor maps it to a gRPC status with
google.rpc.ErrorInfo (reason = code, domain = godel.dev) and, for bad input, google.rpc.BadRequest."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

ERROR_DOMAIN = "godel.dev"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class GodelError(Exception):
    code: str = "INTERNAL_ERROR"
    status: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = metadata or {}


class ValidationError(GodelError):
    code = "VALIDATION_ERROR"
    status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        if not violations:
            raise ValueError("ValidationError needs at least one violation")
        summary = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}")
        self.violations = violations

    @classmethod
    def single(cls, field: str, description: str) -> ValidationError:
        return cls([FieldViolation(field, description)])


class NotFoundError(GodelError):
    code = "NOT_FOUND"
    status = grpc.StatusCode.NOT_FOUND

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found", metadata={"kind": kind, "id": ident})


class ReferenceNotFoundError(NotFoundError):
    """A request's field names an object that does not exist, or that the caller may not read."""

    def __init__(self, field: str, kind: str, ident: str) -> None:
        super().__init__(kind, ident)
        self.message = f"{field}: {self.message}"
        self.args = (self.message,)
        self.metadata["field"] = field


class AlreadyExistsError(GodelError):
    code = "ALREADY_EXISTS"
    status = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(GodelError):
    code = "FAILED_PRECONDITION"
    status = grpc.StatusCode.FAILED_PRECONDITION


class LastAdminKeyError(FailedPreconditionError):
    """Revoking this key would leave no active admin key."""

    code = "LAST_ADMIN_KEY"


class ConflictError(GodelError):
    """Optimistic-concurrency conflict: the resource changed under the caller."""

    code = "CONFLICT"
    status = grpc.StatusCode.ABORTED


class AuthenticationError(GodelError):
    code = "UNAUTHENTICATED"
    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(GodelError):
    code = "PERMISSION_DENIED"
    status = grpc.StatusCode.PERMISSION_DENIED


class RateLimitedError(GodelError):
    """Too many requests from one caller; `retry_after` seconds until one is allowed again (sent
    as google.rpc.RetryInfo and, through the gateway, as the `retry-after` header)."""

    code = "RATE_LIMITED"
    status = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, metadata={"retryAfterSeconds": f"{retry_after:.3f}"})
        self.retry_after = retry_after


class QuotaExceededError(GodelError):
    """A caller holds as many of something (streams, subscriptions, running agents) as allowed."""

    code = "QUOTA_EXCEEDED"
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(GodelError):
    code = "UNAVAILABLE"
    status = grpc.StatusCode.UNAVAILABLE


class UnimplementedError(GodelError):
    code = "UNIMPLEMENTED"
    status = grpc.StatusCode.UNIMPLEMENTED


class AgentNotFoundError(NotFoundError):
    code = "AGENT_NOT_FOUND"

    def __init__(self, agent_id: str) -> None:
        super().__init__("agent", agent_id)


class EventNotFoundError(NotFoundError):
    code = "EVENT_NOT_FOUND"

    def __init__(self, event_id: str) -> None:
        super().__init__("event", event_id)


class ClusterNotFoundError(NotFoundError):
    code = "CLUSTER_NOT_FOUND"

    def __init__(self, cluster_id: str) -> None:
        super().__init__("cluster", cluster_id)
