"""Which objects a caller may see and act on: the `own`, `team` and `all` scopes of permissions
(spec §3.4, §6.2).

rbac.py decides whether a caller may call an RPC at all, from the access option each RPC declares
in the protos. For an RPC on objects that have an owner, this module decides whether the caller's
permissions reach the object: a permission of scope `own` reaches what the caller's user owns,
`team` also what is shared with one of the caller's user teams, `all` everything. Lists are
filtered with the same reach, so a list never shows a row its reader could not get.

An object records its owner when it is made (`Owner.of(caller)`): the user, and the user team it
is shared with (the creator's first team, by team id; none when the creator is in no team). An
object without an owning user (made before owners were recorded) is reached only by scope `all`.

A caller that may not even read an object gets NOT_FOUND, as if it did not exist (its id says
nothing about other users' objects); one that may read it but not do what the RPC does gets
PERMISSION_DENIED. The resource and action are the current RPC's rule: no second table. A request
that points at another object (a task's team, the agent a task is given to, a new agent's parent
session) must point at one the caller may read (`require_reach`), else NOT_FOUND naming the field.

Events carry the owner of what they are about (`EventMetadata.owner_user_id`, `owner_team_id`,
stamped by the service that publishes them; an event a client publishes is owned by the
publisher) and are read with the scope of the caller's `event:read` (event/visibility.py). An
event with no owner about no agent, team or workflow (cluster, alert, autonomic, system events) is
a system event every event reader sees; one with no owner about an agent, team or workflow (stored
before events carried owners) is reached only by scope `all`, like any object without an owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, or_, true
from sqlalchemy.orm import InstrumentedAttribute

from godel_server.runtime.context import Caller, current_caller, method_var
from godel_server.runtime.errors import NotFoundError, PermissionDeniedError
from godel_server.runtime.rbac import Rule, rule_for, widest_scope

# A column holding a user or user team id: a mapped attribute or a table's column.
Column = InstrumentedAttribute[str | None] | ColumnElement[str | None]


@dataclass(frozen=True)
class Owner:
    """Who owns an object: a user, and the user team the object is shared with."""

    user_id: str | None
    team_id: str | None = None

    @classmethod
    def of(cls, caller: Caller | None) -> Owner:
        """The owner of what `caller` makes."""
        if caller is None:
            return cls(None)
        return cls(caller.user_id or None, caller.teams[0] if caller.teams else None)


@dataclass(frozen=True)
class Reach:
    """The objects a caller's permissions reach for one resource and action."""

    scope: str | None  # own, team or all; None: no permission allows the action at all
    user_id: str = ""
    team_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, caller: Caller | None, resource: str, action: str) -> Reach:
        scope = widest_scope(caller, resource, action)
        if caller is None or scope is None:
            return cls(None)
        return cls(scope, caller.user_id, caller.teams)

    def covers(self, owner: Owner) -> bool:
        if self.scope == "all":
            return True
        if self.scope is None or not owner.user_id:
            return False
        if owner.user_id == self.user_id:
            return True
        return self.scope == "team" and owner.team_id is not None and owner.team_id in self.team_ids

    def where(self, user_column: Column, team_column: Column) -> ColumnElement[bool]:
        """The SQL condition that keeps exactly the rows this reach covers."""
        if self.scope == "all":
            return true()
        if self.scope is None or not self.user_id:
            return false()
        mine = user_column == self.user_id
        if self.scope == "team" and self.team_ids:
            return or_(mine, team_column.in_(self.team_ids))
        return mine


NO_OWNER = Owner(None)
# What the server's own work reaches (no caller's permissions narrow it).
EVERYTHING = Reach("all")


def current_rule() -> Rule:
    """The access rule of the RPC being served (set by the server interceptor)."""
    rule = rule_for(method_var.get())
    if rule is None or rule.public:
        raise PermissionDeniedError(f"{method_var.get() or 'this call'} reaches no owned objects")
    return rule


def creator(user_id: str, team_id: str) -> Owner:
    """The owner of what the current RPC creates: the caller, or the user `user_id` (and user
    team `team_id`) a request names (`owner_user_id`), which needs the RPC's permission with
    scope all (the team service creates its members' agents for the user who started them)."""
    caller = current_caller()
    if not user_id:
        return Owner.of(caller)
    rule = current_rule()
    if widest_scope(caller, rule.resource, rule.action) != "all":
        raise PermissionDeniedError(
            f"owner_user_id: only a caller with {rule.resource}:{rule.action}:all may create "
            f"{rule.resource}s for another user",
            metadata={"field": "owner_user_id", "resource": rule.resource, "action": rule.action},
        )
    return Owner(user_id, team_id or None)


def reach(action: str | None = None) -> Reach:
    """What the caller of the current RPC reaches with the RPC's action (or `action`)."""
    rule = current_rule()
    return Reach.of(current_caller(), rule.resource, action or rule.action)


def require_reach(resource: str, owner: Owner, missing: NotFoundError) -> None:
    """Lets the current RPC go on with an object of `resource` owned by `owner` that its request
    points at (the team a task is queued in, the agent a task is given to, the parent session of a
    new agent): the caller must be able to read that object, else `missing` (NOT_FOUND, as if it
    did not exist), so no request can attach anything to another user's objects."""
    if not Reach.of(current_caller(), resource, "read").covers(owner):
        raise missing


def check(owner: Owner, missing: NotFoundError) -> None:
    """Lets the current RPC go on with an object owned by `owner`, or raises: `missing` (the
    object's NOT_FOUND) when the caller may not read it, PERMISSION_DENIED when it may read it
    but not do what the RPC does."""
    rule = current_rule()
    caller = current_caller()
    if Reach.of(caller, rule.resource, rule.action).covers(owner):
        return
    if rule.action == "read" or not Reach.of(caller, rule.resource, "read").covers(owner):
        raise missing
    scope = widest_scope(caller, rule.resource, rule.action)
    kind, ident = missing.metadata.get("kind", rule.resource), missing.metadata.get("id", "")
    raise PermissionDeniedError(
        f"{kind} {ident!r} belongs to another user: your permission {rule.resource}:{rule.action} "
        f"has scope {scope or 'none'}",
        metadata={"resource": rule.resource, "action": rule.action, "scope": scope or ""},
    )
