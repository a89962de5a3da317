"""The fake mesh's AgentService, EventService, SystemService, AuthService and ClusterService.

Agents move by the real state machine (``godel_server.agent.lifecycle``) and events are matched by
the real filter (``godel_server.event.store.EventFilter``); what the tests script is the rest:
agent progress, log lines, stream items.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    cluster_pb2,
    cluster_service_pb2,
    cluster_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    system_service_pb2,
    system_service_pb2_grpc,
)
from godel_server.agent import lifecycle
from godel_server.cluster.balancer import NoEligibleClusterError
from godel_server.event.store import EventFilter, attribute_filters
from godel_server.runtime.errors import (
    AgentNotFoundError,
    FieldViolation,
    GodelError,
    NotFoundError,
    ValidationError,
)
from godel_server.runtime.statuses import AGENT_STATUS, LIFECYCLE_STATE
from tests.fakes.mesh.state import (
    FakeMesh,
    fail,
    find,
    moved,
    new_id,
    page,
    require_key,
    ts,
)

HEARTBEAT_SECONDS = 0.05


class FakeAgents(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def _agent(self, agent_id: str, context: grpc.ServicerContext) -> agent_pb2.Agent:
        return find(context, self.mesh.agents, agent_id, AgentNotFoundError(agent_id))

    def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        require_key(context)
        self.mesh.requests.append(request)
        if not request.task.strip():
            fail(context, ValidationError.single("task", "must not be empty"))
        agent = self.mesh.add_agent(
            request.task,
            status=agent_pb2.AGENT_STATUS_PENDING,
            version=1,
            model=request.model or "gpt-4o",
            label=request.label,
            team_id=request.team_id,
            config=request.config,
            max_retries=request.max_retries if request.HasField("max_retries") else 3,
        )
        if self.mesh.on_create is not None:
            self.mesh.on_create(agent)
        return agent

    def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        self._agent(request.id, context)
        upcoming = self.mesh.progress.get(request.id)
        if upcoming:
            self.mesh.agents[request.id] = upcoming.pop(0)
        return self.mesh.agents[request.id]

    def _control(self, request: Any, context: grpc.ServicerContext, trigger: str) -> agent_pb2.Agent:
        """Moves the agent as the real state machine does (FAILED_PRECONDITION where it refuses)."""
        agent = self._agent(request.id, context)
        self.mesh.requests.append(request)
        try:
            move = lifecycle.move(trigger, LIFECYCLE_STATE.name(agent.lifecycle_state), agent.id)
        except GodelError as exc:
            fail(context, exc)
        changed = moved(agent, AGENT_STATUS.to_proto(move.to_status), LIFECYCLE_STATE.to_proto(move.to_state))
        self.mesh.agents[agent.id] = changed
        return changed

    def PauseAgent(
        self, request: agent_service_pb2.PauseAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        return self._control(request, context, "pause_command")

    def ResumeAgent(
        self, request: agent_service_pb2.ResumeAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        return self._control(request, context, "resume_command")

    def KillAgent(
        self, request: agent_service_pb2.KillAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        return self._control(request, context, "kill_command")

    def RestartAgent(
        self, request: agent_service_pb2.RestartAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        return self._control(request, context, "restart")

    def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        require_key(context)
        self.mesh.requests.append(request)
        matching = [
            a
            for a in self.mesh.agents.values()
            if (not request.status or a.status in request.status)
            and (not request.model or a.model == request.model)
            and (not request.team_id or a.team_id == request.team_id)
            and (not request.label or a.label == request.label)
        ]
        agents, token = page(matching, request)
        return agent_service_pb2.ListAgentsResponse(agents=agents, next_page_token=token)

    def DeleteAgent(
        self, request: agent_service_pb2.DeleteAgentRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.DeleteAgentResponse:
        self._agent(request.id, context)
        del self.mesh.agents[request.id]
        return agent_service_pb2.DeleteAgentResponse()

    def GetAgentLogs(
        self, request: agent_service_pb2.GetAgentLogsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.GetAgentLogsResponse:
        self._agent(request.id, context)
        self.mesh.requests.append(request)
        lines = [
            entry
            for entry in self.mesh.logs.get(request.id, [])
            if not request.session_id or entry.session_id == request.session_id
        ]
        entries, token = page(lines, request)
        return agent_service_pb2.GetAgentLogsResponse(entries=entries, next_page_token=token)

    def StreamAgentLogs(
        self, request: agent_service_pb2.StreamAgentLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_service_pb2.StreamAgentLogsResponse]:
        self._agent(request.id, context)
        self.mesh.requests.append(request)
        yield from self.mesh.log_stream
        while self.mesh.hold_stream_open and context.is_active():
            time.sleep(HEARTBEAT_SECONDS)

    def ListAgentTransitions(
        self, request: agent_service_pb2.ListAgentTransitionsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentTransitionsResponse:
        self._agent(request.id, context)
        transitions, token = page(self.mesh.transitions.get(request.id, []), request)
        return agent_service_pb2.ListAgentTransitionsResponse(transitions=transitions, next_page_token=token)

    def ListWorkers(
        self, request: agent_service_pb2.ListWorkersRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListWorkersResponse:
        require_key(context)
        return agent_service_pb2.ListWorkersResponse(workers=[WORKER], replica_id="agent-1")

    def ListAgentSessions(
        self, request: agent_service_pb2.ListAgentSessionsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentSessionsResponse:
        self._agent(request.id, context)
        sessions, token = page(self.mesh.sessions.get(request.id, []), request)
        return agent_service_pb2.ListAgentSessionsResponse(sessions=sessions, next_page_token=token)


class FakeEvents(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def _stored(self, wanted: EventFilter) -> list[event_pb2.Event]:
        return [
            item.event for item in self.mesh.stream if item.HasField("event") and wanted.matches(item.event)
        ]

    def SubscribeEvents(
        self, request: event_service_pb2.SubscribeEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[event_service_pb2.SubscribeEventsResponse]:
        """The matching items of ``mesh.stream`` (heartbeats and ends included), then heartbeats
        while ``mesh.hold_stream_open``."""
        require_key(context)
        self.mesh.requests.append(request)
        if not self.mesh.events_available:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "no events here")
        wanted = EventFilter(types=tuple(request.pattern), **attribute_filters(request))
        for item in list(self.mesh.stream):
            if not item.HasField("event") or wanted.matches(item.event):
                yield item
        while self.mesh.hold_stream_open and context.is_active():
            time.sleep(HEARTBEAT_SECONDS)
            yield event_service_pb2.SubscribeEventsResponse(heartbeat=event_service_pb2.Heartbeat())

    def QueryEvents(
        self, request: event_service_pb2.QueryEventsRequest, context: grpc.ServicerContext
    ) -> event_service_pb2.QueryEventsResponse:
        """The stored events of ``mesh.stream`` that match (time bounds are not faked)."""
        require_key(context)
        self.mesh.requests.append(request)
        wanted = EventFilter(types=tuple(request.type), **attribute_filters(request))
        found = [e for e in self._stored(wanted) if e.sequence > request.after_sequence]
        if request.order == event_service_pb2.SORT_ORDER_DESCENDING:
            found.reverse()
        events, token = page(found, request, default_size=100)
        return event_service_pb2.QueryEventsResponse(events=events, next_page_token=token)

    def PublishEvent(
        self, request: event_service_pb2.PublishEventRequest, context: grpc.ServicerContext
    ) -> event_service_pb2.PublishEventResponse:
        """Stores the event at the end of ``mesh.stream``."""
        require_key(context)
        self.mesh.requests.append(request)
        event = event_pb2.Event(
            id=request.id or new_id(),
            type=request.type,
            sequence=len(self.mesh.stream) + 1,
            timestamp=ts(),
            payload=request.payload,
            metadata=request.metadata,
            source=request.source,
        )
        self.mesh.stream.append(event_service_pb2.SubscribeEventsResponse(event=event))
        return event_service_pb2.PublishEventResponse(id=event.id)


WORKER = agent_pb2.Worker(
    id="worker-a", hostname="host-a", runtimes=["command", "openai"], capacity=4, free_slots=3, active_runs=1
)


class FakeSystem(system_service_pb2_grpc.SystemServiceServicer):
    """Healthy in public; degraded (Kafka down) to a caller with a key."""

    def GetHealth(
        self, request: system_service_pb2.GetHealthRequest, context: grpc.ServicerContext
    ) -> system_service_pb2.GetHealthResponse:
        return system_service_pb2.GetHealthResponse(
            status=system_service_pb2.HEALTH_STATUS_HEALTHY, version="0.1.0", time=ts()
        )

    def GetDetailedHealth(
        self, request: system_service_pb2.GetDetailedHealthRequest, context: grpc.ServicerContext
    ) -> system_service_pb2.GetDetailedHealthResponse:
        require_key(context)
        return system_service_pb2.GetDetailedHealthResponse(
            status=system_service_pb2.HEALTH_STATUS_DEGRADED,
            version="0.1.0",
            time=ts(),
            components=[
                system_service_pb2.ComponentHealth(
                    name="agent-service", status=system_service_pb2.HEALTH_STATUS_HEALTHY, latency_ms=1.25
                ),
                system_service_pb2.ComponentHealth(
                    name="kafka", status=system_service_pb2.HEALTH_STATUS_UNHEALTHY, message="broker down"
                ),
            ],
            workers=[WORKER],
        )


class FakeAuth(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def CreateApiKey(
        self, request: auth_service_pb2.CreateApiKeyRequest, context: grpc.ServicerContext
    ) -> auth_service_pb2.CreateApiKeyResponse:
        require_key(context)
        key = auth_service_pb2.ApiKey(
            id=new_id(), name=request.name, role=request.role, prefix="godel_sk_new", created_at=ts()
        )
        self.mesh.keys[key.id] = key
        return auth_service_pb2.CreateApiKeyResponse(api_key=key, secret="godel_sk_new_secret")

    def ListApiKeys(
        self, request: auth_service_pb2.ListApiKeysRequest, context: grpc.ServicerContext
    ) -> auth_service_pb2.ListApiKeysResponse:
        require_key(context)
        self.mesh.requests.append(request)
        keys, token = page(list(self.mesh.keys.values()), request)
        return auth_service_pb2.ListApiKeysResponse(api_keys=keys, next_page_token=token)

    def RevokeApiKey(
        self, request: auth_service_pb2.RevokeApiKeyRequest, context: grpc.ServicerContext
    ) -> auth_service_pb2.ApiKey:
        key = find(context, self.mesh.keys, request.id, NotFoundError("API key", request.id))
        key.revoked = True
        return key


class FakeClusters(cluster_service_pb2_grpc.ClusterServiceServicer):
    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def RegisterCluster(
        self, request: cluster_service_pb2.RegisterClusterRequest, context: grpc.ServicerContext
    ) -> cluster_pb2.Cluster:
        require_key(context)
        self.mesh.requests.append(request)
        if not request.endpoint:
            fail(context, ValidationError([FieldViolation("endpoint", "must not be empty")]))
        cluster = cluster_pb2.Cluster(
            id=new_id(),
            name=request.name,
            region=request.region,
            endpoint=request.endpoint,
            max_agents=request.max_agents,
            features=request.features,
            status=cluster_pb2.CLUSTER_STATUS_ONLINE,
            created_at=ts(),
        )
        self.mesh.clusters[cluster.id] = cluster
        return cluster

    def ListClusters(
        self, request: cluster_service_pb2.ListClustersRequest, context: grpc.ServicerContext
    ) -> cluster_service_pb2.ListClustersResponse:
        require_key(context)
        found = [c for c in self.mesh.clusters.values() if not request.region or c.region == request.region]
        clusters, token = page(found, request)
        return cluster_service_pb2.ListClustersResponse(clusters=clusters, next_page_token=token)

    def GetCluster(
        self, request: cluster_service_pb2.GetClusterRequest, context: grpc.ServicerContext
    ) -> cluster_pb2.Cluster:
        return find(context, self.mesh.clusters, request.id, NotFoundError("cluster", request.id))

    def Heartbeat(
        self, request: cluster_service_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> cluster_service_pb2.HeartbeatResponse:
        cluster = find(context, self.mesh.clusters, request.id, NotFoundError("cluster", request.id))
        self.mesh.requests.append(request)
        cluster.current_agents = request.current_agents
        if request.HasField("max_agents"):
            cluster.max_agents = request.max_agents
        cluster.last_heartbeat.CopyFrom(ts(30))
        return cluster_service_pb2.HeartbeatResponse(cluster=cluster, next_heartbeat_seconds=30)

    def UnregisterCluster(
        self, request: cluster_service_pb2.UnregisterClusterRequest, context: grpc.ServicerContext
    ) -> cluster_service_pb2.UnregisterClusterResponse:
        cluster = find(context, self.mesh.clusters, request.id, NotFoundError("cluster", request.id))
        del self.mesh.clusters[cluster.id]
        return cluster_service_pb2.UnregisterClusterResponse()

    def RouteRequest(
        self, request: cluster_service_pb2.RouteRequestRequest, context: grpc.ServicerContext
    ) -> cluster_service_pb2.RouteRequestResponse:
        """The first cluster (by name) in the request's region: enough to see the CLI's request
        and answer; the real choice is tested against cluster-service (test_cluster_balancer)."""
        self.mesh.requests.append(request)
        eligible = sorted(
            (
                c
                for c in self.mesh.clusters.values()
                if c.region == request.region or not request.require_region
            ),
            key=lambda c: c.name,
        )
        if not eligible:
            fail(context, NoEligibleClusterError(f"no cluster in region {request.region}"))
        return cluster_service_pb2.RouteRequestResponse(
            cluster=eligible[0], reason="first by name", eligible=[c.name for c in eligible]
        )
