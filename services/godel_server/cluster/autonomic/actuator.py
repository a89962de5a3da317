"""How the autonomic loop acts. Agents and teams belong to other services, so a restart is
AgentService.RestartAgent and a resize TeamService.ScaleTeam over gRPC, with the cluster service's
own API key (GODEL_API_KEY_FILE; `make up` provisions it); a failover drains a cluster of this
service's registry; a notify goes to a notification channel; a rebalance is published for the
components that place agents. `plan` says whether an action applies now (read-only), `perform` does
what happens elsewhere, and `record` what happens here, in the orchestrator's transaction, with the
decision's event."""

from __future__ import annotations

import logging

import grpc
from google.protobuf.message import Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    autonomic_events_pb2,
    autonomic_pb2,
    cluster_events_pb2,
    cluster_pb2,
    event_pb2,
    team_pb2,
    team_service_pb2,
    team_service_pb2_grpc,
)
from godel_server.cluster.alerts.kinds import ChannelType
from godel_server.cluster.alerts.mapping import channel_of
from godel_server.cluster.alerts.notify import COMPONENT, Channel, Notifier
from godel_server.cluster.autonomic.policies import ActionType, Plan, Proposal, held, plan_scale
from godel_server.cluster.clusters import cluster_to_proto
from godel_server.cluster.models import ChannelRow, ClusterRow
from godel_server.runtime.config import Settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import new_event, utcnow
from godel_server.runtime.statuses import CLUSTER_STATUS, LIFECYCLE_STATE, ClusterStatus
from godel_server.runtime.tls import open_channel

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-api-key"
CALL_TIMEOUT = 15.0
GONE = frozenset({ClusterStatus.DRAINING, ClusterStatus.OFFLINE})
ENDED_ON_PURPOSE = frozenset({agent_pb2.LIFECYCLE_STATE_KILLED, agent_pb2.LIFECYCLE_STATE_COMPLETED})


def _error(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details() or ''}"


class Actuator:
    def __init__(self, settings: Settings, db: Database, notifier: Notifier) -> None:
        self._settings = settings
        self._db = db
        self._notifier = notifier
        self._channels = [open_channel(settings.service_addrs[r], settings.tls) for r in ("agent", "team")]
        self._agents = agent_service_pb2_grpc.AgentServiceStub(self._channels[0])
        self._teams = team_service_pb2_grpc.TeamServiceStub(self._channels[1])

    def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        key = self._settings.service_api_key()
        return ((API_KEY_HEADER, key),) if key else None

    # ---- plan ---------------------------------------------------------------------------------
    async def plan(self, proposal: Proposal) -> Plan:
        action = proposal.action
        match action.type:
            case ActionType.SCALE_UP | ActionType.SCALE_DOWN:
                return await self._plan_scale(proposal)
            case ActionType.FAILOVER:
                cluster = await self._cluster(action.target)
                if cluster is None:
                    return held(f"no cluster {action.target!r} in the registry")
                if cluster.status in GONE:
                    return held(f"cluster {cluster.name} is already {cluster.status}")
                return Plan(True, f"drain cluster {cluster.name}")
            case ActionType.NOTIFY:
                if await self._channel(action.channel) is None:
                    return held(f"no notification channel is named {action.channel!r}")
                return Plan(True, f"notify {action.channel}")
            case ActionType.RESTART:
                return self._needs_key() or await self._plan_restart(action.target)
            case ActionType.REBALANCE:
                return Plan(True, "publish a rebalance decision")

    def _needs_key(self) -> Plan | None:
        if self._metadata() is None:
            return held("the cluster service has no API key to act with (GODEL_API_KEY_FILE)")
        return None

    async def _plan_scale(self, proposal: Proposal) -> Plan:
        missing = self._needs_key()
        if missing is not None:
            return missing
        try:
            team: team_pb2.Team = await self._teams.GetTeam(
                team_service_pb2.GetTeamRequest(id=proposal.action.target),
                timeout=CALL_TIMEOUT,
                metadata=self._metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            return held(f"team {proposal.action.target} cannot be read: {_error(exc)}")
        return plan_scale(proposal.action, team)

    async def _plan_restart(self, agent_id: str) -> Plan:
        """A metric reading can be older than the agent's last change: an agent killed or completed
        since ended on purpose, and a restart would bring it back. The restart is made at the
        version read here, so a change after this read makes it fail (ABORTED) instead."""
        try:
            agent: agent_pb2.Agent = await self._agents.GetAgent(
                agent_service_pb2.GetAgentRequest(id=agent_id),
                timeout=CALL_TIMEOUT,
                metadata=self._metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            return held(f"agent {agent_id} cannot be read: {_error(exc)}")
        if agent.lifecycle_state in ENDED_ON_PURPOSE:
            state = LIFECYCLE_STATE.name(agent.lifecycle_state)
            return held(f"agent {agent_id} is {state}: a policy does not bring it back")
        return Plan(True, f"restart agent {agent_id}", agent_version=agent.version)

    async def _cluster(self, ident: str) -> ClusterRow | None:
        async with self._db.reader() as session:
            found: ClusterRow | None = await session.scalar(
                select(ClusterRow).where((ClusterRow.name == ident) | (ClusterRow.id == ident))
            )
            return found

    async def _channel(self, name: str) -> Channel | None:
        async with self._db.reader() as session:
            row = await session.scalar(select(ChannelRow).where(ChannelRow.name == name))
        return channel_of(row) if row is not None else None

    # ---- perform ------------------------------------------------------------------------------
    async def perform(self, proposal: Proposal, plan: Plan) -> str:
        """Does what the action does in other services; "" when done, else what went wrong."""
        action = proposal.action
        try:
            if action.type == ActionType.RESTART:
                await self._agents.RestartAgent(
                    agent_service_pb2.RestartAgentRequest(
                        id=action.target,
                        expected_version=plan.agent_version,
                        reason=f"{proposal.policy.name}: {proposal.hit.reason}"[:2000],
                    ),
                    timeout=CALL_TIMEOUT,
                    metadata=self._metadata(),
                )
            elif action.type == ActionType.NOTIFY:
                await self._post(proposal)
            elif action.type in (ActionType.SCALE_UP, ActionType.SCALE_DOWN):
                await self._teams.ScaleTeam(
                    team_service_pb2.ScaleTeamRequest(id=action.target, target_size=plan.target_size),
                    timeout=CALL_TIMEOUT,
                    metadata=self._metadata(),
                )
        except grpc.aio.AioRpcError as exc:
            return _error(exc)
        return ""

    # ---- record -------------------------------------------------------------------------------
    async def record(
        self, session: AsyncSession, proposal: Proposal, plan: Plan, decision: autonomic_pb2.AutonomicDecision
    ) -> list[event_pb2.Event]:
        """What the action does in this service, and the decision's events."""
        action = proposal.action
        data: Message
        extra: list[event_pb2.Event] = []
        match action.type:
            case ActionType.SCALE_UP | ActionType.SCALE_DOWN:
                kind = (
                    autonomic_events_pb2.ScalingUp
                    if action.type == ActionType.SCALE_UP
                    else autonomic_events_pb2.ScalingDown
                )
                data = kind(
                    decision=decision,
                    team_id=action.target,
                    previous_size=plan.previous_size,
                    target_size=plan.target_size,
                )
                return [self._event(data, action.target, team_id=action.target)]
            case ActionType.RESTART:
                data = autonomic_events_pb2.AutonomicRestart(decision=decision, agent_id=action.target)
                return [self._event(data, action.target, agent_id=action.target)]
            case ActionType.FAILOVER:
                extra = await self._drain(session, action.target, decision)
                data = autonomic_events_pb2.AutonomicFailover(decision=decision, cluster=action.target)
            case ActionType.REBALANCE:
                data = autonomic_events_pb2.AutonomicRebalance(decision=decision)
            case ActionType.NOTIFY:
                extra = await self._notify(proposal, decision)
                data = autonomic_events_pb2.AutonomicNotify(
                    decision=decision, channel=action.channel, message=action.message
                )
        return [self._event(data, proposal.policy.id), *extra]

    async def _drain(
        self, session: AsyncSession, ident: str, decision: autonomic_pb2.AutonomicDecision
    ) -> list[event_pb2.Event]:
        row = await session.scalar(
            select(ClusterRow).where((ClusterRow.name == ident) | (ClusterRow.id == ident)).with_for_update()
        )
        if row is None or row.status in GONE:
            return []
        was = row.status
        row.status = ClusterStatus.DRAINING
        row.updated_at = utcnow()
        await session.flush()
        data = cluster_events_pb2.ClusterStatusChanged(
            cluster=cluster_to_proto(row, self._settings.federation.cluster_name),
            previous_status=CLUSTER_STATUS.to_proto_or(was, cluster_pb2.CLUSTER_STATUS_UNSPECIFIED),
            reason=f"failed over by policy {decision.policy_name}: {decision.reason}",
        )
        return [self._event(data, row.id)]

    async def _notify(
        self, proposal: Proposal, decision: autonomic_pb2.AutonomicDecision
    ) -> list[event_pb2.Event]:
        channel = await self._channel(proposal.action.channel)
        if channel is None or channel.type != ChannelType.EVENT:
            return []
        return [self._notifier.event(channel, proposal.action.message, decision=decision)]

    async def _post(self, proposal: Proposal) -> None:
        channel = await self._channel(proposal.action.channel)
        if channel is None or channel.type == ChannelType.EVENT:
            return
        self._notifier.deliver(
            channel,
            proposal.action.message,
            {
                "version": "1",
                "channel": channel.name,
                "status": "notify",
                "message": proposal.action.message,
                "policy": proposal.policy.name,
                "reason": proposal.hit.reason,
            },
        )

    def _event(
        self, data: Message, partition_key: str, *, agent_id: str = "", team_id: str = ""
    ) -> event_pb2.Event:
        return new_event(
            data,
            partition_key=partition_key,
            component=COMPONENT,
            instance=self._settings.instance_id,
            agent_id=agent_id,
            team_id=team_id,
        )

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
