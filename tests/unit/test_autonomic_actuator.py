"""The autonomic restart acts on the agent as it is, not as the metric reading saw it: a reading of
`godel_agent_idle_seconds` can be older than a kill, and "restart-stuck-agents" brought back
agents their owner had just killed (seen in agent_execution under load: hundreds of killed agents
restarted). The plan reads the agent; the restart is made at the version it read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import cast

import grpc
import pytest

from godel.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from godel_server.cluster.alerts.notify import Notifier
from godel_server.cluster.autonomic.actuator import Actuator
from godel_server.cluster.autonomic.policies import DEFAULT_POLICIES, Hit, MetricTrigger, Policy, Proposal
from godel_server.runtime.config import load_settings
from godel_server.runtime.db import Database

STUCK = next(p for p in DEFAULT_POLICIES if p.name == "restart-stuck-agents")


class Agents(agent_service_pb2_grpc.AgentServiceServicer):
    """An agent service with one agent, that records the restarts it is asked for."""

    def __init__(self) -> None:
        self.agent = agent_pb2.Agent(id="a1", lifecycle_state=agent_pb2.LIFECYCLE_STATE_EXECUTING, version=7)
        self.restarts: list[agent_service_pb2.RestartAgentRequest] = []

    async def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        if request.id != self.agent.id:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"agent {request.id} not found")
        return self.agent

    async def RestartAgent(
        self, request: agent_service_pb2.RestartAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Agent:
        self.restarts.append(request)
        return self.agent


@pytest.fixture
async def served() -> AsyncIterator[tuple[Agents, Actuator]]:
    agents = Agents()  # type: ignore[abstract]
    server = grpc.aio.server()
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(agents, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = load_settings("cluster", {"GODEL_AGENT_ADDR": f"127.0.0.1:{port}", "GODEL_API_KEY": "k"})
    try:
        yield agents, Actuator(settings, cast(Database, None), cast(Notifier, None))
    finally:
        await server.stop(None)


def stuck(agent_id: str) -> Proposal:
    policy = Policy("p1", STUCK.name, MetricTrigger(STUCK.condition), STUCK.action, STUCK.cooldown_seconds)
    action = replace(STUCK.action, target=agent_id)
    return Proposal(policy, action, Hit({"agent_id": agent_id}, 301.0, "idle 301 > 300"))


async def test_an_executing_agent_is_restarted_at_the_version_the_plan_read(
    served: tuple[Agents, Actuator],
) -> None:
    agents, actuator = served
    proposal = stuck("a1")
    plan = await actuator.plan(proposal)
    assert plan.ready and plan.agent_version == 7, plan
    assert await actuator.perform(proposal, plan) == ""
    assert [(r.id, r.expected_version) for r in agents.restarts] == [("a1", 7)]


@pytest.mark.parametrize("state", [agent_pb2.LIFECYCLE_STATE_KILLED, agent_pb2.LIFECYCLE_STATE_COMPLETED])
async def test_an_agent_killed_or_completed_since_the_reading_is_not_brought_back(
    served: tuple[Agents, Actuator], state: agent_pb2.LifecycleState.ValueType
) -> None:
    agents, actuator = served
    agents.agent.lifecycle_state = state
    plan = await actuator.plan(stuck("a1"))
    assert not plan.ready and "a policy does not bring it back" in plan.note, plan


async def test_an_agent_that_cannot_be_read_is_not_restarted(served: tuple[Agents, Actuator]) -> None:
    _, actuator = served
    plan = await actuator.plan(stuck("gone"))
    assert not plan.ready and "NOT_FOUND" in plan.note, plan
