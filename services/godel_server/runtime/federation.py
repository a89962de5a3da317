"""How a call crosses from one cluster of a federation to a peer (README "Federation").

The calling cluster authenticates with the API key of role `peer` that the peer issued to it, and
states on whose behalf it calls in metadata: the original caller's user, role and key id, and its
own cluster name. Only a caller authenticated as a peer may state these (anyone else who sends them
is refused); the peer then acts as the original caller, within what the peer role allows: the call
must be allowed to both. A forwarded call carries no credential further (the peer cannot present
the original caller's key to anyone), and a forwarded CreateAgent may name the agent's id, so the
agent keeps one id on every cluster."""

from __future__ import annotations

import grpc

from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import PermissionDeniedError, ValidationError
from godel_server.runtime.rbac import authorize
from godel_server.runtime.validation import is_uuid

PEER_ROLE = "peer"
FORWARDED_USER = "x-godel-forwarded-user"
FORWARDED_ROLE = "x-godel-forwarded-role"
FORWARDED_KEY = "x-godel-forwarded-key"
ORIGIN_CLUSTER = "x-godel-origin-cluster"
# A forwarded CreateAgent: the id the agent has on the cluster it was created through.
AGENT_ID = "x-godel-agent-id"
FORWARDING_HEADERS = (FORWARDED_USER, FORWARDED_ROLE, FORWARDED_KEY, ORIGIN_CLUSTER, AGENT_ID)
MAX_VALUE_LEN = 255
# gRPC waits longer and longer (up to 2 minutes by default) before it tries a refused address again,
# failing every call meanwhile: a peer that was down for a while would stay unreachable for minutes
# after it is back. Another cluster is tried again at least every 2 s.
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def cluster_channel(endpoint: str) -> grpc.aio.Channel:
    """A channel to another cluster's gateway (plain gRPC: README "Federation", not built: TLS)."""
    return grpc.aio.insecure_channel(endpoint, options=RECONNECT_OPTIONS)


def forwarding_metadata(
    caller: Caller | None, origin_cluster: str, agent_id: str = ""
) -> list[tuple[str, str]]:
    """The metadata that states, to a peer, whom a call is made for (the peer's credential aside)."""
    metadata = [(ORIGIN_CLUSTER, origin_cluster)]
    if caller is not None:
        metadata += [
            (FORWARDED_USER, caller.user_id),
            (FORWARDED_ROLE, caller.role),
            (FORWARDED_KEY, caller.key_id),
        ]
    if agent_id:
        metadata.append((AGENT_ID, agent_id))
    return metadata


def forwarded_caller(peer: Caller, metadata: dict[str, str], method: str) -> Caller:
    """The caller a call forwarded by `peer` is made for: PERMISSION_DENIED when `peer` is not a peer,
    or when the call is not allowed to both the peer and the forwarded role."""
    if peer.role != PEER_ROLE:
        raise PermissionDeniedError(
            f"only a federation peer may forward an identity ({', '.join(FORWARDING_HEADERS[:4])})",
            metadata={"role": peer.role},
        )
    values = {h: metadata.get(h, "").strip() for h in FORWARDING_HEADERS}
    if any(len(v) > MAX_VALUE_LEN for v in values.values()) or not values[ORIGIN_CLUSTER]:
        raise ValidationError.single(ORIGIN_CLUSTER, f"is required, at most {MAX_VALUE_LEN} characters")
    if values[AGENT_ID] and not is_uuid(values[AGENT_ID]):
        raise ValidationError.single(AGENT_ID, "must be a UUID")
    authorize(peer, method)
    role = values[FORWARDED_ROLE]
    if not role:
        # The peer cluster acts on its own behalf (re-placing an agent, following events).
        return Caller(
            peer.key_id, peer.user_id, peer.role, peer.permissions, origin_cluster=values[ORIGIN_CLUSTER]
        )
    if role not in ROLES or role == PEER_ROLE:
        raise PermissionDeniedError(f"unknown forwarded role {role!r}", metadata={"role": role})
    caller = Caller(
        key_id=values[FORWARDED_KEY] or peer.key_id,
        user_id=values[FORWARDED_USER] or peer.user_id,
        role=role,
        permissions=ROLES[role],
        origin_cluster=values[ORIGIN_CLUSTER],
        via_peer=peer.key_id,
    )
    authorize(caller, method)
    return caller


def is_forwarded(metadata: dict[str, str]) -> bool:
    return any(h in metadata for h in FORWARDING_HEADERS)
