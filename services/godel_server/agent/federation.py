"""Agents across a federation (README "Federation", spec §4.2 TransparentProxy): where a new agent
runs, and answering for the agents that run on a peer.

- Where: a CreateAgent with a placement requirement (region, free capacity, features), or whose model
  this cluster does not support, asks this cluster's registry (RouteRequest, preferring this
  cluster); when a peer is chosen, the agent is created there through the peer's gateway for the
  caller, with an id chosen here, and a placement record remembers where it went.
- Answering: the calls about such an agent (get, control, logs, transitions, sessions, delete) go to
  the peer with the caller's identity; its events are copied here by follower.py.
- Failover: when a peer goes offline, the agents placed there that had not started are created
  again, with the same id, on another cluster that meets their requirements; the copy on the
  offline peer is deleted when it comes back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from godel.v1 import agent_pb2, agent_service_pb2, cluster_events_pb2, cluster_pb2, cluster_service_pb2
from godel_server.agent.mapping import agent_state
from godel_server.agent.models import PlacementRow
from godel_server.agent.peers import LocalRegistry, PeerClient
from godel_server.agent.placements import FOLLOWED, PlacementRepository
from godel_server.agent.repository import AgentRepository
from godel_server.agent.state import COMPONENT, AgentStateStore
from godel_server.runtime.config import Settings
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import FailedPreconditionError, GodelError, UnavailableError
from godel_server.runtime.events import new_event, utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import Owner
from godel_server.runtime.statuses import LifecycleState

log = logging.getLogger(__name__)

ROUTABLE = (cluster_pb2.CLUSTER_STATUS_ONLINE, cluster_pb2.CLUSTER_STATUS_DEGRADED)


def creator_of(caller: Caller | None) -> dict[str, str]:
    if caller is None:
        return {}
    return {"keyId": caller.key_id, "userId": caller.user_id, "role": caller.role}


def caller_of(creator: dict[str, str]) -> Caller | None:
    """The identity a placement's agent is created and controlled with when no user asks (failover)."""
    if not creator.get("role"):
        return None
    return Caller(key_id=creator.get("keyId", ""), user_id=creator.get("userId", ""), role=creator["role"])


def has_placement(request: agent_service_pb2.CreateAgentRequest) -> bool:
    p = request.placement
    return bool(p.region or p.min_capacity or p.features or p.strategy)


class Federation:
    def __init__(self, settings: Settings, store: AgentStateStore) -> None:
        self.settings = settings.federation
        self.name = self.settings.cluster_name
        self._store = store
        self._db = store.db
        self.peers = {p.name: PeerClient(p, self.name) for p in self.settings.peers}
        self.registry = LocalRegistry(
            settings.service_addrs["cluster"], settings.tls, settings.service_api_key
        )

    @property
    def active(self) -> bool:
        """This cluster is federated with peers (only then can an agent live elsewhere)."""
        return self.settings.enabled and bool(self.peers)

    def peer(self, name: str) -> PeerClient:
        client = self.peers.get(name)
        if client is None:
            raise UnavailableError(
                f"cluster {name} is not a configured peer of {self.name or 'this cluster'}"
            )
        return client

    # ---- where a new agent runs ---------------------------------------------------------------
    async def route(self, request: agent_service_pb2.CreateAgentRequest, caller: Caller | None) -> str | None:
        """The peer that should run a new agent; None for this cluster. A call a peer forwarded is
        never forwarded again, and a repeated request_id goes where the first one went."""
        if caller is not None and caller.origin_cluster:
            return None
        if request.request_id:
            async with self._db.reader() as session:
                user = request.owner_user_id or (caller.user_id if caller else "") or None
                if await AgentRepository(session).by_request_id(request.request_id, user) is not None:
                    return None
                placed = await PlacementRepository(session).by_request_id(request.request_id)
            if placed is not None:
                return placed.cluster
        model = request.model
        foreign_model = bool(self.settings.models) and bool(model) and model not in self.settings.models
        if not has_placement(request) and not foreign_model:
            return None
        if not self.settings.enabled:
            raise FailedPreconditionError(
                "placement needs a federation: this installation is not a member of one (GODEL_CLUSTER_NAME)"
            )
        return await self.choose(request, exclude=())

    async def choose(
        self, request: agent_service_pb2.CreateAgentRequest, *, exclude: Sequence[str]
    ) -> str | None:
        """Asks this cluster's registry; a chosen cluster that is not a configured peer is excluded
        and the registry asked again."""
        p = request.placement
        query = cluster_service_pb2.RouteRequestRequest(
            region=p.region,
            require_region=bool(p.region),
            model=request.model,
            required_features=list(p.features),
            min_capacity=p.min_capacity,
            strategy=p.strategy,
            prefer_local=not exclude,
            exclude_clusters=list(exclude),
        )
        for _ in range(len(self.peers) + 2):
            reply: cluster_service_pb2.RouteRequestResponse = await self.registry.call("RouteRequest", query)
            if reply.cluster.local:
                return None
            if reply.cluster.name in self.peers:
                return reply.cluster.name
            query.exclude_clusters.append(reply.cluster.name)
        raise FailedPreconditionError("no configured peer cluster meets the placement")

    # ---- agents on peers ----------------------------------------------------------------------
    async def create(
        self, request: agent_service_pb2.CreateAgentRequest, caller: Caller | None, cluster: str
    ) -> agent_pb2.Agent:
        """Creates the agent on `cluster` for `caller`, after recording the placement (so a crash
        in between leaves a record that a retry with the same request_id completes)."""
        self.peer(cluster)
        now = utcnow()
        fresh = PlacementRow(
            agent_id=new_id(),
            request_id=request.request_id or None,
            cluster=cluster,
            state=LifecycleState.INITIALIZING,
            request=json_format.MessageToDict(request, preserving_proto_field_name=True),
            creator=creator_of(caller),
            event_sequence=0,
            replaced_from=[],
            created_at=now,
            updated_at=now,
        )

        async def find(session: Any) -> PlacementRow | None:
            return await PlacementRepository(session).by_request_id(request.request_id)

        async def add(session: Any) -> PlacementRow:
            await PlacementRepository(session).add(fresh)
            return fresh

        placement = await self._db.create_once(request.request_id, find, add)
        try:
            return await self._create_on(placement, placement.cluster, caller)
        except GodelError:
            if placement is fresh:
                async with self._db.session() as session:
                    await PlacementRepository(session).delete(fresh.agent_id)
            raise

    async def _create_on(
        self, placement: PlacementRow, cluster: str, caller: Caller | None
    ) -> agent_pb2.Agent:
        request = json_format.ParseDict(placement.request, agent_service_pb2.CreateAgentRequest())
        request.request_id = placement.agent_id
        request.ClearField("placement")
        agent: agent_pb2.Agent = await self.peer(cluster).call(
            "agents", "CreateAgent", request, caller=caller, agent_id=placement.agent_id
        )
        return agent

    async def placement(self, agent_id: str) -> PlacementRow | None:
        """Where an agent created through this cluster runs, when that is a peer."""
        if not self.active:
            return None
        async with self._db.reader() as session:
            return await PlacementRepository(session).get(agent_id)

    async def forward(
        self, placement: PlacementRow, method: str, request: Message, caller: Caller | None
    ) -> Any:
        """The same AgentService call, answered by the peer that runs the agent. An answer that shows
        the agent in a state whose events are followed is noted (a restarted agent is followed
        again). An end is not: the follower stops following an ended agent, so the end is noted when
        the follower has copied the event that says so (else a kill through this cluster could stop
        the copying before its `agent:kill` arrives)."""
        reply = await self.peer(placement.cluster).call("agents", method, request, caller=caller)
        state = agent_state(reply) if isinstance(reply, agent_pb2.Agent) else None
        if state is not None and state != placement.state and state in FOLLOWED:
            async with self._db.session() as session:
                row = await PlacementRepository(session).get(placement.agent_id)
                if row is not None and row.cluster == placement.cluster:
                    row.state = state
                    row.updated_at = utcnow()
        return reply

    def forward_stream(
        self, placement: PlacementRow, method: str, request: Message, caller: Caller | None
    ) -> AsyncGenerator[Any, None]:
        return self.peer(placement.cluster).stream("agents", method, request, caller=caller)

    async def delete(self, placement: PlacementRow, request: Message, caller: Caller | None) -> None:
        """Deletes the agent on its peer, then forgets the placement."""
        try:
            await self.forward(placement, "DeleteAgent", request, caller)
        except GodelError as exc:
            if exc.code not in ("NOT_FOUND", "AGENT_NOT_FOUND"):
                raise
        async with self._db.session() as session:
            await PlacementRepository(session).delete(placement.agent_id)

    # ---- failover -----------------------------------------------------------------------------
    async def replace_from(self, cluster: str) -> list[str]:
        """Creates the not-yet-started agents placed on `cluster` (offline) again, same id, on
        another cluster; returns their ids."""
        async with self._db.reader() as session:
            stranded = await PlacementRepository(session).not_started_on(cluster)
        moved: list[str] = []
        for placement in stranded:
            try:
                if await self._replace(placement, cluster):
                    moved.append(placement.agent_id)
            except GodelError as exc:
                log.warning(
                    "cannot place a stranded agent again",
                    extra={"agentId": placement.agent_id, "cluster": cluster, "error": exc.message},
                )
        return moved

    async def _replace(self, placement: PlacementRow, offline: str) -> bool:
        request = json_format.ParseDict(placement.request, agent_service_pb2.CreateAgentRequest())
        # Never back here (it did not meet the placement) nor to a cluster it already left.
        target = await self.choose(request, exclude=[self.name, offline, *placement.replaced_from])
        if target is None:
            return False
        agent = await self._create_on(placement, target, caller_of(placement.creator))

        async with self._db.session() as session:
            row = await PlacementRepository(session).get(placement.agent_id)
            if row is None or row.cluster != offline:
                return False
            row.cluster = target
            row.event_sequence = 0
            row.state = agent_state(agent)
            row.replaced_from = sorted({*row.replaced_from, offline})
            row.updated_at = utcnow()
            event = new_event(
                cluster_events_pb2.ClusterFailover(
                    agent_id=row.agent_id,
                    from_cluster=offline,
                    to_cluster=target,
                    reason=f"cluster {offline} is offline and the agent had not started",
                ),
                partition_key=row.agent_id,
                component=COMPONENT,
                instance=self._store.instance,
                agent_id=row.agent_id,
                owner=Owner(agent.owner_user_id or None, agent.owner_team_id or None),
            )
            await self._store.publisher.publish(session, [event])
        log.warning(
            "agent placed again", extra={"agentId": placement.agent_id, "from": offline, "to": target}
        )
        return True

    async def delete_stale_copies(self, online: set[str]) -> None:
        """Deletes the copies agents left on clusters they were moved away from, once those are back."""
        async with self._db.reader() as session:
            rows = await PlacementRepository(session).with_stale_copies()
        for row in rows:
            done = []
            for cluster in row.replaced_from:
                if cluster not in online or cluster not in self.peers:
                    continue
                try:
                    await self.peers[cluster].call(
                        "agents", "DeleteAgent", agent_service_pb2.DeleteAgentRequest(id=row.agent_id)
                    )
                except GodelError as exc:
                    if exc.code not in ("NOT_FOUND", "AGENT_NOT_FOUND"):
                        continue
                done.append(cluster)
            if done:
                async with self._db.session() as session:
                    current = await PlacementRepository(session).get(row.agent_id)
                    if current is not None:
                        current.replaced_from = [c for c in current.replaced_from if c not in done]

    async def close(self) -> None:
        for client in self.peers.values():
            await client.close()
        await self.registry.close()
