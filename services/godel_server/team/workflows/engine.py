"""WorkflowEngine (spec §4.1): durable DAG execution. Workflow and step states live in the
database and every decision commits with the state it is based on, so the replica that takes a
workflow over (a restarted one, or another: team/replicas.py) carries on from the stored states:
completed steps are never run again, steps whose agents were decided are (idempotently) launched,
and retry timers and deadlines are re-armed."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2, workflow_pb2
from godel.v1 import workflow_events_pb2 as ev
from godel_server.runtime.config import Settings
from godel_server.runtime.db import Database
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError
from godel_server.runtime.ownership import Owner
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.row_locks import locked
from godel_server.runtime.statuses import StepStatus, WorkflowStatus
from godel_server.team.members import ACTIVE, BatchMember, Effects, Members
from godel_server.team.models import WITHOUT_DEFINITION, MemberRow, WorkflowRow, WorkflowStepRow
from godel_server.team.owners import same_request
from godel_server.team.timers import Timers
from godel_server.team.workflows.dag import Dag
from godel_server.team.workflows.definition import concurrency
from godel_server.team.workflows.mapping import AGENT_TEMPLATES
from godel_server.team.workflows.scheduler import (
    TERMINAL,
    UNDERWAY,
    UNFINISHED,
    ParsedDefinition,
    Scheduler,
    StepStates,
    WorkflowRun,
    new_steps,
)

log = logging.getLogger(__name__)

RUNS_KEY = "godel.workflow_runs"
_STEP_ROWS = "godel.workflow_step_rows"


class WorkflowNotFoundError(NotFoundError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__("workflow", workflow_id)


class WorkflowEngine:
    def __init__(self, settings: Settings, db: Database, publisher: EventPublisher, members: Members) -> None:
        self._settings = settings
        self._db = db
        self._publisher = publisher
        self._members = members
        self._parsed: dict[str, ParsedDefinition] = {}
        self._states: dict[str, StepStates] = {}
        self._timers = Timers(self.wake)
        self._scheduler = Scheduler(settings, arm=self._timers.arm, disarm=self._forget)

    # -- helpers -----------------------------------------------------------------------------

    def event(self, data: Message, wf: WorkflowRow) -> event_pb2.Event:
        return self._scheduler.event(data, wf)

    async def _parse(self, session: AsyncSession, workflow_id: str) -> ParsedDefinition:
        parsed = self._parsed.get(workflow_id)
        if parsed is None:
            stored = await session.scalar(select(WorkflowRow.definition).where(WorkflowRow.id == workflow_id))
            definition = json_format.ParseDict(
                stored or {}, workflow_pb2.WorkflowDefinition(), ignore_unknown_fields=True
            )
            parsed = self._parsed[workflow_id] = ParsedDefinition(
                definition,
                {s.id: s for s in definition.steps},
                Dag.from_definition(definition),
                dict((stored or {}).get(AGENT_TEMPLATES) or {}),
            )
        return parsed

    async def _open(self, session: AsyncSession, workflow_id: str, effects: Effects) -> WorkflowRun:
        """The workflow and its steps, locked; loaded once per transaction (a consumer batch with
        many completions of one workflow reuses what the first one loaded)."""
        runs: dict[str, WorkflowRun] = session.info.setdefault(RUNS_KEY, {})
        run = runs.get(workflow_id)
        if run is not None and run.effects is effects:
            return run
        wf = await _locked(session, workflow_id)
        if wf is None:
            raise WorkflowNotFoundError(workflow_id)
        parsed = await self._parse(session, workflow_id)
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
            state = self._states[workflow_id] = StepStates.of(wf.version, parsed.dag, rows)
        run = runs[workflow_id] = WorkflowRun(_SessionSteps(session), wf, state, parsed, effects, rows)
        return run

    async def _commit(self, session: AsyncSession, run: WorkflowRun) -> None:
        """Stops what must stop and publishes the run's events (still inside its transaction); this
        replica drives the workflow from now on (team/replicas.py)."""
        if run.wf.replica != self._settings.instance_id:
            await self._take(
                session,
                run.wf,
                run.effects,
                timers=bool(run.wf.deadline_at) or bool(run.state.count(StepStatus.RETRYING)),
            )
        if run.cancel_unfinished:
            await session.execute(
                update(WorkflowStepRow)
                .where(WorkflowStepRow.workflow_id == run.wf.id, WorkflowStepRow.status.in_(UNFINISHED))
                .values(status=StepStatus.CANCELLED, completed_at=run.wf.completed_at)
                .execution_options(synchronize_session="evaluate")
            )
            run.cancel_unfinished = False
        if run.stop_reason is not None:
            for member in await self._active_members(session, run.wf.id):
                run.effects.stop(member, run.stop_reason)
        if run.dirty:
            run.wf.version += 1
            run.state.version = run.wf.version
            run.dirty = False
        if run.events:
            await self._publisher.publish(session, run.events)
        run.events = []
        run.stop_reason = None

    async def _take(self, session: AsyncSession, wf: WorkflowRow, effects: Effects, *, timers: bool) -> None:
        """This replica drives `wf` from now on: it makes the agent calls the workflow's members may
        still be owed, and (`timers`) wakes it to arm its timers here."""
        wf.replica = self._settings.instance_id
        await self._members.owed(session, effects, workflow_id=wf.id)
        if timers and wf.status in UNDERWAY:
            self._scheduler.arm(effects, wf.id, 0.0)

    async def adopt(self, workflow_id: str, orphaned: Callable[[str | None], bool]) -> bool:
        """Takes over a workflow whose replica is gone (team/replicas.py); False when it is not
        `orphaned` any more."""
        effects = Effects()
        async with self._db.session() as session:
            wf = await _locked(session, workflow_id)
            if wf is None or not orphaned(wf.replica):
                return False
            await self._take(session, wf, effects, timers=True)
        self._members.apply(effects)
        return True

    async def _active_members(self, session: AsyncSession, workflow_id: str) -> list[MemberRow]:
        return list(
            (
                await session.scalars(
                    select(MemberRow).where(
                        MemberRow.workflow_id == workflow_id,
                        MemberRow.status.in_(ACTIVE),
                    )
                )
            ).all()
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def create(
        self, session: AsyncSession, wf: WorkflowRow, definition: workflow_pb2.WorkflowDefinition
    ) -> None:
        session.add(wf)
        session.add_all(new_steps(wf, definition))
        await self._publisher.publish(
            session,
            [
                self.event(
                    ev.WorkflowCreated(workflow_id=wf.id, name=wf.name, steps=len(definition.steps)), wf
                )
            ],
        )

    async def add(self, wf: WorkflowRow, definition: workflow_pb2.WorkflowDefinition) -> str:
        """Stores a new workflow (see `create`); a repeated request_id gives back the id of the
        workflow it created."""

        async def find(session: AsyncSession) -> str | None:
            mine = same_request(WorkflowRow, wf.request_id or "", Owner(wf.user_id, wf.user_team_id))
            return await session.scalar(select(WorkflowRow.id).where(mine))

        async def create(session: AsyncSession) -> str:
            await self.create(session, wf, definition)
            return wf.id

        return await self._db.create_once(wf.request_id or "", find, create)

    async def start(self, workflow_id: str) -> None:
        effects = Effects()
        async with self._db.session() as session:
            run = await self._open(session, workflow_id, effects)
            if not await self._scheduler.start(run):
                return
            await self._commit(session, run)
        self._members.apply(effects)

    # -- member events ---------------------------------------------------------------------------

    async def read_steps(self, session: AsyncSession, batch: Iterable[BatchMember]) -> None:
        """Reads the step rows a batch of member events will touch, in one SELECT per workflow:
        each member's step and, where its agent ends, the steps that may start then (those its
        end unblocks, and the ready ones waiting for a slot), as far as this replica knows the
        workflow's state. The engine then finds them in the transaction (`_SessionSteps`)."""
        wanted: dict[str, set[str]] = {}
        ending: Counter[str] = Counter()
        for member, ends in ((b.member, b.ends) for b in batch):
            if not (member.workflow_id and member.step_id):
                continue
            ids = wanted.setdefault(member.workflow_id, set())
            ids.add(member.step_id)
            state, parsed = self._states.get(member.workflow_id), self._parsed.get(member.workflow_id)
            if ends and state is not None and parsed is not None:
                ids.update(state.unblocked_by(member.step_id)[: concurrency(parsed.definition)])
                ending[member.workflow_id] += 1
        for workflow_id, ended in ending.items():
            # The ready steps that can get a slot: the free ones, and one per step that ends.
            state, parsed = self._states[workflow_id], self._parsed[workflow_id]
            slots = max(0, concurrency(parsed.definition) - state.count(StepStatus.RUNNING)) + ended
            wanted[workflow_id].update(state.ready()[:slots])
        for workflow_id, step_ids in wanted.items():
            await _SessionSteps(session).steps(workflow_id, sorted(step_ids))

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
            found = await _SessionSteps(session).steps(member.workflow_id, [member.step_id])
            step = found[0] if found else None
            if step is not None and step.status == StepStatus.RUNNING and member.attempt == step.retry_count:
                step.agent_id = member.agent_id or step.agent_id
            if trigger is not None and trigger.type == "agent:start" and member.agent_id:
                wf = await session.get(WorkflowRow, member.workflow_id, options=[WITHOUT_DEFINITION])
                if wf is not None and wf.status == WorkflowStatus.PAUSED:
                    # Launched before the pause reached it: it pauses now.
                    effects.pause.append(member.agent_id)
            return
        try:
            run = await self._open(session, member.workflow_id, effects)
        except WorkflowNotFoundError:
            return  # deleted (its running steps' agents were stopped): nothing is left to advance
        await self._scheduler.member_ended(run, member)
        await self._commit(session, run)

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
            self._scheduler.end(run, WorkflowStatus.CANCELLED, reason or "cancelled")
            await self._commit(session, run)
        self._members.apply(effects)

    async def delete(self, workflow_id: str) -> None:
        """Deletes a workflow, stopping its running steps' agents first."""
        effects = Effects()
        async with self._db.session() as session:
            run = await self._open(session, workflow_id, effects)
            if run.wf.status not in TERMINAL:
                self._scheduler.end(run, WorkflowStatus.CANCELLED, "workflow deleted")
            await self._commit(session, run)
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
        running, paused = WorkflowStatus.RUNNING, WorkflowStatus.PAUSED
        source, target = (running, paused) if verb == "pause" else (paused, running)
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
            kind = ev.WorkflowPaused if verb == "pause" else ev.WorkflowResumed
            run.events.append(self.event(kind(workflow_id=workflow_id), run.wf))
            if target == WorkflowStatus.RUNNING:
                await self._scheduler.advance(run)
            await self._commit(session, run)
        self._members.apply(effects)

    # -- timers ----------------------------------------------------------------------------------

    def _forget(self, workflow_id: str) -> None:
        """A workflow ended: no more timers, and its cached definition and steps go."""
        self._timers.disarm(workflow_id)
        self._parsed.pop(workflow_id, None)
        self._states.pop(workflow_id, None)

    async def wake(self, workflow_id: str) -> None:
        """Due retries become pending again; a passed deadline fails the workflow."""
        effects = Effects()
        try:
            async with self._db.session() as session:
                run = await self._open(session, workflow_id, effects)
                if run.wf.status not in UNDERWAY:
                    return
                if run.wf.replica not in (None, self._settings.instance_id):
                    # Another replica drives it now, with timers of its own.
                    self._states.pop(workflow_id, None)
                    return
                await self._scheduler.wake(run)
                await self._commit(session, run)
        except WorkflowNotFoundError:
            return
        except Exception:
            log.exception("workflow wake-up failed; retrying", extra={"workflowId": workflow_id})
            self._timers.arm(workflow_id, 1.0)
            return
        self._members.apply(effects)

    async def stop(self) -> None:
        await self._timers.stop()


async def _locked(session: AsyncSession, workflow_id: str) -> WorkflowRow | None:
    """The workflow's row, locked and fresh (once per transaction: the member's lock may have taken
    it already); its definition (large, immutable) is parsed once per process, not loaded per event."""
    return await locked(session, WorkflowRow, workflow_id, WITHOUT_DEFINITION)


class _SessionSteps:
    """The engine's StepSource: step rows from the transaction's session, each read once per
    transaction (`read_steps` reads a batch's ahead)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        sync = session.sync_session
        held = sync.info.get(_STEP_ROWS)
        if held is None or held[0] is not sync.get_transaction():
            held = sync.info[_STEP_ROWS] = (sync.get_transaction(), {})
        self._read: dict[tuple[str, str], WorkflowStepRow] = held[1]

    def add(self, instance: object) -> None:
        self._session.add(instance)

    async def steps(self, workflow_id: str, step_ids: list[str]) -> list[WorkflowStepRow]:
        missing = [sid for sid in step_ids if (workflow_id, sid) not in self._read]
        if missing:
            for row in await self._select(workflow_id, missing):
                self._read[(workflow_id, row.step_id)] = row
        return [found for sid in step_ids if (found := self._read.get((workflow_id, sid))) is not None]

    async def _select(self, workflow_id: str, step_ids: list[str]) -> Sequence[WorkflowStepRow]:
        # Without flushing first: step rows are only added with their workflow, so the ones not
        # in the session yet are as stored, and the session's copies keep their changes (not
        # `populate_existing`). A batch's changes are then flushed together, as one statement per
        # table and column set, instead of a flush per completion.
        with self._session.no_autoflush:
            found = await self._session.scalars(
                select(WorkflowStepRow).where(
                    WorkflowStepRow.workflow_id == workflow_id, WorkflowStepRow.step_id.in_(step_ids)
                )
            )
            return found.all()
