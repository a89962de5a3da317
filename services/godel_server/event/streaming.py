"""One subscription stream, the same for every transport: replay stored events after a sequence,
then live events from the hub, with no gap and no duplicate; heartbeats on idle streams."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from godel.v1 import event_pb2
from godel_server.event.durable import DurableSubscriptions
from godel_server.event.hub import Subscription, SubscriptionHub
from godel_server.event.options import SubscribeOptions
from godel_server.event.store import EventStore
from godel_server.event.visibility import Audience
from godel_server.runtime.db import Database

REPLAY_PAGE = 500


@dataclass(frozen=True)
class Beat:
    """A heartbeat: nothing to deliver; the newest stored sequence is `last_sequence`."""

    last_sequence: int


StreamItem = event_pb2.Event | Beat


async def follow(
    db: Database, hub: SubscriptionHub, options: SubscribeOptions, *, owner: str, audience: Audience
) -> AsyncGenerator[StreamItem, None]:
    """Yields a first Beat once the subscription is registered (live events from then on are
    delivered), then the events `audience` may see in sequence order and a Beat every
    `heartbeat_seconds` of silence. The subscription counts against its owner's cap
    (QuotaExceededError beyond it)."""
    release = hub.owners.acquire(owner)
    sub = Subscription(options.filter, options.strategy, options.buffer_size, audience)
    hub.add(sub)
    try:
        last_sent = hub.last_published
        if options.from_sequence is not None:
            last_sent = options.from_sequence
            sub.lagging = True
        yield Beat(hub.last_published)
        while True:
            if sub.lagging:
                async for event in _catch_up(db, hub, sub, last_sent):
                    last_sent = event.sequence
                    yield event
                continue
            if not await sub.wait(options.heartbeat_seconds):
                yield Beat(hub.last_published)
                continue
            while sub.buffer and not sub.lagging:
                event = sub.buffer.popleft()
                if event.sequence <= last_sent:
                    continue
                last_sent = event.sequence
                yield event
    finally:
        hub.remove(sub)
        release()


async def subscribe(
    db: Database,
    hub: SubscriptionHub,
    durable: DurableSubscriptions,
    options: SubscribeOptions,
    *,
    owner: str,
    audience: Audience,
    name_field: str,
) -> AsyncGenerator[StreamItem, None]:
    """`follow`, plus the cursor of a durable subscription when `options.name` is set: it resumes
    from the stored cursor, and moves once an event has been handed to the transport (the
    consumer asked for the next item)."""
    if not options.name:
        async for item in follow(db, hub, options, owner=owner, audience=audience):
            yield item
        return
    options, cursor = await durable.open(owner, options, hub.last_published, field=name_field)
    try:
        async for item in follow(db, hub, options, owner=owner, audience=audience):
            yield item
            if isinstance(item, event_pb2.Event):
                cursor.advance(item.sequence)
    finally:
        await durable.close(cursor)


async def _catch_up(
    db: Database, hub: SubscriptionHub, sub: Subscription, after: int
) -> AsyncIterator[event_pb2.Event]:
    """Replays stored events after `after`, then switches the subscription back to live delivery
    with no gap and no duplicate. Every event the hub has published is already committed, so once
    a query returns the tail, everything up to the hub's horizon taken before it was delivered."""
    while True:
        horizon = hub.last_published
        async with db.reader() as session:
            events = await EventStore(session).query(
                sub.filter, audience=sub.audience, limit=REPLAY_PAGE, after_sequence=after
            )
        for event in events:
            after = event.sequence
            yield event
        if len(events) == REPLAY_PAGE:
            continue
        after = max(after, horizon)
        if after >= hub.last_published:
            sub.buffer.clear()
            sub.lagging = False
            return
