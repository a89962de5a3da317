"""API keys `godel_sk_<random>`: generated here, stored only as a SHA-256 hash (the keys carry 256
random bits, so a slow KDF adds nothing), compared in constant time by hash lookup."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "godel_sk_"
# Spec §3.4's default roles, plus the resources it does not list (tasks, clusters, system,
# publishing client events) granted in the same spirit.
ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("*:*:all",),
    "operator": (
        "agent:*:team",
        "team:*:team",
        "workflow:*:team",
        "task:*:team",
        "budget:*:all",
        "intent:read:all",
        "event:read:team",
        "event:create:team",
        "cluster:*:all",
        "system:read:all",
    ),
    "developer": (
        "agent:*:own",
        "team:read:team",
        "workflow:*:own",
        "task:*:own",
        "budget:read:all",
        "intent:read:all",
        "event:read:team",
        "event:create:own",
        "cluster:read:all",
        "system:read:all",
    ),
    "viewer": (
        "agent:read:team",
        "team:read:team",
        "workflow:read:team",
        "task:read:team",
        "budget:read:all",
        "intent:read:all",
        "event:read:team",
        "cluster:read:all",
        "system:read:all",
    ),
    # Worker processes: connect to the agent service and nothing else.
    "worker": ("worker:*:all",),
}


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) > len(KEY_PREFIX) + 16


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 4]
