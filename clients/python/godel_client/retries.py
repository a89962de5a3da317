"""Which calls gRPC may retry on UNAVAILABLE, and the channel's service config that says so.

A call is retried only when repeating it cannot do a thing twice. That is read from the contract
(``proto/godel/v1/*_service.proto``), not kept in a list here: a method is idempotent when its
access rule is a read (``action: "read"``), when it is public and bound to HTTP GET (health,
capabilities), or when its request carries a ``request_id`` (the client always sets one on creates,
so a repeat returns the first result). Control calls (pause, kill, ...), deletes and updates are
never retried.

gRPC retries with exponential backoff and full jitter (each wait is random between 0 and the
current backoff), and only before the server has answered: a stream that already delivered
messages is resumed by the stream helpers instead (``Connection.follow``).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Iterator

from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor

import godel.v1
from godel.v1 import access_pb2

MAX_ATTEMPTS_LIMIT = 5  # gRPC caps maxAttempts at 5
INITIAL_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 3.0
BACKOFF_MULTIPLIER = 2.0


def api_methods() -> Iterator[MethodDescriptor]:
    """Every RPC of every ``godel.v1`` service, from the generated modules."""
    for module_info in sorted(pkgutil.iter_modules(godel.v1.__path__), key=lambda m: m.name):
        if module_info.name.endswith("_service_pb2"):
            module = importlib.import_module(f"{godel.v1.__name__}.{module_info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                yield from service.methods


def is_idempotent(method: MethodDescriptor) -> bool:
    """Whether repeating a call of ``method`` is safe (see the module's docstring)."""
    options = method.GetOptions()
    access = options.Extensions[access_pb2.access]
    http_get = options.Extensions[annotations_pb2.http].WhichOneof("pattern") == "get"
    return (
        access.action == "read"
        or (access.public and http_get)
        or "request_id" in method.input_type.fields_by_name
    )


def idempotent_methods() -> list[MethodDescriptor]:
    return [method for method in api_methods() if is_idempotent(method)]


def service_config(max_attempts: int) -> str:
    """The gRPC service config (JSON) that retries the idempotent methods on UNAVAILABLE, up to
    ``max_attempts`` attempts in all (1: no retries)."""
    attempts = max(1, min(max_attempts, MAX_ATTEMPTS_LIMIT))
    if attempts == 1:
        return json.dumps({"methodConfig": []})
    names = [
        {"service": method.containing_service.full_name, "method": method.name}
        for method in idempotent_methods()
    ]
    policy = {
        "maxAttempts": attempts,
        "initialBackoff": f"{INITIAL_BACKOFF_SECONDS}s",
        "maxBackoff": f"{MAX_BACKOFF_SECONDS}s",
        "backoffMultiplier": BACKOFF_MULTIPLIER,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})
