"""Backpressure of live subscriptions: a slow subscriber never blocks the publisher."""

from __future__ import annotations

from godel.v1 import event_pb2
from godel_server.event.hub import BLOCK, DROP, SLIDING, Subscription, SubscriptionHub
from godel_server.event.store import EventFilter
from godel_server.event.visibility import EVERY_EVENT


def _events(n: int, event_type: str = "agent:start") -> list[event_pb2.Event]:
    return [event_pb2.Event(id=str(i), type=event_type, sequence=i) for i in range(1, n + 1)]


def test_drop_keeps_the_oldest_and_sliding_keeps_the_newest() -> None:
    hub = SubscriptionHub()
    drop, sliding = (
        Subscription(EventFilter(), DROP, 3, EVERY_EVENT),
        Subscription(EventFilter(), SLIDING, 3, EVERY_EVENT),
    )
    hub.add(drop)
    hub.add(sliding)
    hub.publish(_events(5))
    assert [e.sequence for e in drop.buffer] == [1, 2, 3]
    assert [e.sequence for e in sliding.buffer] == [3, 4, 5]
    assert hub.last_published == 5


def test_block_switches_to_catch_up_instead_of_losing_events() -> None:
    hub = SubscriptionHub()
    sub = Subscription(EventFilter(), BLOCK, 2, EVERY_EVENT)
    hub.add(sub)
    hub.publish(_events(3))
    assert sub.lagging and not sub.buffer


def test_filters_apply_before_buffering() -> None:
    hub = SubscriptionHub()
    sub = Subscription(EventFilter(types=("team:*",)), DROP, 10, EVERY_EVENT)
    hub.add(sub)
    hub.publish(_events(3) + _events(2, "team:start"))
    assert [e.type for e in sub.buffer] == ["team:start", "team:start"]
    hub.remove(sub)
    hub.publish(_events(1, "team:scale"))
    assert len(sub.buffer) == 2
