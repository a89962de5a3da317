"""Which stored and live events a caller may read: the scope of its `event:read` permission
(runtime/ownership.py) applied to the owner each event carries (`metadata.owner_user_id` and
`owner_team_id`, stamped by the service that publishes it).

- An event with an owner is read by those whose reach covers that owner: `own` the owning user,
  `team` also members of the user team it is shared with, `all` everyone.
- An event with no owner about no agent, team or workflow (cluster, alert, autonomic and system
  events, organization budgets) is a system event: every caller that may read events reads it.
- An event with no owner about an agent, team or workflow (stored before events carried owners,
  about an object made before objects had owners, or an autonomic restart or scaling, whose
  publisher does not know the owner) is read with scope `all` only.

The same rule runs in SQL for queries (`where`) and in memory for live streams (`sees`): the hub
checks each event against a subscriber's reach computed once when it subscribes, without a
database call per event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import ColumnElement, and_, false, or_, true

from godel.v1 import event_pb2
from godel_server.event.models import EventRow
from godel_server.runtime.context import Caller
from godel_server.runtime.ownership import EVERYTHING, Reach
from godel_server.runtime.rbac import rule_for

SUBSCRIBE_METHOD = "/godel.v1.EventService/SubscribeEvents"


class EventOwner(NamedTuple):
    """What decides who sees an event, read from it once (the hub reads it once per event, not
    once per subscriber: protobuf field access is what costs)."""

    user_id: str  # "" when the event has none
    team_id: str
    system: bool  # no owner, and about no agent, team or workflow

    @classmethod
    def of(cls, event: event_pb2.Event) -> EventOwner:
        m = event.metadata
        user = m.owner_user_id
        return cls(user, m.owner_team_id, not (user or m.agent_id or m.team_id or m.workflow_id))


@dataclass(frozen=True)
class Audience:
    """The events one reader may see: its reach for `event:read`."""

    reach: Reach
    # The reach unpacked once, for the hub's check of every event against every subscriber.
    _everything: bool = field(init=False, repr=False, compare=False)
    _nothing: bool = field(init=False, repr=False, compare=False)
    _teams: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scope = self.reach.scope
        object.__setattr__(self, "_everything", scope == "all")
        object.__setattr__(self, "_nothing", scope is None)
        object.__setattr__(self, "_teams", frozenset(self.reach.team_ids if scope == "team" else ()))

    @classmethod
    def of(cls, caller: Caller | None, method: str = SUBSCRIBE_METHOD) -> Audience:
        """What `caller` may see with the permission the RPC `method` needs (its access rule)."""
        rule = rule_for(method)
        if rule is None or rule.public:
            return cls(Reach(None))
        return cls(Reach.of(caller, rule.resource, rule.action))

    def sees(self, event: event_pb2.Event) -> bool:
        return self._everything or self.admits(EventOwner.of(event))

    def admits(self, owner: EventOwner) -> bool:
        """`Reach.covers` of the event's owner, or: a system event (see the module docstring)."""
        if self._everything:
            return True
        if self._nothing:
            return False
        if owner.user_id:
            return owner.user_id == self.reach.user_id or owner.team_id in self._teams
        return owner.system

    def where(self) -> ColumnElement[bool]:
        """The SQL condition on the events table that keeps exactly what `sees` keeps."""
        if self.reach.scope == "all":
            return true()
        if self.reach.scope is None:
            return false()
        system = and_(
            EventRow.owner_user_id.is_(None),
            EventRow.agent_id.is_(None),
            EventRow.team_id.is_(None),
            EventRow.workflow_id.is_(None),
        )
        return or_(self.reach.where(EventRow.owner_user_id, EventRow.owner_team_id), system)


# What the server's own reads see (replays for its own consumers, tests of the store).
EVERY_EVENT = Audience(EVERYTHING)
