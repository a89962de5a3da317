"""API keys `godel_sk_<random>`: generated here, stored only as a SHA-256 hash (the keys carry 256
random bits, so a slow KDF adds nothing), compared in constant time by hash lookup."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "godel_sk_"
# Spec §3.4's default roles, plus the resources it does not list (tasks, clusters, system, alerts,
# autonomic policies, publishing client events, one's own durable event subscriptions, dead
# letters: operators and admins only) granted in the same spirit.
# Which permission each RPC needs is declared in the protos (option (godel.v1.access)); a few
# options of an RPC need more (`intent:create`: the llm parser of ParseIntent, which spends).
# Users and user teams (`user:*`) and API keys (`key:*`) are for admins alone.
ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("*:*:all",),
    "operator": (
        "agent:*:team",
        "team:*:team",
        "workflow:*:team",
        "task:*:team",
        "budget:*:all",
        "intent:read:all",
        "intent:create:all",
        "event:read:team",
        "event:create:team",
        "subscription:*:own",
        "cluster:*:all",
        "system:read:all",
        # Records a service quarantined (runtime/deadletters.py): list, retry, discard.
        "dead_letter:*:all",
        "alert:*:all",
        "autonomic:*:all",
    ),
    "developer": (
        "agent:*:own",
        "team:read:team",
        "workflow:*:own",
        "task:*:own",
        "budget:read:all",
        "intent:read:all",
        "intent:create:all",
        "event:read:team",
        "event:create:own",
        "subscription:*:own",
        "cluster:read:all",
        "system:read:all",
        "alert:read:all",
        "autonomic:read:all",
    ),
    "viewer": (
        "agent:read:team",
        "team:read:team",
        "workflow:read:team",
        "task:read:team",
        "budget:read:all",
        "intent:read:all",
        "event:read:team",
        "subscription:*:own",
        "cluster:read:all",
        "system:read:all",
        "alert:read:all",
        "autonomic:read:all",
    ),
    # Worker processes: connect to the agent service and nothing else.
    "worker": ("worker:*:all",),
    # The team service: creates and drives the agents of teams and workflows for the users who
    # own them (CreateAgent's owner_user_id needs agent:create:all), and nothing else.
    "service": ("agent:*:all",),
    # The cluster service's autonomic loop: restarts any user's agents and scales any autoscaling
    # team (it drains clusters in its own registry, without an RPC), and nothing else.
    "autonomic": ("agent:*:all", "team:*:all"),
    # Peer clusters of a federation (runtime/federation.py): place and follow agents here, register
    # and heartbeat; a call forwarded for a user is also limited to what that user's role may do.
    "peer": (
        "agent:*:all",
        "event:read:all",
        "cluster:read:all",
        "cluster:create:all",
        "cluster:update:all",
    ),
}


# The keys a deployment generates and hands to Godel as files `<name>.key` (`godel-server keys
# register DIR`): the first admin's, the team service's (it drives agents), the cluster service's
# (its autonomic loop restarts agents and scales teams), the agent service's (it asks the cluster
# registry where federated agents run; the role `make up` gives it) and the workers'.
DEPLOYMENT_KEYS: dict[str, str] = {
    "admin": "admin",
    "team-service": "service",
    "cluster-service": "autonomic",
    "agent-service": "operator",
    "worker": "worker",
}
# (registered role, role now): a deployment key registered by an older release with a role its
# name no longer has; `keys register` changes it (the team and cluster services' keys were an
# operator's).
ROLE_UPGRADES = frozenset({("operator", "service"), ("operator", "autonomic")})


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_strong_key(value: str) -> bool:
    """A key an operator supplies (e.g. from a Kubernetes Secret): the prefix, then at least 32
    characters of the URL-safe alphabet generate_key() uses."""
    body = value.removeprefix(KEY_PREFIX)
    return value.startswith(KEY_PREFIX) and len(body) >= 32 and all(c.isalnum() or c in "-_" for c in body)


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) > len(KEY_PREFIX) + 16


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 4]
