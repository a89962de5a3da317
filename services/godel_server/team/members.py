"""Agents the team service spawns for team members and workflow steps.

A member row is written in the same transaction as the decision to spawn it; the CreateAgent call
happens after the commit (an `Effects` list) with the member id as request id, so a crash between
the two is healed by `Members.recover()` relaunching the member without creating a second agent.
What happens to the agent afterwards arrives as agent events on Kafka (`apply_agent_event`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from godel.v1 import event_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.errors import UnavailableError
from godel_server.runtime.events import struct_to_dict, utcnow
from godel_server.team.agents import MEMBER_METADATA_KEY, AgentGateway
from godel_server.team.models import MemberRow, TeamRow, WorkflowRow

log = logging.getLogger(__name__)

ENDED = frozenset({"completed", "failed", "killed", "cancelled"})
# Member statuses that hold (or are about to hold) a running agent.
ACTIVE = frozenset({"launching", "running", "paused"})
LAUNCH_RETRY_MAX = 10.0
# gRPC codes that will not get better by retrying the CreateAgent call.
REFUSED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
)


@dataclass
class Effects:
    """Calls to AgentService decided inside a transaction, made once it has committed."""

    launch: list[str] = field(default_factory=list)
    kill: list[tuple[str, str]] = field(default_factory=list)
    pause: list[str] = field(default_factory=list)
    resume: list[str] = field(default_factory=list)
    # Callbacks after the commit (watchers, timers).
    after: list[Callable[[], None]] = field(default_factory=list)

    def stop(self, member: MemberRow, reason: str) -> None:
        """Stops a member: kills its agent, or makes sure it never starts."""
        if member.status in ENDED:
            return
        if member.status == "queued":
            member.status = "cancelled"
            member.ended_at = utcnow()
            return
        member.stop_requested = True
        if member.agent_id:
            self.kill.append((member.agent_id, reason))


def new_member(
    session: AsyncSession,
    *,
    role: str,
    task: str,
    spec: dict[str, Any],
    team_id: str | None = None,
    workflow_id: str | None = None,
    step_id: str | None = None,
    position: int = 0,
    input: str | None = None,
    parent_id: str | None = None,
    depth: int = 0,
    attempt: int = 0,
    queued: bool = False,
) -> MemberRow:
    member = MemberRow(
        id=str(uuid.uuid4()),
        team_id=team_id,
        workflow_id=workflow_id,
        step_id=step_id,
        role=role,
        position=position,
        parent_id=parent_id,
        depth=depth,
        task=task,
        input=input,
        attempt=attempt,
        status="queued" if queued else "launching",
        spec=spec,
        cost=0.0,
        stop_requested=False,
        superseded=False,
        created_at=utcnow(),
    )
    session.add(member)
    return member


async def lock(session: AsyncSession, member_id: str) -> MemberRow | None:
    """Loads a member for a change, locking its owner (workflow or team) first: every writer takes
    the owner's row lock before touching its members, so they cannot deadlock on PostgreSQL."""
    member = await session.get(MemberRow, member_id)
    if member is None:
        return None
    if member.workflow_id:
        await session.get(
            WorkflowRow, member.workflow_id, with_for_update=True, options=[defer(WorkflowRow.definition)]
        )
    elif member.team_id:
        await session.get(TeamRow, member.team_id, with_for_update=True)
    await session.refresh(member)
    return member


def member_id_of(event: event_pb2.Event) -> str | None:
    """The member an `agent:spawn` event belongs to (from the agent's metadata)."""
    agent = struct_to_dict(event.payload).get("agent") or {}
    value = (agent.get("metadata") or {}).get(MEMBER_METADATA_KEY)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Change:
    """What an agent event did to a member."""

    member: MemberRow
    ended: bool


async def apply_agent_event(session: AsyncSession, event: event_pb2.Event) -> Change | None:
    """Updates the member whose agent the event is about; None when it is not one of ours."""
    payload = struct_to_dict(event.payload)
    if event.type == "agent:spawn":
        member_id = member_id_of(event)
        member = await lock(session, member_id) if member_id else None
        if member is None:
            return None
        member.agent_id = member.agent_id or str(payload["agent"]["id"])
        return Change(member, ended=False)
    agent_id = payload.get("agentId") or event.metadata.agent_id
    if not agent_id:
        return None
    found = await session.scalar(select(MemberRow.id).where(MemberRow.agent_id == agent_id))
    member = await lock(session, found) if found else None
    if member is None or member.status in ENDED:
        return None
    now = utcnow()
    if event.type == "agent:usage":
        member.cost = float(payload.get("budgetConsumed", member.cost))
        return Change(member, ended=False)
    if event.type in ("agent:start", "agent:resume"):
        member.status = "running"
        member.session_id = payload.get("sessionId") or member.session_id
    elif event.type == "agent:pause":
        member.status = "paused"
    elif event.type == "agent:complete":
        agent = payload.get("agent") or {}
        member.status = "completed"
        member.result = str(agent.get("result", "")).rstrip("\n")
        member.session_id = agent.get("sessionId") or member.session_id
        member.cost = float(agent.get("budgetConsumed", member.cost))
        member.ended_at = now
        return Change(member, ended=True)
    elif event.type == "agent:error" and payload.get("final"):
        member.status = "failed"
        member.error = str(payload.get("reason") or "agent failed")
        member.cost = float(payload.get("budgetConsumed", member.cost))
        member.ended_at = now
        return Change(member, ended=True)
    elif event.type in ("agent:kill", "agent:delete"):
        member.status = "killed"
        member.error = str(payload.get("reason") or "agent killed")
        member.ended_at = now
        return Change(member, ended=True)
    else:
        return None
    return Change(member, ended=False)


MemberEnded = Callable[[AsyncSession, MemberRow, Effects], Awaitable[None]]


class Members:
    """Carries out Effects against AgentService and heals them after a crash."""

    def __init__(self, db: Database, gateway: AgentGateway) -> None:
        self._db = db
        self.gateway = gateway
        self._tasks: set[asyncio.Task[None]] = set()
        self._launching: set[str] = set()
        # Called (in a transaction) when a member could not even be created.
        self.on_refused: MemberEnded | None = None

    def apply(self, effects: Effects) -> None:
        for member_id in effects.launch:
            if member_id not in self._launching:
                self._launching.add(member_id)
                self._spawn(self._launch(member_id))
        for agent_id, reason in effects.kill:
            self._spawn(self._call(self.gateway.kill(agent_id, reason), agent_id, "kill"))
        for agent_id in effects.pause:
            self._spawn(self._call(self.gateway.pause(agent_id), agent_id, "pause"))
        for agent_id in effects.resume:
            self._spawn(self._call(self.gateway.resume(agent_id), agent_id, "resume"))
        for callback in effects.after:
            callback()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, call: Awaitable[None], agent_id: str, action: str) -> None:
        try:
            await call
        except (grpc.aio.AioRpcError, UnavailableError) as exc:
            log.warning(
                "agent control failed", extra={"agentId": agent_id, "action": action, "error": repr(exc)}
            )

    async def _launch(self, member_id: str) -> None:
        delay = 0.2
        try:
            while True:
                async with self._db.reader() as session:
                    member = await session.get(MemberRow, member_id)
                if member is None or member.status != "launching":
                    return
                try:
                    agent = await self.gateway.create(member.id, member.team_id, member.task, member.spec)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in REFUSED:
                        await self._refused(member_id, exc.details() or exc.code().name)
                        return
                    log.warning(
                        "creating a member's agent failed; retrying",
                        extra={"memberId": member_id, "error": exc.code().name},
                    )
                except UnavailableError as exc:
                    log.warning("cannot create agents yet", extra={"memberId": member_id, "error": str(exc)})
                else:
                    await self._created(member_id, agent.id)
                    return
                await asyncio.sleep(delay)
                delay = min(LAUNCH_RETRY_MAX, delay * 2)
        finally:
            self._launching.discard(member_id)

    async def _created(self, member_id: str, agent_id: str) -> None:
        effects = Effects()
        async with self._db.session() as session:
            member = await lock(session, member_id)
            if member is None:
                return
            member.agent_id = member.agent_id or agent_id
            if member.status == "launching":
                member.status = "running"
            if member.stop_requested and member.status not in ENDED:
                effects.kill.append((agent_id, "stopped by the team service"))
        self.apply(effects)

    async def _refused(self, member_id: str, reason: str) -> None:
        effects = Effects()
        async with self._db.session() as session:
            member = await lock(session, member_id)
            if member is None or member.status in ENDED:
                return
            member.status = "failed"
            member.error = f"agent not created: {reason}"
            member.ended_at = utcnow()
            if self.on_refused is not None:
                await self.on_refused(session, member, effects)
        self.apply(effects)

    async def recover(self) -> None:
        """After a restart: launch members that were decided but maybe never created, and resend
        the kills of members still waiting to stop."""
        effects = Effects()
        async with self._db.reader() as session:
            rows = (
                await session.scalars(
                    select(MemberRow).where(MemberRow.status.in_(("launching", "running", "paused")))
                )
            ).all()
        for member in rows:
            if member.status == "launching":
                effects.launch.append(member.id)
            elif member.stop_requested and member.agent_id:
                effects.kill.append((member.agent_id, "stopped by the team service"))
        if effects.launch or effects.kill:
            log.info("recovering members", extra={"launch": len(effects.launch), "kill": len(effects.kill)})
        self.apply(effects)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.gateway.close()


def active(members: Iterable[MemberRow]) -> list[MemberRow]:
    return [m for m in members if not m.superseded]
