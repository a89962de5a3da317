"""Per-request context (request id, correlation id, caller) carried through contextvars."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Caller:
    """The authenticated identity behind a request: the user (with the user teams it belongs to,
    which the `team` scope of permissions compares with an object's owner), the role and
    permissions in force, and the credential that proved it: an API key (`key_id`) or the access
    token of a login session (`session_id`)."""

    key_id: str
    user_id: str
    role: str
    permissions: tuple[str, ...] = field(default_factory=tuple)
    credential: str = field(default="", repr=False)
    username: str = ""
    teams: tuple[str, ...] = ()
    session_id: str = ""
    expires_at: datetime | None = None
    # The key's own rate limit in requests per second (0 = the server's default).
    requests_per_second: int = 0
    # A call a federation peer forwarded (runtime/federation.py): the cluster it came from, and the
    # key id of the peer that vouched for this caller ("" when the peer acts on its own behalf).
    origin_cluster: str = ""
    via_peer: str = ""

    @property
    def credential_id(self) -> str:
        """What identifies the credential (not its secret): `key:<id>` or `session:<id>`."""
        return f"key:{self.key_id}" if self.key_id else f"session:{self.session_id}"


request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
correlation_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")
trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")
caller_var: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)
# The gRPC path of the RPC being served: its access rule says what ownership checks compare.
method_var: contextvars.ContextVar[str] = contextvars.ContextVar("method", default="")


def current_caller() -> Caller | None:
    return caller_var.get()
