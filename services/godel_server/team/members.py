"""Agents the team service spawns for team members and workflow steps.

A member row is written in the same transaction as the decision to spawn it; the CreateAgent call
happens after the commit (an `Effects` list) with the member id as request id, so a crash between
the two is healed by the replica that takes the team or workflow over (`Members.owed`, see
team/replicas.py) relaunching the member without creating a second agent.
What happens to the agent afterwards arrives as agent events on Kafka (`apply_agent_event`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import grpc
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import agent_events_pb2 as ev
from godel.v1 import agent_pb2, event_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.errors import UnavailableError
from godel_server.runtime.events import event_data, utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import NO_OWNER
from godel_server.runtime.row_locks import held, locked
from godel_server.team.agents import MEMBER_METADATA_KEY, AgentGateway
from godel_server.team.models import WITHOUT_DEFINITION, MemberRow, MemberStatus, TeamRow, WorkflowRow
from godel_server.team.owners import owner_of_member

log = logging.getLogger(__name__)

# The agent events that end a member (an `agent:error` only when it is final).
ENDING_EVENTS = (ev.AgentCompleted, ev.AgentFailed, ev.AgentKilled, ev.AgentDeleted)
ENDED = frozenset({MemberStatus.COMPLETED, MemberStatus.FAILED, MemberStatus.KILLED, MemberStatus.CANCELLED})
# Member statuses that hold (or are about to hold) a running agent.
ACTIVE = frozenset({MemberStatus.LAUNCHING, MemberStatus.RUNNING, MemberStatus.PAUSED})
LAUNCH_RETRY_MAX = 10.0
# gRPC codes that will not get better by retrying the CreateAgent call.
REFUSED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
)


class Session(Protocol):
    """What deciding on members needs of a database session: adding the rows it creates (an
    AsyncSession, or a fake in unit tests)."""

    def add(self, instance: object) -> None: ...


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
        if member.status == MemberStatus.QUEUED:
            member.status = MemberStatus.CANCELLED
            member.ended_at = utcnow()
            return
        member.stop_requested = True
        if member.agent_id:
            self.kill.append((member.agent_id, reason))


def new_member(
    session: Session,
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
        id=new_id(),
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
        status=MemberStatus.QUEUED if queued else MemberStatus.LAUNCHING,
        spec=spec,
        cost=0.0,
        stop_requested=False,
        superseded=False,
        created_at=utcnow(),
    )
    session.add(member)
    return member


async def lock(session: AsyncSession, member_id: str, *, read: MemberRow | None = None) -> MemberRow | None:
    """Loads a member for a change, locking its owner (workflow or team) first: every writer takes
    the owner's row lock before touching its members, so they cannot deadlock on PostgreSQL.
    `read`: the member as the caller just read it from the database; when its owner was locked
    already, that read was made under the lock and is not repeated."""
    member = read or await session.get(MemberRow, member_id)
    if member is None:
        return None
    if member.workflow_id:
        fresh = read is not None and held(session, WorkflowRow, member.workflow_id)
        await locked(session, WorkflowRow, member.workflow_id, WITHOUT_DEFINITION)
    elif member.team_id:
        fresh = read is not None and held(session, TeamRow, member.team_id)
        await locked(session, TeamRow, member.team_id)
    else:
        fresh = read is not None
    if not fresh:
        await session.refresh(member)
    return member


def member_id_of(agent: agent_pb2.Agent) -> str | None:
    """The member an agent belongs to (from its metadata)."""
    value = agent.metadata.fields.get(MEMBER_METADATA_KEY)
    return value.string_value if value is not None and value.HasField("string_value") else None


@dataclass(frozen=True)
class Change:
    """What an agent event did to a member."""

    member: MemberRow
    ended: bool


async def read_members(session: AsyncSession, events: Sequence[event_pb2.Event]) -> list[BatchMember]:
    """Reads the members a batch of agent events is about, for `apply_agent_event`: one SELECT,
    their workflows and teams locked (in order), then one more SELECT of them under those locks,
    instead of a lookup and a read per event. Agents with no member are known to have none for the
    rest of the transaction (unless an `agent:spawn` of the batch names their member). Returns the
    members read, each with whether an event of the batch ends its agent."""
    agent_ids: set[str] = set()
    member_ids: set[str] = set()
    ending: set[str] = set()
    for event in events:
        data = event_data(event)
        if isinstance(data, ev.AgentSpawned):
            if member_id := member_id_of(data.agent):
                member_ids.add(member_id)
        elif event.metadata.agent_id:
            agent_ids.add(event.metadata.agent_id)
            if isinstance(data, ENDING_EVENTS) and not (isinstance(data, ev.AgentFailed) and not data.final):
                ending.add(event.metadata.agent_id)
    if not agent_ids and not member_ids:
        return []
    ours = or_(MemberRow.agent_id.in_(sorted(agent_ids)), MemberRow.id.in_(sorted(member_ids)))
    # Only their owners first (the members themselves are loaded once, under the owners' locks).
    owners = (await session.execute(select(MemberRow.workflow_id, MemberRow.team_id).where(ours))).all()
    batch = _BatchMembers(session.sync_session.get_transaction(), dict.fromkeys(agent_ids), {})
    session.sync_session.info[_BATCH_MEMBERS] = batch
    if not owners:
        return []
    for workflow_id in sorted({workflow_id for workflow_id, _ in owners if workflow_id}):
        await locked(session, WorkflowRow, workflow_id, WITHOUT_DEFINITION)
    for team_id in sorted({team_id for workflow_id, team_id in owners if team_id and not workflow_id}):
        await locked(session, TeamRow, team_id)
    fresh = await session.scalars(select(MemberRow).where(ours).execution_options(populate_existing=True))
    read: list[BatchMember] = []
    for member in fresh:
        batch.by_id[member.id] = member
        if member.agent_id:
            batch.by_agent[member.agent_id] = member
        read.append(BatchMember(member, bool(member.agent_id) and member.agent_id in ending))
    return read


@dataclass(frozen=True)
class BatchMember:
    """A member a batch of events is about, and whether one of them ends its agent."""

    member: MemberRow
    ends: bool


@dataclass
class _BatchMembers:
    """What `read_members` read, for the rest of its transaction."""

    transaction: object
    by_agent: dict[str, MemberRow | None]  # agent id -> its member (None: it has none)
    by_id: dict[str, MemberRow]


_BATCH_MEMBERS = "godel.batch_members"


def _batch_members(session: AsyncSession) -> _BatchMembers | None:
    batch: _BatchMembers | None = session.sync_session.info.get(_BATCH_MEMBERS)
    if batch is None or batch.transaction is not session.sync_session.get_transaction():
        return None
    return batch


async def apply_agent_event(session: AsyncSession, event: event_pb2.Event) -> Change | None:
    """Updates the member whose agent the event is about; None when it is not one of ours."""
    data = event_data(event)
    batch = _batch_members(session)
    if isinstance(data, ev.AgentSpawned):
        member_id = member_id_of(data.agent)
        read = batch.by_id.get(member_id) if batch is not None and member_id else None
        member = await lock(session, member_id, read=read) if member_id else None
        if member is None:
            return None
        member.agent_id = member.agent_id or data.agent.id
        if batch is not None:
            batch.by_agent[member.agent_id] = member
        return Change(member, ended=False)
    agent_id = event.metadata.agent_id
    if data is None or not agent_id:
        return None
    if batch is not None and agent_id in batch.by_agent:
        found = batch.by_agent[agent_id]
    else:
        # Read fresh (populate_existing): in a batch of events the owner is often locked already,
        # and then this read is the one `lock` needs.
        found = await session.scalar(
            select(MemberRow).where(MemberRow.agent_id == agent_id).execution_options(populate_existing=True)
        )
    member = await lock(session, found.id, read=found) if found else None
    if member is None or member.status in ENDED:
        return None
    now = utcnow()
    match data:
        case ev.AgentUsage():
            member.cost = data.budget_consumed
            return Change(member, ended=False)
        case ev.AgentStarted() | ev.AgentResumed():
            member.status = MemberStatus.RUNNING
            member.session_id = data.session_id or member.session_id
        case ev.AgentPaused():
            member.status = MemberStatus.PAUSED
        case ev.AgentCompleted(agent=agent):
            member.status = MemberStatus.COMPLETED
            member.result = agent.result.rstrip("\n")
            member.session_id = agent.session_id or member.session_id
            member.cost = agent.budget_consumed
            member.ended_at = now
            return Change(member, ended=True)
        case ev.AgentFailed(final=True):
            member.status = MemberStatus.FAILED
            member.error = data.transition.reason or "agent failed"
            member.cost = data.budget_consumed
            member.ended_at = now
            return Change(member, ended=True)
        case ev.AgentKilled() | ev.AgentDeleted():
            member.status = MemberStatus.KILLED
            reason = data.transition.reason if isinstance(data, ev.AgentKilled) else "agent deleted"
            member.error = reason or "agent killed"
            member.ended_at = now
            return Change(member, ended=True)
        case _:
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
        # The last control (kill, pause, resume) sent to each agent: the next one waits for it.
        self._controls: dict[str, asyncio.Task[None]] = {}
        # Called (in a transaction) when a member could not even be created.
        self.on_refused: MemberEnded | None = None

    def apply(self, effects: Effects) -> None:
        for member_id in effects.launch:
            if member_id not in self._launching:
                self._launching.add(member_id)
                self._spawn(self._launch(member_id))
        for agent_id, reason in effects.kill:
            self._control(agent_id, "kill", partial(self.gateway.kill, agent_id, reason))
        for agent_id in effects.pause:
            self._control(agent_id, "pause", partial(self.gateway.pause, agent_id))
        for agent_id in effects.resume:
            self._control(agent_id, "resume", partial(self.gateway.resume, agent_id))
        for callback in effects.after:
            callback()

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _control(self, agent_id: str, action: str, call: Callable[[], Awaitable[None]]) -> None:
        """Sends a control to an agent once the one before it (if any) has been answered: a team
        paused and resumed at once must not have its member's resume overtake the pause (which the
        agent service then refuses: the agent is not paused yet), leaving the member paused."""
        before = self._controls.get(agent_id)

        async def in_order() -> None:
            if before is not None:
                await asyncio.wait([before])  # it logs its own failure
            await self._call(call(), agent_id, action)

        task = self._spawn(in_order())
        self._controls[agent_id] = task
        task.add_done_callback(lambda done: self._forget_control(agent_id, done))

    def _forget_control(self, agent_id: str, done: asyncio.Task[None]) -> None:
        if self._controls.get(agent_id) is done:
            del self._controls[agent_id]

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
                    owner = await owner_of_member(session, member) if member else NO_OWNER
                if member is None or member.status != MemberStatus.LAUNCHING:
                    return
                try:
                    agent = await self.gateway.create(
                        member.id, member.team_id, member.task, member.spec, owner
                    )
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
            if member.status == MemberStatus.LAUNCHING:
                member.status = MemberStatus.RUNNING
            if member.stop_requested and member.status not in ENDED:
                effects.kill.append((agent_id, "stopped by the team service"))
        self.apply(effects)

    async def _refused(self, member_id: str, reason: str) -> None:
        effects = Effects()
        async with self._db.session() as session:
            member = await lock(session, member_id)
            if member is None or member.status in ENDED:
                return
            member.status = MemberStatus.FAILED
            member.error = f"agent not created: {reason}"
            member.ended_at = utcnow()
            if self.on_refused is not None:
                await self.on_refused(session, member, effects)
        self.apply(effects)

    async def owed(
        self,
        session: AsyncSession,
        effects: Effects,
        *,
        team_id: str | None = None,
        workflow_id: str | None = None,
    ) -> None:
        """Adds to `effects` the agent calls the members of a workflow (or of a team, outside its
        workflows) may still be owed, when the replica that decided them may not have made them
        (it died, or the row moved from it): launches of members decided but maybe never created,
        kills of members still waiting to stop. Both are harmless when already made."""
        stmt = select(MemberRow).where(MemberRow.status.in_(ACTIVE))
        if workflow_id is not None:
            stmt = stmt.where(MemberRow.workflow_id == workflow_id)
        else:
            stmt = stmt.where(MemberRow.team_id == team_id, MemberRow.workflow_id.is_(None))
        decided = set(effects.launch) | {agent_id for agent_id, _ in effects.kill}
        for member in (await session.scalars(stmt)).all():
            if member.status == MemberStatus.LAUNCHING and member.id not in decided:
                effects.launch.append(member.id)
            elif member.stop_requested and member.agent_id and member.agent_id not in decided:
                effects.kill.append((member.agent_id, "stopped by the team service"))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.gateway.close()


def active(members: Iterable[MemberRow]) -> list[MemberRow]:
    return [m for m in members if not m.superseded]
