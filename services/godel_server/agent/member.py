"""This cluster as a member of its federation (README "Federation"): every
GODEL_CLUSTER_HEARTBEAT_SECONDS it registers (once) and heartbeats with its own registry and with
each peer's (through the peer's gateway, with the peer credential), reporting its agents and its
workers' slots; then it acts on what its registry says of the peers: the not-yet-started agents
placed on a peer that went offline are placed again elsewhere, and the copies left on a peer that
came back are deleted. Every agent-service replica does this (a repeated heartbeat is harmless)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message

from godel.v1 import cluster_pb2, cluster_service_pb2
from godel_server.agent.federation import ROUTABLE, Federation
from godel_server.agent.placements import PlacementRepository
from godel_server.agent.workers import WorkerRegistry
from godel_server.runtime.db import Database
from godel_server.runtime.errors import GodelError
from godel_server.runtime.periodic import Periodic

log = logging.getLogger(__name__)

Call = Callable[[str, Message], Awaitable[Any]]


class Membership:
    """This cluster's entry in one registry: registered once, then heartbeats (registered again
    when the registry no longer knows it)."""

    def __init__(self, where: str, call: Call) -> None:
        self.where = where
        self._call = call
        self._id = ""
        # Why the last heartbeat was not delivered ("" when it was): logged when it changes.
        self.problem = ""

    async def beat(
        self, registration: cluster_service_pb2.RegisterClusterRequest, current: int, slots: int
    ) -> None:
        if not self._id:
            cluster: cluster_pb2.Cluster = await self._call("RegisterCluster", registration)
            self._id = cluster.id
        try:
            await self._call(
                "Heartbeat",
                cluster_service_pb2.HeartbeatRequest(id=self._id, current_agents=current, max_agents=slots),
            )
        except GodelError as exc:
            if exc.code in ("NOT_FOUND", "CLUSTER_NOT_FOUND"):
                self._id = ""  # unregistered meanwhile: register at the next beat
            raise


class FederationMember:
    def __init__(self, db: Database, federation: Federation, workers: WorkerRegistry) -> None:
        self._db = db
        self._federation = federation
        self._workers = workers
        settings = federation.settings
        self._registration = cluster_service_pb2.RegisterClusterRequest(
            name=settings.cluster_name,
            region=settings.region,
            endpoint=settings.endpoint,
            api_version="v1",
            features=list(settings.features),
            supported_models=list(settings.models),
        )
        self._memberships = [Membership("this cluster's registry", federation.registry.call)]
        for peer in federation.peers.values():
            self._memberships.append(Membership(f"peer cluster {peer.name}", self._peer_call(peer.name)))
        self._loop = Periodic(
            "federation-member", settings.heartbeat_seconds, self.step, expected=(GodelError,)
        )

    def _peer_call(self, name: str) -> Call:
        async def call(method: str, request: Message) -> Any:
            return await self._federation.peer(name).call("clusters", method, request, timeout=10.0)

        return call

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def step(self) -> None:
        await self.beat()
        await self.heal()

    async def beat(self) -> None:
        async with self._db.reader() as session:
            current = await PlacementRepository(session).current_agents()
        slots = sum(conn.capacity for conn in self._workers.connected())
        self._registration.max_agents = slots
        results = await asyncio.gather(
            *(m.beat(self._registration, current, slots) for m in self._memberships), return_exceptions=True
        )
        for membership, result in zip(self._memberships, results, strict=True):
            problem = str(result) if isinstance(result, BaseException) else ""
            if problem != membership.problem:
                if problem:
                    log.warning("heartbeats not delivered", extra={"to": membership.where, "error": problem})
                else:
                    log.info("heartbeats delivered again", extra={"to": membership.where})
                membership.problem = problem

    async def heal(self) -> None:
        """Acts on the peers' status in this cluster's registry."""
        reply: cluster_service_pb2.ListClustersResponse = await self._federation.registry.call(
            "ListClusters", cluster_service_pb2.ListClustersRequest(page_size=1000)
        )
        offline = {c.name for c in reply.clusters if c.status == cluster_pb2.CLUSTER_STATUS_OFFLINE}
        online = {c.name for c in reply.clusters if c.status in ROUTABLE}
        for name in sorted(offline & set(self._federation.peers)):
            moved = await self._federation.replace_from(name)
            if moved:
                log.warning(
                    "agents of an offline peer placed again", extra={"cluster": name, "agents": moved}
                )
        await self._federation.delete_stale_copies(online)
