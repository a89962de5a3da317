"""A fake of the agent service for the workflow scheduler, without a database: `PlayedWorkflow`
makes a workflow's rows from a definition (as WorkflowEngine.create does), runs the engine's
decisions (team/workflows/scheduler.py) on them in memory and plays the agents of the step members
they launch: each answers with what `reply(member)` returns or fails with `AgentFailed`. Members
end one at a time, in launch order, each handed to `Scheduler.member_ended` as the engine would;
the scheduler's clock is the fake's (`wake(after)` moves it on)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

from godel.v1 import workflow_pb2
from godel_server.runtime.config import load_settings
from godel_server.runtime.events import utcnow
from godel_server.runtime.statuses import StepStatus, WorkflowStatus
from godel_server.team.members import ACTIVE, Effects
from godel_server.team.models import MemberRow, MemberStatus, WorkflowRow, WorkflowStepRow
from godel_server.team.workflows.dag import Dag
from godel_server.team.workflows.definition import parse_and_validate
from godel_server.team.workflows.scheduler import (
    UNFINISHED,
    ParsedDefinition,
    Scheduler,
    StepStates,
    WorkflowRun,
    new_steps,
)
from tests.fakes.team import AgentFailed, answer

__all__ = ["AgentFailed", "PlayedWorkflow"]

Reply = Callable[[MemberRow], str]


class MemoryRows:
    """The scheduler's StepSource: the workflow's step rows, and the member rows it adds."""

    def __init__(self, steps: list[WorkflowStepRow]) -> None:
        self.steps_by_id = {s.step_id: s for s in steps}
        self.members: list[MemberRow] = []
        self.loads: list[list[str]] = []  # the step ids of every load (what was not loaded yet)

    def add(self, instance: object) -> None:
        assert isinstance(instance, MemberRow), f"the scheduler added a {type(instance).__name__}"
        self.members.append(instance)

    async def steps(self, workflow_id: str, step_ids: list[str]) -> Iterable[WorkflowStepRow]:
        self.loads.append(step_ids)
        return [self.steps_by_id[s] for s in step_ids if s in self.steps_by_id]


class PlayedWorkflow:
    def __init__(self, definition_text: str, reply: Reply, home: Path, *, preload: bool = True) -> None:
        """`preload`: the run starts with every step row loaded (as the engine's first transaction
        on a workflow does); otherwise it loads them as it needs them."""
        self.definition: workflow_pb2.WorkflowDefinition = parse_and_validate(definition_text)
        self.reply = reply
        self.now = utcnow()
        self.wf = WorkflowRow(
            id=str(uuid.uuid4()),
            name=self.definition.name,
            definition={},
            status=WorkflowStatus.PENDING,
            context={},
            results={},
            progress=0,
            version=0,
            created_at=self.now,
            meta={},
        )
        self.steps = new_steps(self.wf, self.definition)
        self.source = MemoryRows(self.steps)
        dag = Dag.from_definition(self.definition)
        parsed = ParsedDefinition(self.definition, {s.id: s for s in self.definition.steps}, dag, {})
        self.run = WorkflowRun(
            self.source,
            self.wf,
            StepStates.of(0, dag, self.steps),
            parsed,
            Effects(),
            self.steps if preload else None,
        )
        self.timers: list[tuple[str, float]] = []  # ("arm", delay) | ("disarm", 0)
        settings = load_settings("team", {"GODEL_HOME": str(home)})
        self.scheduler = Scheduler(
            settings,
            arm=lambda _id, delay: self.timers.append(("arm", delay)),
            disarm=lambda _id: self.timers.append(("disarm", 0.0)),
            clock=lambda: self.now,
        )
        self.log: list[tuple[str, str]] = []  # ("launch" | "end", step id)
        self.peak = 0

    def step(self, step_id: str) -> WorkflowStepRow:
        return self.source.steps_by_id[step_id]

    def member(self, member_id: str) -> MemberRow:
        return next(m for m in self.source.members if m.id == member_id)

    def event_types(self) -> list[str]:
        return [e.type for e in self.run.events]

    def commit(self) -> None:
        """What the engine's commit does with the run (engine.py `_commit`, then the callbacks):
        unfinished steps of an ended workflow are cancelled, the members still running get
        stopped, and the timers are armed or disarmed."""
        run = self.run
        if run.cancel_unfinished:
            for step in self.steps:
                if step.status in UNFINISHED:
                    step.status = StepStatus.CANCELLED
            run.cancel_unfinished = False
        if run.stop_reason is not None:
            for member in self.source.members:
                if member.status in ACTIVE:
                    run.effects.stop(member, run.stop_reason)
            run.stop_reason = None
        for callback in run.effects.after:
            callback()
        run.effects.after.clear()

    async def start(self) -> bool:
        started = await self.scheduler.start(self.run)
        self.commit()
        return started

    async def play(self, max_ends: int = 10_000) -> None:
        """Plays launched members until none is left running."""
        running: list[MemberRow] = []
        for _ in range(max_ends):
            for member_id in self.run.effects.launch:
                member = self.member(member_id)
                member.status = MemberStatus.RUNNING
                member.agent_id = f"agent-{member.id[:8]}"
                running.append(member)
                self.log.append(("launch", member.step_id or ""))
            self.run.effects.launch.clear()
            self.peak = max(self.peak, len(running))
            if not running:
                return
            member = running.pop(0)
            if member.stop_requested:
                member.status = MemberStatus.KILLED
            else:
                answer(member, self.reply)
            self.log.append(("end", member.step_id or ""))
            await self.scheduler.member_ended(self.run, member)
            self.commit()
        raise AssertionError(f"still running after {max_ends} members ended")

    async def wake(self, after: timedelta) -> None:
        """The workflow's timer fires `after` from now (retries due, deadline passed)."""
        self.now += after
        await self.scheduler.wake(self.run)
        self.commit()
