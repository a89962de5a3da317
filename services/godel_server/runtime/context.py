"""Per-request context (request id, correlation id, caller) carried through contextvars."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Caller:
    """The authenticated identity behind a request."""

    key_id: str
    user_id: str
    role: str
    permissions: tuple[str, ...] = field(default_factory=tuple)
    credential: str = ""


request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
correlation_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")
trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")
caller_var: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def current_caller() -> Caller | None:
    return caller_var.get()
