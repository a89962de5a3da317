"""WorkflowEngine (spec §4.1): durable DAG execution. Workflow and step states live in the
database and every decision commits with the state it is based on, so a restarted team service
carries on from the stored states: completed steps are never run again, steps whose agents were
decided are (idempotently) launched, and retry timers and deadlines are re-armed."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf import json_format
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from godel.v1 import event_pb2, workflow_pb2
from godel_server.runtime.config import Settings
from godel_server.runtime.db import Database
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError
from godel_server.runtime.events import utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.team.events import service_event
from godel_server.team.members import Effects, Members, new_member
from godel_server.team.models import MemberRow, WorkflowRow, WorkflowStepRow
from godel_server.team.timers import Timers
from godel_server.team.workflows.dag import Dag, backoff_seconds
from godel_server.team.workflows.expressions import ExpressionError, compile_expression
from godel_server.team.workflows.templates import compile_template

log = logging.getLogger(__name__)

FINISHED = frozenset({"completed", "failed", "skipped", "cancelled"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})
UNFINISHED = ("pending", "retrying", "running")
AGENT_TEMPLATES = "_agentTemplates"
RUNS_KEY = "godel.workflow_runs"


class WorkflowNotFoundError(NotFoundError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__("workflow", workflow_id)


@dataclass(frozen=True)
class _Parsed:
    """A workflow's definition as the engine uses it (parsed once per process: it never changes)."""

    definition: workflow_pb2.WorkflowDefinition
    steps: dict[str, workflow_pb2.StepDefinition]
    dag: Dag
    # Agent configs of the steps that name a specific agent (resolved at creation).
    agent_templates: dict[str, Any]


@dataclass
class _StepView:
    """What the scheduler, conditions and templates need of one step."""

    status: str
    output: str = ""
    error: str = ""
    agent_id: str = ""


@dataclass
class _State:
    """The steps of one workflow as of `version` of its row. Kept between transactions so an event
    touches only the step rows it changes; any transaction that changes steps bumps the row's
    version, so a view that missed a change (or saw one that was rolled back) is reloaded."""

    version: int
    steps: dict[str, _StepView]

    @classmethod
    def of(cls, version: int, rows: list[WorkflowStepRow]) -> _State:
        return cls(version, {r.step_id: _view(r) for r in rows})

    def statuses(self) -> dict[str, str]:
        return {sid: v.status for sid, v in self.steps.items()}

    def count(self, *statuses: str) -> int:
        return sum(1 for v in self.steps.values() if v.status in statuses)


def _view(row: WorkflowStepRow) -> _StepView:
    return _StepView(row.status, (row.result or {}).get("output", ""), row.error or "", row.agent_id or "")


class _Run:
    """One workflow inside a transaction: its row (locked), its step view, and the step rows
    loaded so far."""

    def __init__(
        self,
        session: AsyncSession,
        wf: WorkflowRow,
        state: _State,
        parsed: _Parsed,
        effects: Effects,
        rows: list[WorkflowStepRow] | None = None,
    ) -> None:
        self.session = session
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
            found = await self.session.scalars(
                select(WorkflowStepRow).where(
                    WorkflowStepRow.workflow_id == self.wf.id, WorkflowStepRow.step_id.in_(missing)
                )
            )
            self.rows.update((r.step_id, r) for r in found)

    def set(self, row: WorkflowStepRow, status: str) -> None:
        """Changes a step's status in its row and in the view."""
        row.status = status
        self.touch(row)

    def touch(self, row: WorkflowStepRow) -> None:
        """Records a change of a step row in the view (the view is invalid until the commit)."""
        self.state.steps[row.step_id] = _view(row)
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


class WorkflowEngine:
    def __init__(self, settings: Settings, db: Database, publisher: EventPublisher, members: Members) -> None:
        self._settings = settings
        self._db = db
        self._publisher = publisher
        self._members = members
        self._parsed: dict[str, _Parsed] = {}
        self._states: dict[str, _State] = {}
        self._timers = Timers(self.wake)

    # -- helpers -----------------------------------------------------------------------------

    def event(self, event_type: str, wf: WorkflowRow, payload: dict[str, Any]) -> event_pb2.Event:
        return service_event(
            self._settings.instance_id,
            event_type,
            {"workflowId": wf.id, **payload},
            key=wf.id,
            workflow_id=wf.id,
            team_id=wf.team_id or "",
        )

    async def _parse(self, session: AsyncSession, workflow_id: str) -> _Parsed:
        parsed = self._parsed.get(workflow_id)
        if parsed is None:
            stored = await session.scalar(select(WorkflowRow.definition).where(WorkflowRow.id == workflow_id))
            definition = json_format.ParseDict(
                stored or {}, workflow_pb2.WorkflowDefinition(), ignore_unknown_fields=True
            )
            parsed = self._parsed[workflow_id] = _Parsed(
                definition,
                {s.id: s for s in definition.steps},
                Dag.from_definition(definition),
                dict((stored or {}).get(AGENT_TEMPLATES) or {}),
            )
        return parsed

    async def _open(self, session: AsyncSession, workflow_id: str, effects: Effects) -> _Run:
        """The workflow and its steps, locked; loaded once per transaction (a consumer batch with
        many completions of one workflow reuses what the first one loaded)."""
        runs: dict[str, _Run] = session.info.setdefault(RUNS_KEY, {})
        run = runs.get(workflow_id)
        if run is not None and run.effects is effects:
            return run
        # The definition (large, immutable) is parsed once per process, not loaded per event.
        wf = await session.get(
            WorkflowRow,
            workflow_id,
            with_for_update=True,
            populate_existing=True,
            options=[defer(WorkflowRow.definition)],
        )
        if wf is None:
            raise WorkflowNotFoundError(workflow_id)
        state = self._states.get(workflow_id)
        rows: list[WorkflowStepRow] | None = None
        if state is None or state.version != wf.version:
            rows = list(
                (
                    await session.scalars(
                        select(WorkflowStepRow).where(WorkflowStepRow.workflow_id == workflow_id)
                    )
                ).all()
            )
            state = self._states[workflow_id] = _State.of(wf.version, rows)
        run = runs[workflow_id] = _Run(
            session, wf, state, await self._parse(session, workflow_id), effects, rows
        )
        return run

    async def _commit(self, run: _Run) -> None:
        """Stops what must stop and publishes the run's events (still inside its transaction)."""
        if run.cancel_unfinished:
            await run.session.execute(
                update(WorkflowStepRow)
                .where(WorkflowStepRow.workflow_id == run.wf.id, WorkflowStepRow.status.in_(UNFINISHED))
                .values(status="cancelled", completed_at=run.wf.completed_at)
                .execution_options(synchronize_session="evaluate")
            )
            run.cancel_unfinished = False
        if run.stop_reason is not None:
            for member in await self._active_members(run.session, run.wf.id):
                run.effects.stop(member, run.stop_reason)
        if run.dirty:
            run.wf.version += 1
            run.state.version = run.wf.version
            run.dirty = False
        if run.events:
            await self._publisher.publish(run.session, run.events)
        run.events = []
        run.stop_reason = None

    async def _active_members(self, session: AsyncSession, workflow_id: str) -> list[MemberRow]:
        return list(
            (
                await session.scalars(
                    select(MemberRow).where(
                        MemberRow.workflow_id == workflow_id,
                        MemberRow.status.in_(("launching", "running", "paused")),
                    )
                )
            ).all()
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def create(
        self, session: AsyncSession, wf: WorkflowRow, definition: workflow_pb2.WorkflowDefinition
    ) -> None:
        session.add(wf)
        for i, step in enumerate(definition.steps):
            session.add(
                WorkflowStepRow(
                    id=str(uuid.uuid4()),
                    workflow_id=wf.id,
                    step_id=step.id,
                    position=i,
                    name=step.name or step.id,
                    task=step.task,
                    dependencies=list(step.depends_on),
                    status="pending",
                    retry_count=0,
                )
            )
        await self._publisher.publish(
            session, [self.event("workflow:create", wf, {"name": wf.name, "steps": len(definition.steps)})]
        )

    async def start(self, workflow_id: str) -> None:
        effects = Effects()
        async with self._db.session() as session:
            run = await self._open(session, workflow_id, effects)
            wf = run.wf
            if wf.status != "pending":
                if wf.status in ("running", "paused"):
                    return
                raise FailedPreconditionError(
                    f"cannot start workflow {workflow_id}: it is {wf.status}",
                    metadata={"workflowId": workflow_id, "currentState": wf.status},
                )
            now = utcnow()
            wf.status = "running"
            wf.started_at = now
            if run.definition.timeout > 0:
                wf.deadline_at = now + timedelta(seconds=run.definition.timeout)
                self._arm(effects, wf.id, float(run.definition.timeout))
            run.events.append(self.event("workflow:start", wf, {"steps": len(run.dag)}))
            await self._advance(run)
            await self._commit(run)
        self._members.apply(effects)

    async def _advance(self, run: _Run) -> None:
        """Starts every step that can start now, skips the ones whose condition is false, and
        ends the workflow when nothing is left."""
        wf = run.wf
        limit = run.definition.max_concurrency or len(run.dag)
        while wf.status == "running":
            running = run.state.count("running")
            ready = run.dag.ready(run.state.statuses()) if running < limit else []
            if not ready:
                break
            batch = ready[: limit - running]
            await run.load(batch)
            for sid in batch:
                if wf.status != "running":
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
                        step.completed_at = utcnow()
                        run.set(step, "skipped")
                        run.events.append(
                            self.event("workflow:step:skip", wf, {"stepId": sid, "when": definition.when})
                        )
                        continue
                self._start_step(run, step)
        self._update_progress(run)
        self._maybe_finish(run)

    def _start_step(self, run: _Run, step: WorkflowStepRow) -> None:
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
            run.session,
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
        step.started_at = utcnow()
        step.agent_id = None
        step.error = None
        run.set(step, "running")
        wf.current_step_id = step.step_id
        run.events.append(
            self.event(
                "workflow:step:start",
                wf,
                {"stepId": step.step_id, "attempt": step.retry_count, "memberId": member.id},
            )
        )

    def _step_spec(self, run: _Run, step: workflow_pb2.StepDefinition) -> dict[str, Any]:
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

    def _step_failed(self, run: _Run, step: WorkflowStepRow, error: str) -> None:
        wf, d = run.wf, run.definition
        definition = run.defs[step.step_id]
        allowed = definition.retries
        if not allowed and d.on_error == workflow_pb2.ON_ERROR_POLICY_RETRY:
            allowed = d.retry_policy.max_retries if d.HasField("retry_policy") else 3
        step.error = error
        if step.retry_count < allowed and wf.status in ("running", "paused"):
            step.retry_count += 1
            delay = backoff_seconds(d.retry_policy if d.HasField("retry_policy") else None, step.retry_count)
            step.next_attempt_at = utcnow() + timedelta(seconds=delay)
            run.set(step, "retrying")
            self._arm(run.effects, wf.id, delay)
            run.events.append(
                self.event(
                    "workflow:step:retry",
                    wf,
                    {
                        "stepId": step.step_id,
                        "attempt": step.retry_count,
                        "delaySeconds": delay,
                        "error": error,
                    },
                )
            )
            return
        step.completed_at = utcnow()
        run.set(step, "failed")
        run.events.append(self.event("workflow:step:error", wf, {"stepId": step.step_id, "error": error}))
        if d.on_error != workflow_pb2.ON_ERROR_POLICY_CONTINUE:
            self._end(run, "failed", f"step {step.step_id} failed: {error}")

    def _update_progress(self, run: _Run) -> None:
        total = len(run.state.steps)
        run.wf.progress = int(100 * run.state.count(*FINISHED) / total) if total else 100

    def _maybe_finish(self, run: _Run) -> None:
        if run.wf.status != "running":
            return
        statuses = run.state.statuses()
        if all(s in FINISHED for s in statuses.values()):
            failed = [sid for sid, s in statuses.items() if s == "failed"]
            self._end(run, "completed", None, failed_steps=failed)

    def _end(
        self, run: _Run, status: str, error: str | None, *, failed_steps: list[str] | None = None
    ) -> None:
        wf = run.wf
        if wf.status in TERMINAL:
            return
        wf.status = status
        wf.error = error
        wf.completed_at = utcnow()
        # Written once at the end: rewriting it per step would cost O(steps) per step.
        wf.results = {sid: v.output for sid, v in run.state.steps.items() if v.status == "completed"}
        wf.current_step_id = None
        for view in run.state.steps.values():
            if view.status in UNFINISHED:
                view.status = "cancelled"
                run.state.version = -1
                run.dirty = True
        run.cancel_unfinished = True
        run.stop_reason = f"workflow {status}"
        self._update_progress(run)
        event_type = {
            "completed": "workflow:complete",
            "failed": "workflow:error",
            "cancelled": "workflow:cancel",
        }[status]
        run.events.append(
            self.event(
                event_type, wf, {"status": status, "error": error or "", "failedSteps": failed_steps or []}
            )
        )
        self._disarm(run.effects, wf.id)

    # -- member events ---------------------------------------------------------------------------

    async def member_changed(
        self,
        session: AsyncSession,
        member: MemberRow,
        ended: bool,
        trigger: event_pb2.Event | None,
        effects: Effects,
    ) -> None:
        assert member.workflow_id and member.step_id
        if not ended:
            # Only the step's agent id can change: no need to load the whole workflow.
            step = await session.scalar(
                select(WorkflowStepRow).where(
                    WorkflowStepRow.workflow_id == member.workflow_id,
                    WorkflowStepRow.step_id == member.step_id,
                )
            )
            if step is not None and step.status == "running" and member.attempt == step.retry_count:
                step.agent_id = member.agent_id or step.agent_id
            if trigger is not None and trigger.type == "agent:start" and member.agent_id:
                wf = await session.get(
                    WorkflowRow, member.workflow_id, options=[defer(WorkflowRow.definition)]
                )
                if wf is not None and wf.status == "paused":
                    # Launched before the pause reached it: it pauses now.
                    effects.pause.append(member.agent_id)
            return
        run = await self._open(session, member.workflow_id, effects)
        await run.load([member.step_id])
        step = run.rows.get(member.step_id)
        if step is None or member.attempt != step.retry_count or step.status != "running":
            return
        step.agent_id = member.agent_id
        if member.status == "completed":
            step.completed_at = utcnow()
            step.result = {
                "output": member.result or "",
                "agentId": member.agent_id or "",
                "sessionId": member.session_id or "",
                "cost": member.cost,
            }
            run.set(step, "completed")
            run.events.append(
                self.event(
                    "workflow:step:complete",
                    run.wf,
                    {"stepId": step.step_id, "agentId": member.agent_id or ""},
                )
            )
        elif not member.stop_requested:
            self._step_failed(run, step, member.error or f"agent {member.status}")
        if run.wf.status == "running":
            await self._advance(run)
        await self._commit(run)

    # -- control ---------------------------------------------------------------------------------

    async def cancel(self, workflow_id: str, reason: str) -> None:
        effects = Effects()
        async with self._db.session() as session:
            run = await self._open(session, workflow_id, effects)
            if run.wf.status in TERMINAL:
                raise FailedPreconditionError(
                    f"cannot cancel workflow {workflow_id}: it is {run.wf.status}",
                    metadata={"workflowId": workflow_id, "currentState": run.wf.status},
                )
            self._end(run, "cancelled", reason or "cancelled")
            await self._commit(run)
        self._members.apply(effects)

    async def delete(self, workflow_id: str) -> None:
        """Deletes a workflow, stopping its running steps' agents first."""
        effects = Effects()
        async with self._db.session() as session:
            run = await self._open(session, workflow_id, effects)
            if run.wf.status not in TERMINAL:
                self._end(run, "cancelled", "workflow deleted")
            await self._commit(run)
            await session.execute(delete(WorkflowStepRow).where(WorkflowStepRow.workflow_id == workflow_id))
            await session.delete(run.wf)
            self._states.pop(workflow_id, None)
        self._members.apply(effects)

    async def pause(self, workflow_id: str) -> None:
        await self._control(workflow_id, "pause")

    async def resume(self, workflow_id: str) -> None:
        await self._control(workflow_id, "resume")

    async def _control(self, workflow_id: str, verb: str) -> None:
        effects = Effects()
        source, target = ("running", "paused") if verb == "pause" else ("paused", "running")
        async with self._db.session() as session:
            run = await self._open(session, workflow_id, effects)
            if run.wf.status == target:
                return
            if run.wf.status != source:
                raise FailedPreconditionError(
                    f"cannot {verb} workflow {workflow_id}: it is {run.wf.status}",
                    metadata={"workflowId": workflow_id, "currentState": run.wf.status, "action": verb},
                )
            run.wf.status = target
            for member in await self._active_members(session, workflow_id):
                if member.agent_id:
                    (effects.pause if verb == "pause" else effects.resume).append(member.agent_id)
            run.events.append(self.event(f"workflow:{verb}", run.wf, {}))
            if target == "running":
                await self._advance(run)
            await self._commit(run)
        self._members.apply(effects)

    # -- timers ----------------------------------------------------------------------------------

    def _arm(self, effects: Effects, workflow_id: str, delay: float) -> None:
        effects.after.append(lambda: self._timers.arm(workflow_id, delay))

    def _disarm(self, effects: Effects, workflow_id: str) -> None:
        def disarm() -> None:
            self._timers.disarm(workflow_id)
            self._parsed.pop(workflow_id, None)
            self._states.pop(workflow_id, None)

        effects.after.append(disarm)

    async def wake(self, workflow_id: str) -> None:
        """Due retries become pending again; a passed deadline fails the workflow."""
        effects = Effects()
        try:
            async with self._db.session() as session:
                run = await self._open(session, workflow_id, effects)
                wf = run.wf
                if wf.status not in ("running", "paused"):
                    return
                now = utcnow()
                if wf.deadline_at is not None and wf.deadline_at <= now:
                    self._end(run, "failed", f"workflow timed out after {run.definition.timeout}s")
                else:
                    later: list[float] = []
                    await run.load([sid for sid, v in run.state.steps.items() if v.status == "retrying"])
                    for step in run.rows.values():
                        if step.status != "retrying" or step.next_attempt_at is None:
                            continue
                        if step.next_attempt_at <= now:
                            step.next_attempt_at = None
                            run.set(step, "pending")
                        else:
                            later.append((step.next_attempt_at - now).total_seconds())
                    if wf.deadline_at is not None:
                        later.append((wf.deadline_at - now).total_seconds())
                    if later:
                        self._arm(effects, wf.id, min(later))
                    if wf.status == "running":
                        await self._advance(run)
                await self._commit(run)
        except WorkflowNotFoundError:
            return
        except Exception:
            log.exception("workflow wake-up failed; retrying", extra={"workflowId": workflow_id})
            self._timers.arm(workflow_id, 1.0)
            return
        self._members.apply(effects)

    async def recover(self) -> None:
        """After a restart: re-arm every unfinished workflow (retries, deadlines, ready steps)."""
        async with self._db.reader() as session:
            ids = (
                await session.scalars(
                    select(WorkflowRow.id).where(WorkflowRow.status.in_(("running", "paused")))
                )
            ).all()
        for workflow_id in ids:
            await self.wake(workflow_id)

    async def stop(self) -> None:
        await self._timers.stop()
