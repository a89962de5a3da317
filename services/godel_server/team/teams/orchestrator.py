"""TeamOrchestrator (spec §4.1): team lifecycle, strategies, retries, scaling and budgets. Every
decision is made in one transaction with the team row locked; the agent calls it implies are
made after the commit (Effects)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import agent_service_pb2, event_pb2, team_pb2, team_service_pb2
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
from godel_server.runtime.publisher import EventPublisher
from godel_server.team.budgets import BudgetLedger
from godel_server.team.events import service_event
from godel_server.team.members import ACTIVE, ENDED, Effects, Members
from godel_server.team.models import MemberRow, TeamRow
from godel_server.team.teams.mapping import TERMINAL, team_to_proto
from godel_server.team.teams.strategies import STRATEGIES, TeamRun
from godel_server.team.teams.watch import TeamWatch
from godel_server.team.timers import Timers

DEFAULT_MEMBER_RETRIES = 1


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

    def event(self, event_type: str, team: TeamRow, payload: dict[str, Any]) -> event_pb2.Event:
        return service_event(
            self._settings.instance_id,
            event_type,
            {"teamId": team.id, **payload},
            key=team.id,
            team_id=team.id,
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
        duration = (cfg.get("resourceLimits") or {}).get("maxDuration")
        if duration:
            spec["timeoutSeconds"] = max(1, int(float(str(duration).rstrip("s"))))
        if budget_left is not None:
            spec["budgetLimit"] = max(0.0, budget_left)
        return spec

    async def _load(self, session: AsyncSession, team_id: str) -> TeamRow:
        team = await session.get(TeamRow, team_id, with_for_update=True, populate_existing=True)
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
        self, run: TeamRun, events: list[event_pb2.Event], *, notify: event_pb2.Event | None = None
    ) -> None:
        """Publishes `events` and tells StartTeam watchers (with `notify` or the last event)."""
        run.team.updated_at = utcnow()
        if events:
            await self._publisher.publish(run.session, events)
        trigger = notify or (events[-1] if events else None)
        if trigger is None:
            return
        await run.session.flush()
        snapshot = self.snapshot(run.team, run.members)
        team_id = run.team.id
        run.effects.after.append(lambda: self.watch.publish(team_id, snapshot, trigger))

    # -- lifecycle -------------------------------------------------------------------------------

    async def create(self, session: AsyncSession, team: TeamRow) -> None:
        session.add(team)
        await self.set_budget(session, team)
        effects = Effects()
        run = TeamRun(session, team, [], effects, lambda t, r: {})
        await self._publish(
            run, [self.event("team:create", team, {"name": team.name, "strategy": team.execution_strategy})]
        )

    async def start(self, team_id: str) -> team_pb2.Team:
        effects = Effects()
        async with self._db.session() as session:
            team = await self._load(session, team_id)
            if team.status in ("active", "paused"):
                return self.snapshot(team, await self._members_of(session, team_id))
            if team.status != "creating":
                raise FailedPreconditionError(
                    f"cannot start team {team_id}: it is {team.status}",
                    metadata={"teamId": team_id, "currentState": team.status},
                )
            caller = current_caller()
            await self._ledger.check_can_spend(
                session, team_id=team.id, user_id=caller.user_id if caller else None
            )
            run = await self._run(session, team, effects)
            team.status = "active"
            team.started_at = utcnow()
            team.effective_strategy = team.execution_strategy
            STRATEGIES[team.execution_strategy].start(run)
            run.fill()
            self._arm_timeout(effects, team)
            await self._publish(
                run,
                [
                    self.event(
                        "team:start", team, {"strategy": team.execution_strategy, "members": len(run.live)}
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
        team = await session.get(TeamRow, member.team_id, with_for_update=True)
        if team is None:
            return
        run = await self._run(session, team, effects)
        member = next(m for m in run.members if m.id == member.id)
        events: list[event_pb2.Event] = []
        if (
            team.status == "paused"
            and trigger is not None
            and trigger.type == "agent:start"
            and member.agent_id
        ):
            # Launched before the pause reached it: it pauses now.
            effects.pause.append(member.agent_id)
        if ended and team.status not in TERMINAL:
            self._member_ended(run, member)
            run.fill()
            events += [self.event("team:fallback", team, {"reason": note}) for note in run.notes]
        await self._settle(run, events, trigger)

    def _member_ended(self, run: TeamRun, member: MemberRow) -> None:
        """Retries a failed member per the team's retry policy, else hands it to the strategy."""
        failed = member.status in ("failed", "killed") and not member.stop_requested
        retries = (run.team.config.get("retryPolicy") or {}).get("maxRetries")
        allowed = DEFAULT_MEMBER_RETRIES if retries is None else int(retries)
        if failed and member.attempt < allowed and run.team.status in ("active", "paused"):
            member.superseded = True
            replacement = run.spawn(
                member.role,
                member.task,
                position=member.position,
                input=member.input,
                attempt=member.attempt + 1,
                context=member.spec.get("context"),
            )
            replacement.parent_id = member.parent_id
            replacement.depth = member.depth
            if member.spec.get("parentSessionId"):
                replacement.spec = {**replacement.spec, "parentSessionId": member.spec["parentSessionId"]}
            return
        if run.team.status == "active" or run.team.status == "paused":
            STRATEGIES[run.team.effective_strategy or run.team.execution_strategy].member_ended(run, member)

    async def _settle(
        self, run: TeamRun, events: list[event_pb2.Event], trigger: event_pb2.Event | None
    ) -> None:
        """Recomputes progress, finishes the team when its strategy says so, publishes."""
        team = run.team
        strategy = STRATEGIES[team.effective_strategy or team.execution_strategy]
        team.budget_consumed = sum(m.cost or 0.0 for m in run.members)
        if team.status in ("active", "paused"):
            progress = strategy.progress(run)
            if progress != team.progress:
                team.progress = progress
                live = run.live
                counts = {
                    "completed": sum(1 for m in live if m.status == "completed"),
                    "total": len(live),
                }
                events.append(self.event("team:progress", team, {"progress": progress, **counts}))
            outcome = strategy.outcome(run)
            if outcome is not None:
                self._finish(run, outcome.status, outcome.error)
                events.append(self._end_event(run))
        await self._publish(run, events, notify=trigger if not events else None)

    def _finish(self, run: TeamRun, status: str, error: str | None) -> None:
        team = run.team
        team.status = status
        team.error = error
        team.completed_at = utcnow()
        if status == "completed":
            team.progress = 100
        strategy = STRATEGIES[team.effective_strategy or team.execution_strategy]
        team.results = strategy.results(run)
        for member in run.live:
            run.effects.stop(member, f"team {status}")

    def _end_event(self, run: TeamRun) -> event_pb2.Event:
        team = run.team
        members = [m for m in run.live]
        completed = sum(1 for m in members if m.status == "completed")
        payload = {
            "status": team.status,
            "error": team.error or "",
            "completionRate": completed / len(members) if members else 0.0,
            "members": len(members),
            "cost": team.budget_consumed,
        }
        return self.event("team:complete" if team.status == "completed" else "team:error", team, payload)

    async def pause(self, team_id: str) -> team_pb2.Team:
        return await self._control(team_id, "pause")

    async def resume(self, team_id: str) -> team_pb2.Team:
        return await self._control(team_id, "resume")

    async def _control(self, team_id: str, verb: str) -> team_pb2.Team:
        effects = Effects()
        source, target = ("active", "paused") if verb == "pause" else ("paused", "active")
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
                run, [self.event(f"team:{verb}", team, {"members": len(effects.pause or effects.resume)})]
            )
            snapshot = self.snapshot(team, run.members)
        self._members.apply(effects)
        return snapshot

    async def scale(self, team_id: str, target: int) -> team_service_pb2.ScaleTeamResponse:
        effects = Effects()
        async with self._db.session() as session:
            team = await self._load(session, team_id)
            strategy = team.effective_strategy or team.execution_strategy
            if strategy not in ("parallel", "map-reduce"):
                raise FailedPreconditionError(
                    f"cannot scale team {team_id}: scaling applies to parallel and map-reduce teams, not {strategy}",
                    metadata={"teamId": team_id, "strategy": strategy},
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
            added: list[MemberRow] = []
            removed: list[MemberRow] = []
            if strategy == "map-reduce":
                previous = run.limit or len(run.with_role("mapper"))
                team.config = {**team.config, "maxAgents": target}
            else:
                workers = [m for m in run.with_role("worker")]
                previous = len(workers)
                if target > previous:
                    start = max((m.position for m in workers), default=-1) + 1
                    added = [
                        run.spawn("worker", team.task, position=start + i) for i in range(target - previous)
                    ]
                elif target < previous:
                    # Finished members keep their results; the newest unfinished ones go.
                    unfinished = sorted(
                        (m for m in workers if m.status not in ENDED), key=lambda m: m.position, reverse=True
                    )
                    removed = unfinished[: previous - target]
                    for member in removed:
                        member.superseded = True
                        effects.stop(member, "team scaled down")
                team.config = {**team.config, "size": target}
            run.fill()
            events = [
                self.event(
                    "team:scale",
                    team,
                    {
                        "previousSize": previous,
                        "currentSize": target,
                        "added": len(added),
                        "removed": len(removed),
                    },
                )
            ]
            await self._settle(run, events, None)
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
        team = await session.get(TeamRow, team_id, with_for_update=True)
        if team is None or team.status in TERMINAL:
            return
        run = await self._run(session, team, effects)
        self._finish(run, "failed", reason)
        await self._publish(run, [self._end_event(run)])

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
            await self._publisher.publish(session, [self.event("team:delete", team, {})])
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
            if team is None or team.status not in ("active", "paused") or team.started_at is None:
                return
            minutes = int(team.config.get("timeoutMinutes") or 0)
            if not minutes:
                return
            if team.started_at + timedelta(minutes=minutes) > utcnow():
                self._arm_timeout(effects, team)
            else:
                run = await self._run(session, team, effects)
                self._finish(run, "failed", f"team timed out after {minutes} minutes")
                await self._publish(run, [self._end_event(run)])
        self._members.apply(effects)

    async def recover(self) -> None:
        """After a restart: re-arm the timeouts of running teams."""
        effects = Effects()
        async with self._db.reader() as session:
            teams = (
                await session.scalars(select(TeamRow).where(TeamRow.status.in_(("active", "paused"))))
            ).all()
        for team in teams:
            self._arm_timeout(effects, team)
        self._members.apply(effects)

    async def stop(self) -> None:
        await self._timers.stop()

    async def set_budget(self, session: AsyncSession, team: TeamRow) -> None:
        if team.budget_allocated is not None:
            await self._ledger.set_budget(session, "team", team.id, team.budget_allocated)

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
        completed = sum(1 for m in members if m.status == "completed")
        failed = sum(1 for m in members if m.status in ("failed", "killed"))
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
                    team, event = await asyncio.wait_for(queue.get(), timeout=30)
                except TimeoutError:
                    team = await self.get(team_id)
                    continue
                yield team_service_pb2.StartTeamResponse(team=team, event=event)
        finally:
            self.watch.unsubscribe(team_id, queue)


def new_team_id() -> str:
    return str(uuid.uuid4())
