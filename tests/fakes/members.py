"""A fake of the agent service for the team service's engines, on a real database: `InstantMembers`
launches no agent (no CreateAgent call) and completes every member the moment it is launched,
the way the Kafka consumer (team/dispatch.py) would on an `agent:complete`. Used by
bench/workflow_dag.py and by tests that run the WorkflowEngine without a mesh."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import cast

from sqlalchemy import select, update

from godel.v1 import agent_pb2, event_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.tables import processed_events
from godel_server.team.agents import AgentGateway
from godel_server.team.members import Effects, Members, apply_agent_event, read_members
from godel_server.team.models import MemberRow
from godel_server.team.workflows.engine import WorkflowEngine
from tests.fakes.events import moved

CONSUMER_GROUP = "godel-team-service"  # dispatch.AgentEventConsumer.group_id
PROGRESS_EVERY = 5.0  # seconds between progress reports of a long drain

# (completed so far, transactions so far, seconds since the drain began)
Progress = Callable[[int, int, float], None]


def complete_event(agent_id: str) -> event_pb2.Event:
    """An `agent:complete` as the agent service publishes it (the parts apply_agent_event reads)."""
    agent = agent_pb2.Agent(id=agent_id, result="ok", status=agent_pb2.AGENT_STATUS_COMPLETED)
    return moved("agent:complete", agent_id, "completed", agent=agent)


class InstantMembers(Members):
    """Members whose agents complete the moment they are launched: `apply` queues the launched
    members (no CreateAgent call); `drain` completes them like the Kafka consumer would. Anything
    a correct run would not do fails an assertion."""

    def __init__(self, db: Database) -> None:
        # The gateway is never used: apply() below replaces every call to AgentService.
        super().__init__(db, cast(AgentGateway, None))
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.log: list[tuple[str, str]] = []  # ("launch" | "complete", member id)
        self.step_of: dict[str, str] = {}  # member id -> step id
        self.kills = 0
        self.transactions = 0
        self.completed = 0

    def apply(self, effects: Effects) -> None:
        for member_id in effects.launch:
            self.log.append(("launch", member_id))
            self.queue.put_nowait(member_id)
        self.kills += len(effects.kill) + len(effects.pause) + len(effects.resume)
        for callback in effects.after:
            callback()

    async def drain(self, engine: WorkflowEngine, batch: int, progress: Progress | None = None) -> None:
        """Completes queued members, up to `batch` per transaction, until nothing is queued (with
        no retries and no timers nothing can be launched later)."""
        started = last = time.perf_counter()
        while not self.queue.empty():
            member_ids = [self.queue.get_nowait() for _ in range(min(batch, self.queue.qsize()))]
            effects = Effects()
            async with self._db.session() as session:
                agents = {m: str(uuid.uuid4()) for m in member_ids}
                events = [complete_event(agents[m]) for m in member_ids]
                # The consumer's per-batch dedupe (runtime/consumer.py `_process`).
                done = set(
                    (
                        await session.scalars(
                            select(processed_events.c.event_id).where(
                                processed_events.c.consumer == CONSUMER_GROUP,
                                processed_events.c.event_id.in_([e.id for e in events]),
                            )
                        )
                    ).all()
                )
                assert not done, f"{len(done)} fresh events were already processed"
                await session.execute(
                    processed_events.insert(),
                    [
                        {"consumer": CONSUMER_GROUP, "event_id": e.id, "processed_at": utcnow()}
                        for e in events
                    ],
                )
                # The agent ids that CreateAgent / agent:spawn would have stored earlier.
                await session.execute(
                    update(MemberRow), [{"id": m, "agent_id": agents[m]} for m in member_ids]
                )
                # Then what the consumer does (team/dispatch.py `handle_batch`).
                await engine.read_steps(session, await read_members(session, events))
                for member_id, event in zip(member_ids, events, strict=True):
                    change = await apply_agent_event(session, event)
                    assert change is not None and change.ended and change.member.step_id is not None, (
                        f"agent:complete of member {member_id} changed nothing"
                    )
                    self.step_of[member_id] = change.member.step_id
                    self.log.append(("complete", member_id))
                    self.completed += 1
                    await engine.member_changed(session, change.member, change.ended, event, effects)
            self.transactions += 1
            self.apply(effects)
            now = time.perf_counter()
            if progress is not None and now - last >= PROGRESS_EVERY:
                last = now
                progress(self.completed, self.transactions, now - started)
            await asyncio.sleep(0)

    def step_log(self) -> list[tuple[str, str]]:
        """The log with member ids turned into step ids (every launched member must have completed)."""
        out: list[tuple[str, str]] = []
        for kind, member_id in self.log:
            step = self.step_of.get(member_id)
            assert step is not None, f"member {member_id} was launched but never completed"
            out.append((kind, step))
        return out
