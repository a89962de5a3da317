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
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

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
    """A call to Godel failed."""

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
        self.status = status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ConfigError(GodelError):
    """The client's own configuration is unusable (e.g. an unreadable credentials file)."""

    def __init__(self, message: str) -> None:
        super().__init__("CONFIG_ERROR", message)


class UnavailableError(GodelError):
    """The mesh could not be reached (gRPC UNAVAILABLE)."""


class AuthError(GodelError):
    """The API key is missing or invalid (gRPC UNAUTHENTICATED)."""


class PermissionDeniedError(GodelError):
    """The API key's role may not do this (gRPC PERMISSION_DENIED)."""


class NotFoundError(GodelError):
    """The addressed resource does not exist (gRPC NOT_FOUND)."""


class FailedPreconditionError(GodelError):
    """The resource's state does not allow this (gRPC FAILED_PRECONDITION), e.g. pausing a completed
    agent."""


class InvalidArgumentError(GodelError):
    """The request was rejected as invalid (gRPC INVALID_ARGUMENT); see ``violations``."""

    @property
    def violations(self) -> list[FieldViolation]:
        found: list[FieldViolation] = []
        for detail in self.details:
            if isinstance(detail, error_details_pb2.BadRequest):
                found.extend(
                    FieldViolation(str(v.field), str(v.description)) for v in detail.field_violations
                )
        return found


def unavailable_message(address: str) -> str:
    return f"cannot reach Godel at {address} — is the mesh running? start it with `make up`"


AUTH_HINT = (
    "missing or invalid API key: set GODEL_API_KEY (or GODEL_CREDENTIALS_FILE) or pass --api-key; "
    "`make up` writes the admin key to .data/admin.key"
)


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
    """Builds the right :class:`GodelError` subclass for a failed status.

    ``from_server`` says the status certainly came from a Godel service (e.g. in-band at the end of
    a stream), so its message is shown even for UNAVAILABLE.
    """
    info = error_info(details)
    code = str(info.reason) if info is not None and info.reason else status_name(status)
    if status is grpc.StatusCode.UNAVAILABLE:
        # A status a Godel service built itself carries ErrorInfo and a message worth showing;
        # anything else is the transport (or the gateway) failing to reach the mesh.
        built_by_godel = from_server or info is not None
        text = message if built_by_godel and message else unavailable_message(address)
        return UnavailableError(code, text, details, status=status)
    if status is grpc.StatusCode.UNAUTHENTICATED:
        text = AUTH_HINT if not message else f"{AUTH_HINT} (server said: {message})"
        return AuthError(code, text, details, status=status)
    if status is grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDeniedError(code, message or "permission denied", details, status=status)
    if status is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgumentError(code, message or "invalid request", details, status=status)
    if status is grpc.StatusCode.NOT_FOUND:
        return NotFoundError(code, message or "not found", details, status=status)
    if status is grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPreconditionError(code, message or "failed precondition", details, status=status)
    if status is grpc.StatusCode.DEADLINE_EXCEEDED and not message:
        message = f"Godel at {address} did not answer in time"
    return GodelError(code, message or status_name(status).lower().replace("_", " "), details, status=status)


def _rich_status(call: grpc.Call) -> Any | None:
    """The google.rpc.Status of the ``grpc-status-details-bin`` trailer, if any."""
    try:
        return rpc_status.from_call(call)
    except ValueError:
        # The trailer disagrees with the call's code or message (e.g. rewritten by a proxy):
        # its details are still worth decoding.
        for key, value in call.trailing_metadata() or ():
            if key == _DETAILS_TRAILER and isinstance(value, bytes):
                return status_pb2.Status.FromString(value)
        return None


def from_rpc_error(error: grpc.RpcError, address: str) -> GodelError:
    """Maps a failed gRPC call onto the :class:`GodelError` hierarchy."""
    if not isinstance(error, grpc.Call):
        return GodelError("UNKNOWN", str(error) or "gRPC call failed")
    status: grpc.StatusCode = error.code()
    message = str(error.details() or "")
    rich = _rich_status(error)
    details = decode_details(list(rich.details)) if rich is not None else []
    return make_error(status, message, details, address=address)
