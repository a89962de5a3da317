"""Copies the events of agents that run on peers into this cluster (README "Federation"): for each
placement still live, a subscription to the peer's SubscribeEvents (that agent's events, from the
last one copied, backpressure `block` so none is dropped) whose events go into this cluster's outbox,
unchanged (same id, `source.cluster` = the peer), with the cursor and the agent's state in the same
transaction. From the outbox they reach this cluster's Kafka topics like its own events: its event
store keeps them and its team service sees its members' events. A copied event that is copied again
(after a crash, or two replicas briefly following the same agent) has the same id: consumers skip it.

Each placement is followed by one replica: the one at index crc32(agent id) % n of the live replicas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from typing import Any

from sqlalchemy import select

from godel.v1 import agent_events_pb2, event_pb2, event_service_pb2
from godel_server.agent.federation import Federation
from godel_server.agent.lifecycle import TERMINAL
from godel_server.agent.placements import PlacementRepository
from godel_server.runtime.db import Database
from godel_server.runtime.errors import GodelError
from godel_server.runtime.events import event_data, utcnow
from godel_server.runtime.periodic import Periodic
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import LIFECYCLE_STATE, LifecycleState
from godel_server.runtime.tables import outbox

log = logging.getLogger(__name__)

SCAN_SECONDS = 1.0
RETRY_SECONDS = 2.0
HEARTBEAT_SECONDS = 5


def state_after(event: event_pb2.Event, state: LifecycleState) -> LifecycleState:
    """The agent's lifecycle state once `event` happened (the `to_state` of a transition event)."""
    data = event_data(event)
    if data is None or "transition" not in data.DESCRIPTOR.fields_by_name:
        return state
    transition = getattr(data, "transition")  # noqa: B009 - any transition event's payload
    return LIFECYCLE_STATE.get(transition.to_state) or state


def ended(event: event_pb2.Event, state: LifecycleState) -> bool:
    """Nothing more will happen to the agent (its events need no following)."""
    if event.type == "agent:delete" or state in TERMINAL:
        return True
    data = event_data(event)
    return isinstance(data, agent_events_pb2.AgentFailed) and data.final


class PeerEventFollower:
    def __init__(
        self, db: Database, publisher: EventPublisher, federation: Federation, replica_id: str
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._federation = federation
        self._replica = replica_id
        self._follows: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._loop = Periodic("peer-event-follower", SCAN_SECONDS, self.scan)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        tasks = list(self._follows.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._follows.clear()

    async def scan(self) -> None:
        """Starts a follow for each placement this replica should follow, stops the others."""
        async with self._db.reader() as session:
            repo = PlacementRepository(session)
            followed = await repo.followed()
            replicas = await repo.live_replicas(utcnow())
        if self._replica not in replicas:
            return
        mine = {
            (agent_id, cluster): after
            for agent_id, cluster, after in followed
            if replicas[zlib.crc32(agent_id.encode()) % len(replicas)] == self._replica
        }
        for key in set(self._follows) - set(mine):
            self._follows.pop(key).cancel()
        for key, after in mine.items():
            task = self._follows.get(key)
            if task is None or task.done():
                self._follows[key] = asyncio.create_task(self._follow(*key, after), name=f"follow-{key[0]}")

    async def _follow(self, agent_id: str, cluster: str, after: int) -> None:
        """Copies the agent's events from `cluster` until it ends (or moves, or the placement goes)."""
        failing = False
        while True:
            try:
                request = event_service_pb2.SubscribeEventsRequest(
                    agent_id=agent_id,
                    from_sequence=after,
                    backpressure=event_service_pb2.BACKPRESSURE_STRATEGY_BLOCK,
                    heartbeat_seconds=HEARTBEAT_SECONDS,
                )
                stream = self._federation.peer(cluster).stream("events", "SubscribeEvents", request)
                async with contextlib.aclosing(stream) as items:
                    async for item in items:
                        failing = False
                        if item.HasField("event"):
                            after = item.event.sequence
                            if not await self._copy(agent_id, cluster, item.event):
                                return
                        elif item.HasField("end") and item.end.code:
                            raise RuntimeError(item.end.message)
            except asyncio.CancelledError:
                raise
            except (GodelError, RuntimeError) as exc:
                if not failing:  # once per streak of failures
                    log.warning(
                        "cannot follow a peer's agent events; retrying",
                        extra={"agentId": agent_id, "cluster": cluster, "error": str(exc)},
                    )
                failing = True
            await asyncio.sleep(RETRY_SECONDS)

    async def _copy(self, agent_id: str, cluster: str, event: event_pb2.Event) -> bool:
        """Stores one event of the peer here; False when there is nothing more to follow."""
        async with self._db.session() as session:
            row = await PlacementRepository(session).get(agent_id)
            if row is None or row.cluster != cluster:
                return False
            if event.sequence <= row.event_sequence:
                return True
            row.event_sequence = event.sequence
            row.state = state_after(event, row.state)
            row.updated_at = utcnow()
            queued = await session.scalar(select(outbox.c.id).where(outbox.c.event_id == event.id))
            if queued is None:
                copy: Any = event_pb2.Event()
                copy.CopyFrom(event)
                copy.sequence = 0
                if not copy.source.cluster:
                    copy.source.cluster = cluster
                await self._publisher.publish(session, [copy])
            return not ended(event, row.state)
