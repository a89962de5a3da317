"""Who may call what, read from the contract (spec §3.4, §6.2).

Every RPC of a `godel.v1` service declares its access rule in the protos
(`option (godel.v1.access) = {...}`, see proto/godel/v1/access.proto). This module loads those
rules from the generated descriptors; there is no second table. A caller may call an RPC when
one of its permissions `resource:action:scope` matches the rule's resource and action (`*`
matches anything) and its scope is at least the rule's (own < team < all); which objects a scope
reaches is ownership.py's part. Deny by default: a method without a rule (an RPC that lacks the option, an unknown
service or method) is refused. gRPC health and reflection are public by their own descriptors.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2

import godel.v1
from godel.v1 import access_pb2
from godel_server.runtime.context import Caller
from godel_server.runtime.enums import ProtoEnum
from godel_server.runtime.errors import PermissionDeniedError
from godel_server.runtime.reflection import REFLECTION_SERVICES

API_PACKAGE = "godel.v1"
ACTIONS = ("create", "read", "update", "delete")
# own, team, all: the scope part of a permission `resource:action:scope`, narrowest first.
SCOPE = ProtoEnum(access_pb2.AccessScope, str)
SCOPES: tuple[str, ...] = SCOPE.names


@dataclass(frozen=True)
class Rule:
    """The access rule of one RPC: public, or the permission `resource:action` it needs."""

    public: bool
    resource: str = ""
    action: str = ""
    scope: str = ""

    def __str__(self) -> str:
        return "public" if self.public else f"{self.resource}:{self.action}:{self.scope}"


def _load_api_services() -> tuple[ServiceDescriptor, ...]:
    """Every service of the godel.v1 package, from every generated module of it."""
    services: dict[str, ServiceDescriptor] = {}
    for module_info in pkgutil.iter_modules(godel.v1.__path__):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(f"{godel.v1.__name__}.{module_info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                services[service.full_name] = service
    return tuple(services[name] for name in sorted(services))


API_SERVICES: tuple[ServiceDescriptor, ...] = _load_api_services()
# Served by every process and callable without credentials; not part of the godel.v1 contract.
INFRASTRUCTURE_SERVICES: tuple[ServiceDescriptor, ...] = (
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    *REFLECTION_SERVICES,
)


def method_path(method: MethodDescriptor) -> str:
    """The gRPC path of a method, `/godel.v1.AgentService/CreateAgent`."""
    return f"/{method.containing_service.full_name}/{method.name}"


def declared_rule(method: MethodDescriptor) -> Rule | None:
    """The rule an RPC declares, None when it lacks the option; ValueError when it is malformed."""
    options = method.GetOptions()
    if not options.HasExtension(access_pb2.access):
        return None
    return rule_of(options.Extensions[access_pb2.access], method.full_name)


def rule_of(access: access_pb2.Access, where: str) -> Rule:
    """The rule an `Access` option states; ValueError naming `where` when it is malformed."""
    if access.public:
        if access.resource or access.action or access.scope:
            raise ValueError(f"{where}: a public RPC names no resource, action or scope")
        return Rule(public=True)
    if not access.resource.isidentifier() or not access.resource.islower():
        raise ValueError(f"{where}: access.resource must be a lower-case name, got {access.resource!r}")
    if access.action not in ACTIONS:
        raise ValueError(f"{where}: access.action must be one of {', '.join(ACTIONS)}, got {access.action!r}")
    scope = SCOPE.get(access.scope)
    if scope is None:
        raise ValueError(f"{where}: access.scope must be set ({SCOPE.choices()})")
    return Rule(public=False, resource=access.resource, action=access.action, scope=scope)


def api_methods() -> Iterator[MethodDescriptor]:
    for service in API_SERVICES:
        yield from service.methods


def _load_rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for method in api_methods():
        rule = declared_rule(method)
        if rule is not None:
            rules[method_path(method)] = rule
    for service in INFRASTRUCTURE_SERVICES:
        for method in service.methods:
            rules[method_path(method)] = Rule(public=True)
    return rules


RULES: dict[str, Rule] = _load_rules()


def rule_for(method: str) -> Rule | None:
    """The rule of a gRPC path; None means the method is refused to everyone."""
    return RULES.get(method)


def is_public(method: str) -> bool:
    rule = RULES.get(method)
    return rule is not None and rule.public


def permission_scope(permission: str, resource: str, action: str) -> str | None:
    """The scope with which one permission `resource:action:scope` allows `action` on
    `resource`; None when it does not allow it (or names no known scope)."""
    parts = permission.split(":")
    if len(parts) != 3:
        return None
    g_resource, g_action, scope = parts
    if g_resource in ("*", resource) and g_action in ("*", action) and scope in SCOPES:
        return scope
    return None


def widest_scope(caller: Caller | None, resource: str, action: str) -> str | None:
    """The widest scope with which the caller's permissions allow `action` on `resource`."""
    if caller is None:
        return None
    found = [s for p in caller.permissions if (s := permission_scope(p, resource, action)) is not None]
    return max(found, key=SCOPES.index, default=None)


def grants(permission: str, resource: str, action: str, scope: str = "own") -> bool:
    """Whether one permission allows `action` on `resource` with at least `scope`."""
    granted = permission_scope(permission, resource, action)
    return granted is not None and SCOPES.index(granted) >= SCOPES.index(scope)


def require_permission(caller: Caller | None, resource: str, action: str, *, what: str) -> None:
    """PERMISSION_DENIED unless the caller may `action` on `resource` (for a part of an RPC that
    needs more than the RPC's own rule, e.g. an option that spends money)."""
    if caller is None or not any(grants(p, resource, action) for p in caller.permissions):
        role = caller.role if caller else "anonymous"
        raise PermissionDeniedError(
            f"role {role!r} may not {what} (needs {resource}:{action})",
            metadata={"resource": resource, "action": action, "role": role},
        )


def authorize(caller: Caller, method: str) -> None:
    """Raises PERMISSION_DENIED unless the caller's permissions allow the RPC."""
    rule = RULES.get(method)
    name = method.lstrip("/")
    if rule is None:
        raise PermissionDeniedError(
            f"{name} declares no access rule: refused to every caller",
            metadata={"method": name, "role": caller.role},
        )
    if rule.public:
        return
    if not any(grants(p, rule.resource, rule.action, rule.scope) for p in caller.permissions):
        raise PermissionDeniedError(
            f"role {caller.role!r} may not {rule.action} {rule.resource} resources ({name}, "
            f"needs {rule.resource}:{rule.action}:{rule.scope} or wider)",
            metadata={"resource": rule.resource, "action": rule.action, "role": caller.role},
        )
