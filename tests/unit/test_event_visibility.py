"""Who reads which events (event/visibility.py): the scope of a caller's `event:read` applied to the
owner each event carries, the same in SQL (queries, replays, GetEvent) as in the live hub; events
a client publishes are owned by the publishing user, whatever owner its request names."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf import struct_pb2

from godel.v1 import (
    agent_events_pb2,
    agent_pb2,
    cluster_events_pb2,
    event_pb2,
    event_service_pb2,
    team_events_pb2,
)
from godel_server.agent.models import AgentRow
from godel_server.agent.state import AgentStateStore
from godel_server.event.durable import DurableSubscriptions
from godel_server.event.hub import DROP, Subscription, SubscriptionHub
from godel_server.event.options import SubscribeOptions
from godel_server.event.servicer import EventServicer
from godel_server.event.store import EventFilter, EventStore
from godel_server.event.streaming import Beat, follow
from godel_server.event.visibility import Audience
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller, caller_var, method_var
from godel_server.runtime.db import Database
from godel_server.runtime.errors import EventNotFoundError
from godel_server.runtime.events import custom_event, new_event
from godel_server.runtime.ownership import NO_OWNER, Owner
from godel_server.runtime.publisher import EventPublisher
from tests.fakes.events import spawned
from tests.unit.conftest import outbox_events

RED, BLUE = "11111111-1111-4111-8111-00000000000a", "11111111-1111-4111-8111-00000000000b"


def person(user: str, role: str, *teams: str) -> Caller:
    return Caller(key_id=f"k-{user}", user_id=user, role=role, permissions=ROLES[role], teams=teams)


ALICE = person("alice", "developer", RED)
CAROL = person("carol", "developer", RED)  # alice's user team
BOB = person("bob", "developer", BLUE)
VERA = person("vera", "viewer", RED)
ROOT = person("root", "admin")
WORKER = person("w", "worker")  # may not read events at all
KEYLESS = Caller(key_id="k-svc", user_id="", role="developer", permissions=ROLES["developer"])


def agent_event(name: str, owner: Owner) -> event_pb2.Event:
    event = spawned(agent_pb2.Agent(id=name, task="t"))
    event.id = name
    event.metadata.owner_user_id = owner.user_id or ""
    event.metadata.owner_team_id = owner.team_id or ""
    return event


def system_event(name: str) -> event_pb2.Event:
    event = new_event(cluster_events_pb2.ClusterRegistered(), partition_key="c1", component="cluster")
    event.id = name
    return event


EVENTS = [
    agent_event("alice-shared", Owner("alice", RED)),
    agent_event("alice-private", Owner("alice")),
    agent_event("bob-agent", Owner("bob", BLUE)),
    agent_event("legacy-agent", NO_OWNER),  # stored before events carried owners
    system_event("cluster-up"),
]
SEES: dict[str, set[str]] = {
    "alice": {"alice-shared", "alice-private", "cluster-up"},
    "carol": {"alice-shared", "cluster-up"},
    "bob": {"bob-agent", "cluster-up"},
    "vera": {"alice-shared", "cluster-up"},
    "root": {e.id for e in EVENTS},
    "w": set(),
    "": {"cluster-up"},
}
READERS = (ALICE, CAROL, BOB, VERA, ROOT, WORKER, KEYLESS)


async def stored(db: Database, events: list[event_pb2.Event]) -> list[event_pb2.Event]:
    async with db.session() as session:
        return await EventStore(session).append(
            [event_pb2.Event.FromString(e.SerializeToString()) for e in events]
        )


@pytest.mark.parametrize("reader", READERS, ids=lambda c: c.user_id or "keyless")
def test_each_reader_sees_its_own_its_teams_and_system_events(reader: Caller) -> None:
    audience = Audience.of(reader)
    assert {e.id for e in EVENTS if audience.sees(e)} == SEES[reader.user_id]


async def test_queries_and_get_filter_in_sql_exactly_as_the_hub_does(event_db: Database) -> None:
    await stored(event_db, EVENTS)
    for reader in READERS:
        audience = Audience.of(reader)
        async with event_db.reader() as session:
            store = EventStore(session)
            found = await store.query(EventFilter(), audience=audience, limit=100)
            assert {e.id for e in found} == SEES[reader.user_id], reader.user_id
            for event in EVENTS:
                got = await store.get(event.id, audience=audience)
                assert (got is not None) == (event.id in SEES[reader.user_id]), (reader.user_id, event.id)


def test_the_hub_offers_each_subscriber_only_what_it_may_see() -> None:
    hub = SubscriptionHub()
    subs = {r.user_id: Subscription(EventFilter(), DROP, 100, Audience.of(r)) for r in READERS}
    for sub in subs.values():
        hub.add(sub)
    hub.publish(EVENTS)
    for user, sub in subs.items():
        assert {e.id for e in sub.buffer} == SEES[user], user


async def test_a_replaying_stream_then_live_shows_only_visible_events(event_db: Database) -> None:
    hub = SubscriptionHub()
    hub.last_published = len(await stored(event_db, EVENTS[:3]))
    options = SubscribeOptions(filter=EventFilter(), from_sequence=0, heartbeat_seconds=0.05)
    stream = follow(event_db, hub, options, owner="bob", audience=Audience.of(BOB))
    seen: list[str] = []

    async def read() -> None:
        async for item in stream:
            if not isinstance(item, Beat):
                seen.append(item.id)
            if "cluster-up" in seen:
                return

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.2)  # replayed what is stored, now live
    hub.publish(await stored(event_db, EVENTS[3:]))
    await asyncio.wait_for(reader, 10)
    await stream.aclose()
    assert seen == ["bob-agent", "cluster-up"]


class Served:
    """Calls EventServicer's RPCs as the server does: the interceptor records the RPC and caller."""

    def __init__(self, servicer: EventServicer) -> None:
        self._servicer = servicer

    async def call(self, caller: Caller, name: str, request: Any) -> Any:
        method_var.set(f"/godel.v1.EventService/{name}")
        caller_var.set(caller)
        return await getattr(self._servicer, name)(request, None)


@pytest.fixture
async def served(event_db: Database) -> Served:
    return Served(
        EventServicer(
            event_db, EventPublisher(None), SubscriptionHub(), DurableSubscriptions(event_db), instance="t"
        )
    )


async def test_rpcs_show_each_caller_its_events(event_db: Database, served: Served) -> None:
    await stored(event_db, EVENTS)
    for reader in (ALICE, BOB, ROOT):
        page = await served.call(reader, "QueryEvents", event_service_pb2.QueryEventsRequest(page_size=2))
        ids = [e.id for e in page.events]
        while page.next_page_token:
            page = await served.call(
                reader,
                "QueryEvents",
                event_service_pb2.QueryEventsRequest(page_size=2, page_token=page.next_page_token),
            )
            ids += [e.id for e in page.events]
        assert set(ids) == SEES[reader.user_id] and len(ids) == len(set(ids))
    got = await served.call(ALICE, "GetEvent", event_service_pb2.GetEventRequest(id="alice-private"))
    assert got.id == "alice-private"
    with pytest.raises(EventNotFoundError):
        await served.call(BOB, "GetEvent", event_service_pb2.GetEventRequest(id="alice-private"))


async def test_a_published_event_is_owned_by_its_publisher_not_by_whom_it_names(
    event_db: Database, served: Served
) -> None:
    forged = event_pb2.EventMetadata(owner_user_id="alice", owner_team_id=RED)
    await served.call(
        BOB,
        "PublishEvent",
        event_service_pb2.PublishEventRequest(
            type="deploy:done", payload=struct_pb2.Struct(), metadata=forged
        ),
    )
    (event,) = await outbox_events(event_db)
    assert (event.metadata.owner_user_id, event.metadata.owner_team_id) == ("bob", BLUE)
    audience = Audience.of(ALICE)
    assert not audience.sees(event) and Audience.of(BOB).sees(event)


def test_new_events_carry_their_owner_and_a_team_only_with_a_user() -> None:
    data = team_events_pb2.TeamCreated(team_id="t")
    owned = new_event(data, partition_key="t", component="x", owner=Owner("alice", RED))
    assert (owned.metadata.owner_user_id, owned.metadata.owner_team_id) == ("alice", RED)
    unowned = new_event(data, partition_key="t", component="x", owner=Owner(None, RED))
    assert (unowned.metadata.owner_user_id, unowned.metadata.owner_team_id) == ("", "")
    client = custom_event("deploy:done", {}, partition_key="p", component="client", owner=Owner("bob"))
    assert client.metadata.owner_user_id == "bob"


def test_an_agents_events_are_owned_by_the_agents_owner_not_by_whoever_acts() -> None:
    store = AgentStateStore(None, EventPublisher(None), "r1")  # type: ignore[arg-type]
    row = AgentRow(id="a1", user_id="alice", user_team_id=RED, team_id=None)
    caller_var.set(ROOT)  # an admin kills alice's agent: the event is still alice's
    event = store.event(agent_events_pb2.AgentKilled(), row)
    m = event.metadata
    assert (m.owner_user_id, m.owner_team_id, m.user_id, m.agent_id) == ("alice", RED, "root", "a1")
    assert Audience.of(CAROL).sees(event) and not Audience.of(BOB).sees(event)
