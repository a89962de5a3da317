"""The team service's controls of its members' agents (kill, pause, resume) reach each agent in
the order they were decided: a team paused and resumed at once once left a member paused for good,
its resume having overtaken the pause (the agent service refused it: the agent was not paused yet)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import cast

import grpc
import pytest

from godel_server.runtime.db import Database
from godel_server.team.agents import AgentGateway
from godel_server.team.members import Effects, Members


class SlowGateway:
    """Records each call as it starts and ends; a call to an agent in `held` waits for `release`."""

    def __init__(self, held: set[str]) -> None:
        self.calls: list[str] = []
        self.held = held
        self.release = asyncio.Event()
        self.answered: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def _call(self, action: str, agent_id: str) -> None:
        self.calls.append(f"{action} {agent_id}")
        if agent_id in self.held:
            await self.release.wait()
        self.calls.append(f"{action} {agent_id} answered")
        self.answered[f"{action} {agent_id}"].set()
        if action == "pause" and agent_id == "refused":
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.FAILED_PRECONDITION, grpc.aio.Metadata(), grpc.aio.Metadata()
            )

    async def kill(self, agent_id: str, reason: str) -> None:
        await self._call("kill", agent_id)

    async def pause(self, agent_id: str) -> None:
        await self._call("pause", agent_id)

    async def resume(self, agent_id: str) -> None:
        await self._call("resume", agent_id)


async def settled(members: Members) -> None:
    while members._tasks:
        await asyncio.wait(set(members._tasks))


@pytest.mark.asyncio
async def test_a_resume_waits_for_the_pause_before_it_and_other_agents_do_not_wait() -> None:
    gateway = SlowGateway(held={"a"})
    members = Members(cast(Database, None), cast(AgentGateway, gateway))
    members.apply(Effects(pause=["a", "b"]))
    members.apply(Effects(resume=["a", "b"]))
    members.apply(Effects(kill=[("a", "team stopped")]))
    await asyncio.wait_for(gateway.answered["resume b"].wait(), 10)  # b goes on while a's pause is held
    assert "resume a" not in gateway.calls and "kill a" not in gateway.calls
    gateway.release.set()
    await settled(members)
    a_calls = [call for call in gateway.calls if call.split()[1] == "a"]
    assert a_calls == [
        "pause a",
        "pause a answered",
        "resume a",
        "resume a answered",
        "kill a",
        "kill a answered",
    ]
    assert members._controls == {}  # nothing kept once answered


@pytest.mark.asyncio
async def test_a_refused_control_does_not_hold_up_the_next() -> None:
    gateway = SlowGateway(held=set())
    members = Members(cast(Database, None), cast(AgentGateway, gateway))
    members.apply(Effects(pause=["refused"]))
    members.apply(Effects(resume=["refused"]))
    await settled(members)
    assert gateway.calls == [
        "pause refused",
        "pause refused answered",
        "resume refused",
        "resume refused answered",
    ]
