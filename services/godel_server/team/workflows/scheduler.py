"""The decisions of the WorkflowEngine (spec §4.1), apart from the database: which steps start,
are skipped, retried or failed, and when a workflow ends, made on one workflow's rows in memory
(`WorkflowRun`). The engine (engine.py) loads and locks those rows, runs these decisions in the
transaction and commits what they changed; unit tests run them on rows they make themselves
(tests/fakes/workflows.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from google.protobuf.message import Message

from godel.v1 import event_pb2, workflow_pb2
from godel.v1 import workflow_events_pb2 as ev
from godel_server.runtime.config import Settings
from godel_server.runtime.errors import FailedPreconditionError
from godel_server.runtime.events import utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import Owner
from godel_server.runtime.statuses import WORKFLOW_STATUS, StepStatus, WorkflowStatus
from godel_server.team.events import service_event
from godel_server.team.members import Effects, new_member
from godel_server.team.models import MemberRow, MemberStatus, WorkflowRow, WorkflowStepRow
from godel_server.team.workflows.dag import FINISHED, Dag, backoff_seconds
from godel_server.team.workflows.definition import concurrency
from godel_server.team.workflows.expressions import ExpressionError, compile_expression
from godel_server.team.workflows.templates import compile_template

UNFINISHED = (StepStatus.PENDING, StepStatus.RETRYING, StepStatus.RUNNING)
TERMINAL = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED})
# A workflow that has started and not ended: its steps run, or wait for it to resume.
UNDERWAY = (WorkflowStatus.RUNNING, WorkflowStatus.PAUSED)
# What a workflow that ends publishes.
END_EVENTS = {
    WorkflowStatus.COMPLETED: ev.WorkflowCompleted,
    WorkflowStatus.FAILED: ev.WorkflowFailed,
    WorkflowStatus.CANCELLED: ev.WorkflowCancelled,
}


def new_steps(wf: WorkflowRow, definition: workflow_pb2.WorkflowDefinition) -> list[WorkflowStepRow]:
    """The step rows of a new workflow, pending, in definition order."""
    return [
        WorkflowStepRow(
            id=new_id(),
            workflow_id=wf.id,
            step_id=step.id,
            position=i,
            name=step.name or step.id,
            task=step.task,
            dependencies=list(step.depends_on),
            status=StepStatus.PENDING,
            retry_count=0,
        )
        for i, step in enumerate(definition.steps)
    ]


class StepSource(Protocol):
    """Where a WorkflowRun gets the step rows it has not loaded yet, and puts the member rows it
    creates: the engine's database session, or a fake in unit tests."""

    def add(self, instance: object) -> None: ...

    async def steps(self, workflow_id: str, step_ids: list[str]) -> Iterable[WorkflowStepRow]: ...


@dataclass(frozen=True)
class ParsedDefinition:
    """A workflow's definition as the scheduler uses it (parsed once per process: it never changes)."""

    definition: workflow_pb2.WorkflowDefinition
    steps: dict[str, workflow_pb2.StepDefinition]
    dag: Dag
    # Agent configs of the steps that name a specific agent (resolved at creation).
    agent_templates: dict[str, Any]


@dataclass
class StepView:
    """What the scheduler, conditions and templates need of one step."""

    status: StepStatus
    output: str = ""
    error: str = ""
    agent_id: str = ""


class StepStates:
    """The steps of one workflow as of `version` of its row. Kept between transactions so an event
    touches only the step rows it changes; any transaction that changes steps bumps the row's
    version, so a view that missed a change (or saw one that was rolled back) is reloaded.

    The counts per status and the ready steps (pending, every dependency finished) follow each
    change (`put`), so an event costs the steps it touches and their dependents, not a pass over
    every step of the workflow (a 1,000-step DAG made that a second of CPU per run)."""

    def __init__(self, version: int, dag: Dag, steps: dict[str, StepView]) -> None:
        self.version = version
        self.dag = dag
        self._steps = steps
        self._statuses: dict[str, str] = {sid: v.status for sid, v in steps.items()}
        self._counts = Counter(self._statuses.values())
        self._ready = set(dag.ready(self._statuses))
        self._in_order: tuple[str, ...] | None = None  # `_ready` sorted, until it changes

    @classmethod
    def of(cls, version: int, dag: Dag, rows: list[WorkflowStepRow]) -> StepStates:
        return cls(version, dag, {r.step_id: step_view(r) for r in rows})

    @property
    def steps(self) -> Mapping[str, StepView]:
        """Every step's view (read only: a change goes through `put`)."""
        return self._steps

    def put(self, step_id: str, view: StepView) -> None:
        old = self._steps.get(step_id)
        if old is not None:
            self._counts[old.status] -= 1
        self._steps[step_id] = view
        self._statuses[step_id] = view.status
        self._counts[view.status] += 1
        self._recheck(step_id)
        if (old is not None and old.status in FINISHED) != (view.status in FINISHED):
            for dependent in self.dag.dependents.get(step_id, ()):
                self._recheck(dependent)

    def set_status(self, step_id: str, status: StepStatus) -> None:
        self.put(step_id, replace(self._steps[step_id], status=status))

    def ready(self) -> tuple[str, ...]:
        """The ready steps in topological order (Dag.ready's answer, without reading every step),
        sorted again only after the set changed: a batch of completions asks for them several
        times per completion."""
        if self._in_order is None:
            self._in_order = tuple(sorted(self._ready, key=self.dag.rank))
        return self._in_order

    def any_ready(self) -> bool:
        return bool(self._ready)

    def unblocked_by(self, step_id: str) -> list[str]:
        """The steps that become ready when `step_id` finishes (their other dependencies have)."""
        return self.dag.unblocked_by(step_id, self._statuses)

    def count(self, *statuses: StepStatus) -> int:
        return sum(self._counts[s] for s in statuses)

    def all_finished(self) -> bool:
        return self.count(*FINISHED) == len(self._steps)

    def _recheck(self, step_id: str) -> None:
        if step_id not in self.dag:
            return
        ready = self.dag.is_ready(step_id, self._statuses)
        if ready != (step_id in self._ready):
            if ready:
                self._ready.add(step_id)
            else:
                self._ready.remove(step_id)
            self._in_order = None


def step_view(row: WorkflowStepRow) -> StepView:
    return StepView(row.status, (row.result or {}).get("output", ""), row.error or "", row.agent_id or "")


class WorkflowRun:
    """One workflow inside a transaction: its row (locked), its step view, and the step rows
    loaded so far."""

    def __init__(
        self,
        source: StepSource,
        wf: WorkflowRow,
        state: StepStates,
        parsed: ParsedDefinition,
        effects: Effects,
        rows: list[WorkflowStepRow] | None = None,
    ) -> None:
        self.source = source
        self.wf = wf
        self.state = state
        self.definition = parsed.definition
        self.defs = parsed.steps
        self.dag = parsed.dag
        self.agent_templates = parsed.agent_templates
        self.rows = {r.step_id: r for r in rows or []}
        self.effects = effects
        self.events: list[event_pb2.Event] = []
        # Set when the running steps' agents must be stopped (the workflow ended).
        self.stop_reason: str | None = None
        self.dirty = False
        # Set when every unfinished step is to be cancelled (done in one UPDATE at the commit).
        self.cancel_unfinished = False
        self._variables: dict[str, Any] | None = None

    async def load(self, step_ids: list[str]) -> None:
        missing = [sid for sid in step_ids if sid not in self.rows]
        if missing:
            found = await self.source.steps(self.wf.id, missing)
            self.rows.update((r.step_id, r) for r in found)

    def set(self, row: WorkflowStepRow, status: StepStatus) -> None:
        """Changes a step's status in its row and in the view."""
        row.status = status
        self.touch(row)

    def touch(self, row: WorkflowStepRow) -> None:
        """Records a change of a step row in the view (the view is invalid until the commit)."""
        self.state.put(row.step_id, step_view(row))
        self.state.version = -1
        self.dirty = True
        self._variables = None

    def variables(self) -> dict[str, Any]:
        if self._variables is None:
            steps = {
                sid: {"status": v.status, "output": v.output, "error": v.error, "agentId": v.agent_id}
                for sid, v in self.state.steps.items()
            }
            self._variables = {
                "steps": steps,
                "context": self.wf.context or {},
                "workflow": {"id": self.wf.id, "name": self.wf.name},
            }
        return self._variables


class Scheduler:
    """Decides on one workflow at a time (a WorkflowRun); what it decides lands in the run (rows,
    events, Effects). `arm(workflow_id, delay)` and `disarm(workflow_id)` are called after the
    commit to wake the workflow later (retries, deadline) or forget it (it ended)."""

    def __init__(
        self,
        settings: Settings,
        *,
        arm: Callable[[str, float], None],
        disarm: Callable[[str], None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._on_arm = arm
        self._on_disarm = disarm
        self._now = clock

    def event(self, data: Message, wf: WorkflowRow) -> event_pb2.Event:
        return service_event(
            self._settings.instance_id,
            data,
            key=wf.id,
            workflow_id=wf.id,
            team_id=wf.team_id or "",
            owner=Owner(wf.user_id, wf.user_team_id),
        )

    async def start(self, run: WorkflowRun) -> bool:
        """Starts a pending workflow: its deadline is set and its first steps start. False when it
        is already running or paused (nothing to do); FAILED_PRECONDITION when it has ended."""
        wf = run.wf
        if wf.status != WorkflowStatus.PENDING:
            if wf.status in UNDERWAY:
                return False
            raise FailedPreconditionError(
                f"cannot start workflow {wf.id}: it is {wf.status}",
                metadata={"workflowId": wf.id, "currentState": wf.status},
            )
        now = self._now()
        wf.status = WorkflowStatus.RUNNING
        wf.started_at = now
        if run.definition.timeout > 0:
            wf.deadline_at = now + timedelta(seconds=run.definition.timeout)
            self.arm(run.effects, wf.id, float(run.definition.timeout))
        run.events.append(self.event(ev.WorkflowStarted(workflow_id=wf.id, steps=len(run.dag)), wf))
        await self.advance(run)
        return True

    async def wake(self, run: WorkflowRun) -> None:
        """A timer of the workflow is due: retries whose time has come become pending (and start
        when they can), a passed deadline fails the workflow, and the next timer is armed."""
        wf = run.wf
        now = self._now()
        if wf.deadline_at is not None and wf.deadline_at <= now:
            self.end(run, WorkflowStatus.FAILED, f"workflow timed out after {run.definition.timeout}s")
            return
        later: list[float] = []
        retrying = [sid for sid, v in run.state.steps.items() if v.status == StepStatus.RETRYING]
        await run.load(retrying)
        for step in run.rows.values():
            if step.status != StepStatus.RETRYING or step.next_attempt_at is None:
                continue
            if step.next_attempt_at <= now:
                step.next_attempt_at = None
                run.set(step, StepStatus.PENDING)
            else:
                later.append((step.next_attempt_at - now).total_seconds())
        if wf.deadline_at is not None:
            later.append((wf.deadline_at - now).total_seconds())
        if later:
            self.arm(run.effects, wf.id, min(later))
        if wf.status == WorkflowStatus.RUNNING:
            await self.advance(run)

    async def advance(self, run: WorkflowRun) -> None:
        """Starts every step that can start now, skips the ones whose condition is false, and
        ends the workflow when nothing is left."""
        wf = run.wf
        limit = concurrency(run.definition)
        while wf.status == WorkflowStatus.RUNNING:
            running = run.state.count(StepStatus.RUNNING)
            ready = run.state.ready() if running < limit else ()
            if not ready:
                break
            batch = list(ready[: limit - running])
            await run.load(batch)
            for sid in batch:
                if wf.status != WorkflowStatus.RUNNING:
                    break
                step = run.rows[sid]
                definition = run.defs[sid]
                if definition.when:
                    try:
                        go = compile_expression(definition.when).test(run.variables())
                    except ExpressionError as exc:
                        self._step_failed(run, step, f"condition {definition.when!r}: {exc}")
                        continue
                    if not go:
                        step.completed_at = self._now()
                        run.set(step, StepStatus.SKIPPED)
                        run.events.append(
                            self.event(
                                ev.WorkflowStepSkipped(workflow_id=wf.id, step_id=sid, when=definition.when),
                                wf,
                            )
                        )
                        continue
                self._start_step(run, step)
        self._update_progress(run)
        self._maybe_finish(run)

    def _start_step(self, run: WorkflowRun, step: WorkflowStepRow) -> None:
        wf = run.wf
        definition = run.defs[step.step_id]
        try:
            template = compile_template(definition.task)
            task = template.render({} if template.is_static else run.variables())
        except ExpressionError as exc:
            self._step_failed(run, step, f"task template: {exc}")
            return
        spec = self._step_spec(run, definition)
        member = new_member(
            run.source,
            role="step",
            task=task,
            spec=spec,
            team_id=spec.pop("teamId", None) or wf.team_id,
            workflow_id=wf.id,
            step_id=step.step_id,
            position=step.position,
            attempt=step.retry_count,
        )
        run.effects.launch.append(member.id)
        step.started_at = self._now()
        step.agent_id = None
        step.error = None
        run.set(step, StepStatus.RUNNING)
        wf.current_step_id = step.step_id
        run.events.append(
            self.event(
                ev.WorkflowStepStarted(
                    workflow_id=wf.id, step_id=step.step_id, attempt=step.retry_count, member_id=member.id
                ),
                wf,
            )
        )

    def _step_spec(self, run: WorkflowRun, step: workflow_pb2.StepDefinition) -> dict[str, Any]:
        d = run.definition
        template: dict[str, Any] = dict(run.agent_templates.get(step.agent) or {})
        runtime = step.runtime or d.runtime or template.get("runtime") or self._settings.team_runtime
        command = list(step.command) or list(d.command) or list(template.get("command") or [])
        if runtime == "command" and not command:
            command = list(self._settings.team_command)
        selector = step.agent_selector
        spec: dict[str, Any] = {
            "runtime": runtime,
            "command": command,
            "model": selector.model or d.model or template.get("model", ""),
            "repo": d.repo or template.get("repo", ""),
            "endpoint": template.get("endpoint", ""),
            "label": (selector.label or f"{run.wf.name}/{step.id}")[:255],
            "maxRetries": 0,
            "context": {"workflowId": run.wf.id, "stepId": step.id},
        }
        if selector.skills:
            spec["metadata"] = {"skills": list(selector.skills)}
        if selector.team_id:
            spec["teamId"] = selector.team_id
        if step.timeout > 0:
            spec["timeoutSeconds"] = step.timeout
        return spec

    def _step_failed(self, run: WorkflowRun, step: WorkflowStepRow, error: str) -> None:
        wf, d = run.wf, run.definition
        definition = run.defs[step.step_id]
        allowed = definition.retries
        if not allowed and d.on_error == workflow_pb2.ON_ERROR_POLICY_RETRY:
            allowed = d.retry_policy.max_retries if d.HasField("retry_policy") else 3
        step.error = error
        if step.retry_count < allowed and wf.status in UNDERWAY:
            step.retry_count += 1
            delay = backoff_seconds(d.retry_policy if d.HasField("retry_policy") else None, step.retry_count)
            step.next_attempt_at = self._now() + timedelta(seconds=delay)
            run.set(step, StepStatus.RETRYING)
            self.arm(run.effects, wf.id, delay)
            run.events.append(
                self.event(
                    ev.WorkflowStepRetrying(
                        workflow_id=wf.id,
                        step_id=step.step_id,
                        attempt=step.retry_count,
                        delay_seconds=delay,
                        error=error,
                    ),
                    wf,
                )
            )
            return
        step.completed_at = self._now()
        run.set(step, StepStatus.FAILED)
        run.events.append(
            self.event(ev.WorkflowStepFailed(workflow_id=wf.id, step_id=step.step_id, error=error), wf)
        )
        if d.on_error != workflow_pb2.ON_ERROR_POLICY_CONTINUE:
            self.end(run, WorkflowStatus.FAILED, f"step {step.step_id} failed: {error}")

    def _update_progress(self, run: WorkflowRun) -> None:
        total = len(run.state.steps)
        run.wf.progress = int(100 * run.state.count(*FINISHED) / total) if total else 100

    def _maybe_finish(self, run: WorkflowRun) -> None:
        if run.wf.status != WorkflowStatus.RUNNING:
            return
        if run.state.all_finished():
            failed = [sid for sid, v in run.state.steps.items() if v.status == StepStatus.FAILED]
            self.end(run, WorkflowStatus.COMPLETED, None, failed_steps=failed)

    def end(
        self,
        run: WorkflowRun,
        status: WorkflowStatus,
        error: str | None,
        *,
        failed_steps: list[str] | None = None,
    ) -> None:
        wf = run.wf
        if wf.status in TERMINAL:
            return
        wf.status = status
        wf.error = error
        wf.completed_at = self._now()
        # Written once at the end: rewriting it per step would cost O(steps) per step.
        wf.results = {sid: v.output for sid, v in run.state.steps.items() if v.status == StepStatus.COMPLETED}
        wf.current_step_id = None
        for sid in [sid for sid, v in run.state.steps.items() if v.status in UNFINISHED]:
            run.state.set_status(sid, StepStatus.CANCELLED)
            run.state.version = -1
            run.dirty = True
        run.cancel_unfinished = True
        run.stop_reason = f"workflow {status}"
        self._update_progress(run)
        data = END_EVENTS[status](
            workflow_id=wf.id,
            status=WORKFLOW_STATUS.to_proto(status),
            error=error or "",
            failed_steps=failed_steps or [],
            name=wf.name,
            notify_channels=run.definition.notify_channels,
        )
        run.events.append(self.event(data, wf))
        self.disarm(run.effects, wf.id)

    async def member_ended(self, run: WorkflowRun, member: MemberRow) -> None:
        """A member of the workflow ended. When it runs its step's current attempt, the step
        completes or fails (and may be retried), and whatever can start next starts."""
        assert member.step_id
        # With the rows of the steps its end lets start: one SELECT for what advance() needs.
        await run.load([member.step_id, *self._starting_next(run, member.step_id)])
        step = run.rows.get(member.step_id)
        if step is None or member.attempt != step.retry_count or step.status != StepStatus.RUNNING:
            return
        step.agent_id = member.agent_id
        if member.status == MemberStatus.COMPLETED:
            step.completed_at = self._now()
            step.result = {
                "output": member.result or "",
                "agentId": member.agent_id or "",
                "sessionId": member.session_id or "",
                "cost": member.cost,
            }
            run.set(step, StepStatus.COMPLETED)
            run.events.append(
                self.event(
                    ev.WorkflowStepCompleted(
                        workflow_id=run.wf.id, step_id=step.step_id, agent_id=member.agent_id or ""
                    ),
                    run.wf,
                )
            )
        elif not member.stop_requested:
            self._step_failed(run, step, member.error or f"agent {member.status}")
        if run.wf.status == WorkflowStatus.RUNNING:
            await self.advance(run)

    def _starting_next(self, run: WorkflowRun, step_id: str) -> list[str]:
        """The steps advance() will start once the running `step_id` ends, as far as known now:
        none while ready steps wait for a slot (they go first), else those its end unblocks, in
        order, up to the slots free then."""
        if run.state.any_ready():
            return []
        free = concurrency(run.definition) - (run.state.count(StepStatus.RUNNING) - 1)
        return sorted(run.state.unblocked_by(step_id), key=run.dag.rank)[: max(0, free)]

    def arm(self, effects: Effects, workflow_id: str, delay: float) -> None:
        effects.after.append(lambda: self._on_arm(workflow_id, delay))

    def disarm(self, effects: Effects, workflow_id: str) -> None:
        effects.after.append(lambda: self._on_disarm(workflow_id))
