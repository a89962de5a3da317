"""TeamOrchestrator (spec §4.1): team lifecycle, strategies, retries, scaling and budgets. Every
decision is made in one transaction with the team row locked; the agent calls it implies are
made after the commit (Effects)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf.message import Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import agent_service_pb2, event_pb2, team_pb2, team_service_pb2
from godel.v1 import team_events_pb2 as ev
from godel_server.runtime.config import Settings
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import (
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from godel_server.runtime.events import utcnow
from godel_server.runtime.fieldmask import apply_update
from godel_server.runtime.ownership import Owner, Reach
from godel_server.runtime.pagination import Keyset, keyset_page
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.row_locks import locked
from godel_server.runtime.statuses import TEAM_STATUS, BudgetEntity, TeamStatus
from godel_server.team.budgets.ledger import BudgetLedger
from godel_server.team.events import service_event
from godel_server.team.members import ACTIVE, Effects, Members
from godel_server.team.metrics import TEAMS_CREATED
from godel_server.team.models import MemberRow, MemberStatus, TeamRow
from godel_server.team.owners import same_request
from godel_server.team.teams.mapping import STRATEGY, TERMINAL, team_to_proto
from godel_server.team.teams.strategies import RUNNING, STRATEGIES, TeamRun
from godel_server.team.teams.watch import TeamWatch
from godel_server.team.timers import Timers

NEWEST = Keyset((TeamRow.created_at, TeamRow.id), descending=True)
# A StartTeam stream with no change decided here reads the team this often (others may decide).
WATCH_POLL_SECONDS = 1.0


class TeamNotFoundError(NotFoundError):
    def __init__(self, team_id: str) -> None:
        super().__init__("team", team_id)


class TeamOrchestrator:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        publisher: EventPublisher,
        members: Members,
        ledger: BudgetLedger,
    ) -> None:
        self._settings = settings
        self._db = db
        self._publisher = publisher
        self._members = members
        self._ledger = ledger
        self.watch = TeamWatch()
        self._timers = Timers(self.wake)

    # -- helpers -----------------------------------------------------------------------------

    def event(self, data: Message, team: TeamRow) -> event_pb2.Event:
        return service_event(
            self._settings.instance_id,
            data,
            key=team.id,
            team_id=team.id,
            owner=Owner(team.user_id, team.user_team_id),
        )

    def _member_spec(self, team: TeamRow, role: str, budget_left: float | None) -> dict[str, Any]:
        cfg = team.config or {}
        runtime = cfg.get("runtime") or self._settings.team_runtime
        command = list(cfg.get("command") or [])
        if runtime == "command" and not command:
            command = list(self._settings.team_command)
        spec: dict[str, Any] = {
            "runtime": runtime,
            "command": command,
            "endpoint": cfg.get("endpoint", ""),
            "repo": cfg.get("repo", ""),
            "model": cfg.get("model", ""),
            "label": f"{team.name}/{role}"[:255],
            "maxRetries": 0,
        }
        if cfg.get("placement"):
            spec["placement"] = cfg["placement"]
        duration = (cfg.get("resourceLimits") or {}).get("maxDuration")
        if duration:
            spec["timeoutSeconds"] = max(1, int(float(str(duration).rstrip("s"))))
        if budget_left is not None:
            spec["budgetLimit"] = max(0.0, budget_left)
        return spec

    async def _load(self, session: AsyncSession, team_id: str) -> TeamRow:
        team = await locked(session, TeamRow, team_id)
        if team is None:
            raise TeamNotFoundError(team_id)
        return team

    async def _run(self, session: AsyncSession, team: TeamRow, effects: Effects) -> TeamRun:
        members = list(
            (
                await session.scalars(
                    select(MemberRow)
                    .where(MemberRow.team_id == team.id, MemberRow.workflow_id.is_(None))
                    .order_by(MemberRow.created_at, MemberRow.position)
                )
            ).all()
        )
        budget_left = await self._ledger.remaining(session, team_id=team.id)
        return TeamRun(
            session, team, members, effects, lambda t, role: self._member_spec(t, role, budget_left)
        )

    def snapshot(self, team: TeamRow, members: list[MemberRow]) -> team_pb2.Team:
        return team_to_proto(team, [m.agent_id for m in members if m.agent_id and not m.superseded])

    async def get(self, team_id: str) -> team_pb2.Team:
        async with self._db.reader() as session:
            team = await session.get(TeamRow, team_id)
            if team is None:
                raise TeamNotFoundError(team_id)
            members = (await session.scalars(select(MemberRow).where(MemberRow.team_id == team_id))).all()
        return self.snapshot(team, list(members))

    async def _publish(
        self,
        session: AsyncSession,
        run: TeamRun,
        events: list[event_pb2.Event],
        *,
        notify: event_pb2.Event | None = None,
    ) -> None:
        """Publishes `events` and tells StartTeam watchers (with `notify` or the last event); this
        replica drives the team from now on (team/replicas.py)."""
        run.team.updated_at = utcnow()
        if run.team.replica != self._settings.instance_id:
            await self._take(session, run.team, run.effects)
        if events:
            await self._publisher.publish(session, events)
        trigger = notify or (events[-1] if events else None)
        if trigger is None:
            return
        await session.flush()
        snapshot = self.snapshot(run.team, run.members)
        team_id = run.team.id
        run.effects.after.append(lambda: self.watch.publish(team_id, snapshot, trigger))

    # -- lifecycle -------------------------------------------------------------------------------

    async def create(self, team: TeamRow) -> team_pb2.Team:
        """Stores a new team (not started yet); a repeated request_id gives back the team it made."""

        async def find(session: AsyncSession) -> str | None:
            mine = same_request(TeamRow, team.request_id or "", Owner(team.user_id, team.user_team_id))
            return await session.scalar(select(TeamRow.id).where(mine))

        async def create(session: AsyncSession) -> str:
            await self._insert(session, team)
            TEAMS_CREATED.inc()
            return team.id

        return await self.get(await self._db.create_once(team.request_id or "", find, create))

    async def find(
        self, statuses: Sequence[TeamStatus], reach: Reach, *, page_size: int, page_token: str
    ) -> tuple[list[team_pb2.Team], str]:
        """One page of the teams in one of `statuses` (any when empty) that `reach` covers,
        newest first."""
        stmt = select(TeamRow).where(reach.where(TeamRow.user_id, TeamRow.user_team_id))
        if statuses:
            stmt = stmt.where(TeamRow.status.in_(statuses))
        async with self._db.reader() as session:
            rows: Sequence[TeamRow]
            rows, token = await keyset_page(
                session,
                stmt,
                NEWEST,
                page_size=page_size,
                page_token=page_token,
                query=("teams", sorted(statuses)),
            )
            members = (
                await session.scalars(select(MemberRow).where(MemberRow.team_id.in_([r.id for r in rows])))
            ).all()
        by_team: dict[str, list[MemberRow]] = {}
        for m in members:
            by_team.setdefault(m.team_id or "", []).append(m)
        return [self.snapshot(r, by_team.get(r.id, [])) for r in rows], token

    async def update(self, team: team_pb2.Team, fields: Collection[str]) -> team_pb2.Team:
        """Changes the `fields` (checked: name, description, metadata, config, budget_allocated)
        of a team to those of `team`."""
        async with self._db.session() as session:
            row = await session.get(TeamRow, team.id, with_for_update=True)
            if row is None:
                raise TeamNotFoundError(team.id)
            apply_update(row, team, fields)
            if "budget_allocated" in fields:
                await self.set_budget(session, row)
            row.updated_at = utcnow()
        return await self.get(team.id)

    async def _insert(self, session: AsyncSession, team: TeamRow) -> None:
        team.replica = self._settings.instance_id
        session.add(team)
        await self.set_budget(session, team)
        effects = Effects()
        run = TeamRun(session, team, [], effects, lambda t, r: {})
        await self._publish(
            session,
            run,
            [
                self.event(
                    ev.TeamCreated(
                        team_id=team.id, name=team.name, strategy=STRATEGY.to_proto(team.execution_strategy)
                    ),
                    team,
                )
            ],
        )

    async def start(self, team_id: str) -> team_pb2.Team:
        effects = Effects()
        async with self._db.session() as session:
            team = await self._load(session, team_id)
            if team.status in RUNNING:
                return self.snapshot(team, await self._members_of(session, team_id))
            if team.status != TeamStatus.CREATING:
                raise FailedPreconditionError(
                    f"cannot start team {team_id}: it is {team.status}",
                    metadata={"teamId": team_id, "currentState": team.status},
                )
            caller = current_caller()
            await self._ledger.check_can_spend(
                session, team_id=team.id, user_id=caller.user_id if caller else None
            )
            run = await self._run(session, team, effects)
            team.status = TeamStatus.ACTIVE
            team.started_at = utcnow()
            run.start()
            self._arm_timeout(effects, team)
            await self._publish(
                session,
                run,
                [
                    self.event(
                        ev.TeamStarted(
                            team_id=team.id,
                            strategy=STRATEGY.to_proto(team.execution_strategy),
                            members=len(run.live),
                        ),
                        team,
                    )
                ],
            )
            snapshot = self.snapshot(team, run.members)
        self._members.apply(effects)
        return snapshot

    async def _members_of(self, session: AsyncSession, team_id: str) -> list[MemberRow]:
        return list((await session.scalars(select(MemberRow).where(MemberRow.team_id == team_id))).all())

    async def member_changed(
        self,
        session: AsyncSession,
        member: MemberRow,
        ended: bool,
        trigger: event_pb2.Event | None,
        effects: Effects,
    ) -> None:
        """An agent event moved one of the team's members (called in the consumer's transaction)."""
        assert member.team_id
        team = await locked(session, TeamRow, member.team_id)
        if team is None:
            return
        run = await self._run(session, team, effects)
        member = next(m for m in run.members if m.id == member.id)
        events: list[event_pb2.Event] = []
        if (
            team.status == TeamStatus.PAUSED
            and trigger is not None
            and trigger.type == "agent:start"
            and member.agent_id
        ):
            # Launched before the pause reached it: it pauses now.
            effects.pause.append(member.agent_id)
        if ended and team.status not in TERMINAL:
            run.member_ended(member)
            events += [self.event(ev.TeamFallback(team_id=team.id, reason=note), team) for note in run.notes]
        await self._settle(session, run, events, trigger)

    async def _settle(
        self,
        session: AsyncSession,
        run: TeamRun,
        events: list[event_pb2.Event],
        trigger: event_pb2.Event | None,
    ) -> None:
        """Recomputes progress, finishes the team when its strategy says so, publishes."""
        team = run.team
        strategy = run.strategy
        team.budget_consumed = sum(m.cost or 0.0 for m in run.members)
        if team.status in RUNNING:
            progress = strategy.progress(run)
            if progress != team.progress:
                team.progress = progress
                live = run.live
                data = ev.TeamProgress(
                    team_id=team.id,
                    progress=progress,
                    completed=sum(1 for m in live if m.status == MemberStatus.COMPLETED),
                    total=len(live),
                )
                events.append(self.event(data, team))
            outcome = strategy.outcome(run)
            if outcome is not None:
                self._finish(run, outcome.status, outcome.error)
                events.append(self._end_event(run))
        await self._publish(session, run, events, notify=trigger if not events else None)

    def _finish(self, run: TeamRun, status: TeamStatus, error: str | None) -> None:
        team = run.team
        team.status = status
        team.error = error
        team.completed_at = utcnow()
        if status == TeamStatus.COMPLETED:
            team.progress = 100
        team.results = run.strategy.results(run)
        for member in run.live:
            run.effects.stop(member, f"team {status}")

    def _end_event(self, run: TeamRun) -> event_pb2.Event:
        team = run.team
        members = [m for m in run.live]
        completed = sum(1 for m in members if m.status == MemberStatus.COMPLETED)
        kind = ev.TeamCompleted if team.status == TeamStatus.COMPLETED else ev.TeamFailed
        data = kind(
            team_id=team.id,
            status=TEAM_STATUS.to_proto(team.status),
            error=team.error or "",
            completion_rate=completed / len(members) if members else 0.0,
            members=len(members),
            cost=team.budget_consumed or 0.0,
            name=team.name,
            notify_channels=(team.config or {}).get("notifyChannels", []),
        )
        return self.event(data, team)

    async def pause(self, team_id: str) -> team_pb2.Team:
        return await self._control(team_id, "pause")

    async def resume(self, team_id: str) -> team_pb2.Team:
        return await self._control(team_id, "resume")

    async def _control(self, team_id: str, verb: str) -> team_pb2.Team:
        effects = Effects()
        active, paused = TeamStatus.ACTIVE, TeamStatus.PAUSED
        source, target = (active, paused) if verb == "pause" else (paused, active)
        async with self._db.session() as session:
            team = await self._load(session, team_id)
            if team.status != source:
                if team.status == target:
                    return self.snapshot(team, await self._members_of(session, team_id))
                raise FailedPreconditionError(
                    f"cannot {verb} team {team_id}: it is {team.status}",
                    metadata={"teamId": team_id, "currentState": team.status, "action": verb},
                )
            run = await self._run(session, team, effects)
            team.status = target
            for member in run.live:
                if member.agent_id and member.status in ACTIVE:
                    (effects.pause if verb == "pause" else effects.resume).append(member.agent_id)
            run.fill()
            await self._publish(
                session,
                run,
                [
                    self.event(
                        (ev.TeamPaused if verb == "pause" else ev.TeamResumed)(
                            team_id=team.id, members=len(effects.pause or effects.resume)
                        ),
                        team,
                    )
                ],
            )
            snapshot = self.snapshot(team, run.members)
        self._members.apply(effects)
        return snapshot

    async def scale(self, team_id: str, target: int) -> team_service_pb2.ScaleTeamResponse:
        effects = Effects()
        async with self._db.session() as session:
            team = await self._load(session, team_id)
            strategy = STRATEGIES[team.effective_strategy or team.execution_strategy]
            if not strategy.scalable:
                scalable = " and ".join(s.name for s in STRATEGIES.values() if s.scalable)
                raise FailedPreconditionError(
                    f"cannot scale team {team_id}: scaling applies to {scalable} teams, not {strategy.name}",
                    metadata={"teamId": team_id, "strategy": strategy.name},
                )
            if target > int(team.config.get("size") or 0):
                caller = current_caller()
                await self._ledger.check_can_spend(
                    session, team_id=team.id, user_id=caller.user_id if caller else None
                )
            if team.status in TERMINAL:
                raise FailedPreconditionError(
                    f"cannot scale team {team_id}: it is {team.status}",
                    metadata={"teamId": team_id, "currentState": team.status},
                )
            run = await self._run(session, team, effects)
            scaled = strategy.scale(run, target)
            previous, added, removed = scaled.previous, scaled.added, scaled.removed
            run.fill()
            events = [
                self.event(
                    ev.TeamScaled(
                        team_id=team.id,
                        previous_size=previous,
                        current_size=target,
                        added=len(added),
                        removed=len(removed),
                    ),
                    team,
                )
            ]
            await self._settle(session, run, events, None)
            await session.flush()
            response = team_service_pb2.ScaleTeamResponse(
                team=self.snapshot(team, run.members),
                previous_size=previous,
                current_size=target,
                added_agent_ids=[m.id for m in added],
                removed_agent_ids=[m.agent_id or m.id for m in removed],
            )
        self._members.apply(effects)
        return response

    async def budget_exceeded(
        self, session: AsyncSession, team_id: str, reason: str, effects: Effects
    ) -> None:
        """A team's budget ran out: stop its members and fail it (in the caller's transaction)."""
        team = await locked(session, TeamRow, team_id)
        if team is None or team.status in TERMINAL:
            return
        run = await self._run(session, team, effects)
        self._finish(run, TeamStatus.FAILED, reason)
        await self._publish(session, run, [self._end_event(run)])

    async def delete(self, team_id: str) -> None:
        effects = Effects()
        async with self._db.session() as session:
            team = await self._load(session, team_id)
            run = await self._run(session, team, effects)
            for member in run.members:
                effects.stop(member, "team deleted")
            for member in run.members:
                await session.delete(member)
            await session.delete(team)
            await self._publisher.publish(session, [self.event(ev.TeamDeleted(team_id=team.id), team)])
        self._members.apply(effects)

    def _arm_timeout(self, effects: Effects, team: TeamRow) -> None:
        minutes = int(team.config.get("timeoutMinutes") or 0)
        if minutes and team.started_at is not None:
            left = (team.started_at + timedelta(minutes=minutes) - utcnow()).total_seconds()
            team_id = team.id
            effects.after.append(lambda: self._timers.arm(team_id, left))

    async def wake(self, team_id: str) -> None:
        """A team's timeout is due: fail it and stop its members."""
        effects = Effects()
        async with self._db.session() as session:
            team = await session.get(TeamRow, team_id, with_for_update=True)
            if team is None or team.status not in RUNNING or team.started_at is None:
                return
            if team.replica not in (None, self._settings.instance_id):
                return  # another replica drives it now, with a timer of its own
            minutes = int(team.config.get("timeoutMinutes") or 0)
            if not minutes:
                return
            if team.started_at + timedelta(minutes=minutes) > utcnow():
                self._arm_timeout(effects, team)
            else:
                run = await self._run(session, team, effects)
                self._finish(run, TeamStatus.FAILED, f"team timed out after {minutes} minutes")
                await self._publish(session, run, [self._end_event(run)])
        self._members.apply(effects)

    async def _take(self, session: AsyncSession, team: TeamRow, effects: Effects) -> None:
        """This replica drives `team` from now on: it makes the agent calls the team's members may
        still be owed and arms the team's timeout here."""
        team.replica = self._settings.instance_id
        await self._members.owed(session, effects, team_id=team.id)
        if team.status in RUNNING:
            self._arm_timeout(effects, team)

    async def adopt(self, team_id: str, orphaned: Callable[[str | None], bool]) -> bool:
        """Takes over a team whose replica is gone (team/replicas.py); False when it is not
        `orphaned` any more."""
        effects = Effects()
        async with self._db.session() as session:
            team = await session.get(TeamRow, team_id, with_for_update=True, populate_existing=True)
            if team is None or not orphaned(team.replica):
                return False
            await self._take(session, team, effects)
        self._members.apply(effects)
        return True

    async def stop(self) -> None:
        await self._timers.stop()

    async def set_budget(self, session: AsyncSession, team: TeamRow) -> None:
        if team.budget_allocated is not None:
            await self._ledger.set_budget(session, BudgetEntity.TEAM, team.id, team.budget_allocated)

    async def agents(
        self, team_id: str, page_size: int, page_token: str
    ) -> agent_service_pb2.ListAgentsResponse:
        try:
            return await self._members.gateway.list_team(team_id, page_size, page_token)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ValidationError.single("page_token", exc.details() or "invalid") from None
            raise UnavailableError(f"agent service: {exc.code().name}") from None

    async def metrics(self, team_id: str) -> team_pb2.TeamMetrics:
        async with self._db.reader() as session:
            team = await session.get(TeamRow, team_id)
            if team is None:
                raise TeamNotFoundError(team_id)
            members = [m for m in await self._members_of(session, team_id) if not m.superseded]
        completed = sum(1 for m in members if m.status == MemberStatus.COMPLETED)
        failed = sum(1 for m in members if m.status in (MemberStatus.FAILED, MemberStatus.KILLED))
        end = team.completed_at or utcnow()
        return team_pb2.TeamMetrics(
            team_id=team_id,
            total_agents=len(members),
            running_agents=sum(1 for m in members if m.status in ACTIVE),
            completed_agents=completed,
            failed_agents=failed,
            completion_rate=completed / len(members) if members else 0.0,
            duration_seconds=(end - team.started_at).total_seconds() if team.started_at else 0.0,
            cost_usd=team.budget_consumed or 0.0,
            progress=team.progress,
        )

    async def follow(self, team_id: str) -> AsyncIterator[team_service_pb2.StartTeamResponse]:
        """StartTeam's stream: the team now, then every change until it ends."""
        queue = self.watch.subscribe(team_id)
        try:
            team = await self.start(team_id)
            yield team_service_pb2.StartTeamResponse(team=team)
            while team.status not in (team_pb2.TEAM_STATUS_COMPLETED, team_pb2.TEAM_STATUS_FAILED):
                try:
                    team, event = await asyncio.wait_for(queue.get(), timeout=WATCH_POLL_SECONDS)
                except TimeoutError:
                    # Decisions of the other replicas reach this one's watchers through the database.
                    latest = await self.get(team_id)
                    if latest != team:
                        team = latest
                        yield team_service_pb2.StartTeamResponse(team=team)
                    continue
                yield team_service_pb2.StartTeamResponse(team=team, event=event)
        finally:
            self.watch.unsubscribe(team_id, queue)
