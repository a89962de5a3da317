"""In-process fan-out of stored events to live subscribers, with per-subscription backpressure.
A slow subscriber never slows the store: its buffer overflows by its own strategy, and `block`
subscribers catch up from the store instead of losing events. Each subscriber gets only the events
its audience may see (visibility.py), checked in memory against the reach it subscribed with."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from prometheus_client import Counter, Gauge

from godel.v1 import event_pb2
from godel_server.event.store import EventFilter
from godel_server.event.visibility import Audience, EventOwner
from godel_server.runtime.limits import UserSlots

SUBSCRIBERS = Gauge("godel_event_subscribers", "Live event subscriptions")
DROPPED = Counter("godel_event_subscriber_dropped_total", "Events dropped for slow subscribers", ["strategy"])

DROP, BLOCK, SLIDING = "drop", "block", "sliding"


class Subscription:
    def __init__(self, flt: EventFilter, strategy: str, buffer_size: int, audience: Audience) -> None:
        self.filter = flt
        self.audience = audience
        self.strategy = strategy
        self.buffer: deque[event_pb2.Event] = deque()
        self.size = buffer_size
        self.lagging = False
        self._ready = asyncio.Event()

    def offer(self, event: event_pb2.Event, owner: EventOwner) -> None:
        if self.lagging or not self.audience.admits(owner) or not self.filter.matches(event):
            return
        if len(self.buffer) >= self.size:
            if self.strategy == DROP:
                DROPPED.labels(DROP).inc()
                return
            if self.strategy == SLIDING:
                DROPPED.labels(SLIDING).inc()
                self.buffer.popleft()
            else:  # block: stop buffering; the stream catches up from the store
                self.lagging = True
                self.buffer.clear()
                self._ready.set()
                return
        self.buffer.append(event)
        self._ready.set()

    async def wait(self, timeout: float) -> bool:
        """True when there is something to do (an event, or lag to catch up)."""
        if self.buffer or self.lagging:
            return True
        self._ready.clear()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True


class SubscriptionHub:
    def __init__(self, per_owner: int = 0) -> None:
        self._subs: set[Subscription] = set()
        self.last_published = 0
        # Live subscriptions one user may hold at once, over every transport (0 = no cap).
        self.owners = UserSlots(per_owner, "live event subscriptions")

    def add(self, sub: Subscription) -> None:
        self._subs.add(sub)
        SUBSCRIBERS.set(len(self._subs))

    def remove(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        SUBSCRIBERS.set(len(self._subs))

    def publish(self, events: Iterable[event_pb2.Event]) -> None:
        for event in events:
            self.last_published = max(self.last_published, event.sequence)
            owner = EventOwner.of(event)
            for sub in self._subs:
                sub.offer(event, owner)
