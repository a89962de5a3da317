"""A fake of the agent service for team strategies, without a database: `PlayedTeam` runs a team's
strategy (teams/strategies.py TeamRun) in memory and plays the agents of the members it launches,
each answering with what `reply(member)` returns (its result) or raises (`AgentFailed`: the
agent failed). It plays them the way the team service learns of them: launched members start,
end one at a time in launch order, and each end goes to `TeamRun.member_ended`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from godel_server.runtime.events import utcnow
from godel_server.runtime.statuses import TeamStatus
from godel_server.team.members import ACTIVE, Effects
from godel_server.team.models import MemberRow, MemberStatus, TeamRow
from godel_server.team.teams.strategies import Outcome, TeamRun


class AgentFailed(Exception):
    """Raised by a reply: the member's agent fails with this message."""


class AddedRows:
    """Stands in for the database session: keeps the member rows a strategy adds."""

    def __init__(self) -> None:
        self.rows: list[object] = []

    def add(self, instance: object) -> None:
        self.rows.append(instance)


def new_team(strategy: str, task: str = "the team task", **config: Any) -> TeamRow:
    """A team that has just been created (not started)."""
    now = utcnow()
    return TeamRow(
        id=str(uuid.uuid4()),
        name="played",
        config=config,
        execution_strategy=strategy,
        status=TeamStatus.CREATING,
        task=task,
        progress=0,
        results={},
        budget_consumed=0.0,
        created_at=now,
        updated_at=now,
        meta={},
    )


Reply = Callable[[MemberRow], str]


def answer(member: MemberRow, reply: Reply) -> None:
    """The member's agent ends as `reply` says: completed with its result, or failed."""
    try:
        member.result = reply(member)
        member.status = MemberStatus.COMPLETED
    except AgentFailed as exc:
        member.status = MemberStatus.FAILED
        member.error = str(exc)
    member.ended_at = utcnow()


class PlayedTeam:
    def __init__(self, team: TeamRow, reply: Reply) -> None:
        self.team = team
        self.reply = reply
        self.session = AddedRows()
        self.run = TeamRun(self.session, team, [], Effects(), lambda t, role: {"role": role})
        self.launched: list[MemberRow] = []  # in launch order
        self.peak = 0  # most members with a running agent at once

    def start(self) -> None:
        self.team.status = TeamStatus.ACTIVE
        self.team.started_at = utcnow()
        self.run.start()

    def member(self, member_id: str) -> MemberRow:
        return next(m for m in self.run.members if m.id == member_id)

    def play(self, max_ends: int = 10_000) -> Outcome | None:
        """Plays launched members until the strategy has an outcome or nothing runs; returns it."""
        for _ in range(max_ends):
            outcome = self.run.strategy.outcome(self.run)
            if outcome is not None:
                return outcome
            running = self._start_launched()
            if not running:
                return None
            self._end(running[0])
        raise AssertionError(f"no outcome after {max_ends} members ended")

    def _start_launched(self) -> list[MemberRow]:
        """Members launched so far start running (agent:start), in launch order."""
        for member_id in self.run.effects.launch:
            member = self.member(member_id)
            assert member.status == MemberStatus.LAUNCHING, f"{member.role} launched twice"
            member.status = MemberStatus.RUNNING
            member.agent_id = f"agent-{member.id[:8]}"
            self.launched.append(member)
        self.run.effects.launch.clear()
        running = [m for m in self.launched if m.status in ACTIVE]
        self.peak = max(self.peak, len(running))
        return running

    def _end(self, member: MemberRow) -> None:
        answer(member, self.reply)
        self.run.member_ended(member)
