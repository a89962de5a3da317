"""Role-based access per RPC (spec §3.4, §6.2): permissions `resource:action:scope`.

Every RPC maps to a resource (by service) and an action (by verb). A caller needs a permission
whose resource and action match, `*` matching anything. Scopes (`own`, `team`, `all`) are carried
for the ownership checks that come with teams; today any scope grants the action."""

from __future__ import annotations

from godel_server.runtime.context import Caller
from godel_server.runtime.errors import PermissionDeniedError

SERVICE_RESOURCES = {
    "AgentService": "agent",
    "TeamService": "team",
    "WorkflowService": "workflow",
    "TaskService": "task",
    "BudgetService": "budget",
    "IntentService": "intent",
    "EventService": "event",
    "ClusterService": "cluster",
    "AuthService": "key",
    "SystemService": "system",
    "WorkerService": "worker",
}
READ_VERBS = (
    "Get",
    "List",
    "Query",
    "Subscribe",
    "Stream",
    "Route",
    "Authenticate",
    "Parse",
    "Analyze",
    "Generate",
)
CREATE_VERBS = ("Create", "Publish", "Register", "Spawn", "Login")
DELETE_VERBS = ("Delete", "Unregister")


def required_permission(method: str) -> tuple[str, str] | None:
    """(resource, action) of a full method name like `/godel.v1.AgentService/CreateAgent`."""
    try:
        service, rpc = method.lstrip("/").split("/", 1)
    except ValueError:
        return None
    resource = SERVICE_RESOURCES.get(service.rsplit(".", 1)[-1])
    if resource is None:
        return None
    if rpc.startswith(READ_VERBS):
        action = "read"
    elif rpc.startswith(CREATE_VERBS):
        action = "create"
    elif rpc.startswith(DELETE_VERBS):
        action = "delete"
    else:
        action = "update"
    return resource, action


def _grants(permission: str, resource: str, action: str) -> bool:
    parts = permission.split(":")
    if len(parts) != 3:
        return False
    g_resource, g_action, _scope = parts
    return g_resource in ("*", resource) and g_action in ("*", action)


def authorize(caller: Caller, method: str) -> None:
    """Raises PERMISSION_DENIED when the caller's role does not allow the RPC."""
    needed = required_permission(method)
    if needed is None:
        return
    resource, action = needed
    if not any(_grants(p, resource, action) for p in caller.permissions):
        raise PermissionDeniedError(
            f"role {caller.role!r} may not {action} {resource} resources ({method.lstrip('/')})",
            metadata={"resource": resource, "action": action, "role": caller.role},
        )
