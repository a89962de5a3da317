"""The client's exception hierarchy, and the mapping of gRPC failures onto it.

Every failed call raises a :class:`GodelError`. Its ``code`` is the server's error code
(``google.rpc.ErrorInfo.reason``, e.g. ``AGENT_NOT_FOUND``) when the server sent one, else the
gRPC status name (``UNAVAILABLE``); ``details`` holds the decoded ``google.rpc`` detail messages of
the ``grpc-status-details-bin`` trailer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "godel.dev"
_DETAILS_TRAILER = "grpc-status-details-bin"

# google.rpc detail messages decoded from a status; anything else stays a google.protobuf.Any.
_DETAIL_TYPES: tuple[Any, ...] = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.RequestInfo,
    error_details_pb2.LocalizedMessage,
    error_details_pb2.Help,
    error_details_pb2.DebugInfo,
)

_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


class GodelError(Exception):
    """A call to Godel failed.

    ``status`` is the gRPC status code, ``reason`` the server's ``google.rpc.ErrorInfo.reason``
    (e.g. ``AGENT_NOT_FOUND``; empty when it sent none), ``code`` the reason or else the status
    name, ``field_violations`` the bad fields of a ``google.rpc.BadRequest`` detail, ``details``
    every decoded ``google.rpc`` detail message. Each status has its subclass (``STATUS``), so
    ``except NotFoundError`` catches a 404 and ``except GodelError`` every failure.
    """

    STATUS: grpc.StatusCode | None = None

    def __init__(
        self,
        code: str,
        message: str,
        details: Sequence[Message] = (),
        *,
        status: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: list[Message] = list(details)
        self.status = status if status is not None else self.STATUS

    @property
    def reason(self) -> str:
        info = error_info(self.details)
        return str(info.reason) if info is not None else ""

    @property
    def metadata(self) -> dict[str, str]:
        """The ``ErrorInfo.metadata`` of the error (e.g. the id of the missing resource)."""
        info = error_info(self.details)
        return dict(info.metadata) if info is not None else {}

    @property
    def field_violations(self) -> list[FieldViolation]:
        found: list[FieldViolation] = []
        for detail in self.details:
            if isinstance(detail, error_details_pb2.BadRequest):
                found.extend(
                    FieldViolation(str(v.field), str(v.description)) for v in detail.field_violations
                )
        return found

    @property
    def violations(self) -> list[FieldViolation]:
        """Same as ``field_violations``."""
        return self.field_violations

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ConfigError(GodelError):
    """The client's own configuration is unusable (e.g. an unreadable credentials file)."""

    def __init__(self, message: str) -> None:
        super().__init__("CONFIG_ERROR", message)


class CancelledError(GodelError):
    """The call was cancelled (gRPC CANCELLED)."""

    STATUS = grpc.StatusCode.CANCELLED


class InvalidArgumentError(GodelError):
    """The request was rejected as invalid (gRPC INVALID_ARGUMENT, HTTP 400); see
    ``field_violations``."""

    STATUS = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(GodelError):
    """No answer within the call's deadline (gRPC DEADLINE_EXCEEDED)."""

    STATUS = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(GodelError):
    """The addressed resource does not exist (gRPC NOT_FOUND, HTTP 404)."""

    STATUS = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(GodelError):
    """The resource exists already (gRPC ALREADY_EXISTS, HTTP 409)."""

    STATUS = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(GodelError):
    """The caller's role may not do this (gRPC PERMISSION_DENIED, HTTP 403)."""

    STATUS = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(GodelError):
    """A quota, budget or rate limit was hit (gRPC RESOURCE_EXHAUSTED, HTTP 429); ``retry_after``
    is how many seconds the server asked to wait (None for a quota: waiting alone does not help)."""

    STATUS = grpc.StatusCode.RESOURCE_EXHAUSTED

    @property
    def retry_after(self) -> float | None:
        for detail in self.details:
            if isinstance(detail, error_details_pb2.RetryInfo):
                return float(detail.retry_delay.ToTimedelta().total_seconds())
        return None


class FailedPreconditionError(GodelError):
    """The resource's state does not allow this (gRPC FAILED_PRECONDITION), e.g. pausing a completed
    agent."""

    STATUS = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(GodelError):
    """A concurrent change won (gRPC ABORTED, HTTP 409), e.g. an ``expected_version`` that moved on."""

    STATUS = grpc.StatusCode.ABORTED


class UnimplementedError(GodelError):
    """The server does not implement this call (gRPC UNIMPLEMENTED, HTTP 501)."""

    STATUS = grpc.StatusCode.UNIMPLEMENTED


class InternalError(GodelError):
    """The server failed (gRPC INTERNAL, HTTP 500)."""

    STATUS = grpc.StatusCode.INTERNAL


class UnavailableError(GodelError):
    """The mesh could not be reached (gRPC UNAVAILABLE, HTTP 503)."""

    STATUS = grpc.StatusCode.UNAVAILABLE


class AuthError(GodelError):
    """The credential (API key or token) is missing, invalid, revoked or expired (gRPC
    UNAUTHENTICATED, HTTP 401); ``server_message`` is why, as the server said it."""

    STATUS = grpc.StatusCode.UNAUTHENTICATED

    @property
    def server_message(self) -> str:
        marker = "(server said: "
        if marker in self.message and self.message.endswith(")"):
            return self.message.split(marker, 1)[1][:-1]
        return self.message


def _classes_by_status() -> dict[grpc.StatusCode, type[GodelError]]:
    """Each status with the subclass that declares it (read from the classes, not kept beside them)."""
    found: dict[grpc.StatusCode, type[GodelError]] = {}
    pending = list(GodelError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.STATUS is not None:
            found.setdefault(cls.STATUS, cls)
    return found


def unavailable_message(address: str, transport: str = "") -> str:
    """Why the mesh cannot be reached; a failed TLS handshake says so (it is no mesh that is down)."""
    lowered = transport.lower()
    if "handshake" in lowered or "ssl" in lowered or "certificate" in lowered:
        reason = transport.rsplit(": ", 1)[-1] or "handshake failed"
        return (
            f"TLS with {address} failed ({reason}): is it an https:// address, and does --tls-ca "
            "(or the profile's tls_ca) name the CA that signed its certificate (--tls-cert/--tls-key if "
            "it wants a client's)?"
        )
    return f"cannot reach Godel at {address} — is the mesh running? start it with `make up`"


AUTH_HINT = (
    "missing or invalid credentials: run `godel login`, pass --api-key, set GODEL_API_KEY, or store a "
    "key in a profile (`godel config set api_key KEY`); `make up` writes the admin key to .data/admin.key"
)
_CLASS_BY_STATUS = _classes_by_status()


def status_from_number(number: int) -> grpc.StatusCode:
    return _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def status_name(status: grpc.StatusCode) -> str:
    return str(status.name)


def decode_details(details: Sequence[any_pb2.Any]) -> list[Message]:
    """Unpacks known google.rpc detail messages; unknown ones are kept as the ``Any``."""
    decoded: list[Message] = []
    for packed in details:
        for detail_type in _DETAIL_TYPES:
            if packed.Is(detail_type.DESCRIPTOR):
                message: Message = detail_type()
                packed.Unpack(message)
                decoded.append(message)
                break
        else:
            decoded.append(packed)
    return decoded


def error_info(details: Sequence[Message]) -> Any | None:
    for detail in details:
        if isinstance(detail, error_details_pb2.ErrorInfo):
            return detail
    return None


def make_error(
    status: grpc.StatusCode,
    message: str,
    details: Sequence[Message] = (),
    *,
    address: str,
    from_server: bool = False,
) -> GodelError:
    """Builds the :class:`GodelError` subclass of a failed status.

    ``from_server`` says the status certainly came from a Godel service (e.g. in-band at the end of
    a stream), so its message is shown even for UNAVAILABLE.
    """
    info = error_info(details)
    code = str(info.reason) if info is not None and info.reason else status_name(status)
    if status is grpc.StatusCode.UNAVAILABLE:
        # A status a Godel service built itself carries ErrorInfo and a message worth showing;
        # anything else is the transport (or the gateway) failing to reach the mesh.
        built_by_godel = from_server or info is not None
        message = message if built_by_godel and message else unavailable_message(address, message)
    elif status is grpc.StatusCode.UNAUTHENTICATED:
        message = AUTH_HINT if not message else f"{AUTH_HINT} (server said: {message})"
    elif status is grpc.StatusCode.DEADLINE_EXCEEDED and not message:
        message = f"Godel at {address} did not answer in time"
    cls = _CLASS_BY_STATUS.get(status, GodelError)
    return cls(code, message or status_name(status).lower().replace("_", " "), details, status=status)


def _rich_status(error: Any) -> Any | None:
    """The google.rpc.Status of the ``grpc-status-details-bin`` trailer, if any. Its details are
    decoded even when its code or message disagree with the call's (e.g. rewritten by a proxy)."""
    for key, value in error.trailing_metadata() or ():
        if key == _DETAILS_TRAILER and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def from_rpc_error(error: grpc.RpcError, address: str) -> GodelError:
    """Maps a failed gRPC call (blocking or asyncio) onto the :class:`GodelError` hierarchy."""
    if not isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        return GodelError("UNKNOWN", str(error) or "gRPC call failed")
    status: grpc.StatusCode = error.code()
    message = str(error.details() or "")
    rich = _rich_status(error)
    details = decode_details(list(rich.details)) if rich is not None else []
    return make_error(status, message, details, address=address)
