"""The execution strategies (spec §4.1 TeamOrchestrator): which members a team spawns, what each
finished member leads to, when the team is done, and how it scales. A strategy is named by its value
of the proto's ExecutionStrategy (`kind`); its stored and printed name is derived from that value.
Adding one: the proto value, a subclass here, and its entry in STRATEGIES (docs/contributing.md)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from godel.v1 import team_pb2, team_service_pb2
from godel_server.runtime.statuses import TeamStatus
from godel_server.runtime.validation import Violations
from godel_server.team.members import ACTIVE, ENDED, Effects, Session, new_member
from godel_server.team.models import MemberRow, MemberStatus, TeamRow
from godel_server.team.teams.mapping import STRATEGY
from godel_server.team.teams.parsing import parse_items, parse_subtasks

DEFAULT_MAX_DEPTH = 2
DEFAULT_MEMBER_RETRIES = 1
# Members that ended without completing.
FAILED = (MemberStatus.FAILED, MemberStatus.KILLED)
# A team that is running: its members work, or wait for it to resume.
RUNNING = (TeamStatus.ACTIVE, TeamStatus.PAUSED)


COMPLETED = MemberStatus.COMPLETED


@dataclass(frozen=True)
class Outcome:
    status: TeamStatus  # completed | failed
    error: str | None = None

    @classmethod
    def completed(cls) -> Outcome:
        return cls(TeamStatus.COMPLETED)

    @classmethod
    def failed(cls, error: str) -> Outcome:
        return cls(TeamStatus.FAILED, error)


@dataclass(frozen=True)
class Scaled:
    """What scaling a team did: its size before, and the members it added and stopped."""

    previous: int
    added: list[MemberRow] = field(default_factory=list)
    removed: list[MemberRow] = field(default_factory=list)


@dataclass
class TeamRun:
    """One team with its members inside a transaction; strategies add members through `spawn`."""

    session: Session
    team: TeamRow
    members: list[MemberRow]
    effects: Effects
    member_spec: Callable[[TeamRow, str], dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def live(self) -> list[MemberRow]:
        return [m for m in self.members if not m.superseded]

    def with_role(self, *roles: str) -> list[MemberRow]:
        return [m for m in self.live if m.role in roles]

    @property
    def limit(self) -> int:
        return int(self.team.config.get("maxAgents") or 0)

    @property
    def strategy(self) -> Strategy:
        """The strategy the team runs now (a map-reduce team whose splitter failed runs in parallel)."""
        return STRATEGIES[self.team.effective_strategy or self.team.execution_strategy]

    def start(self) -> None:
        """Starts the team's strategy: its first members queue, and launch while the team is active."""
        self.team.effective_strategy = self.team.execution_strategy
        self.strategy.start(self)
        self.fill()

    def member_ended(self, member: MemberRow) -> None:
        """A member's agent ended: a failed one is replaced while the team's retry policy allows,
        else the strategy decides what follows. Then queued members launch."""
        failed = member.status in FAILED and not member.stop_requested
        retries = (self.team.config.get("retryPolicy") or {}).get("maxRetries")
        allowed = DEFAULT_MEMBER_RETRIES if retries is None else int(retries)
        if failed and member.attempt < allowed and self.team.status in RUNNING:
            member.superseded = True
            replacement = self.spawn(
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
        elif self.team.status in RUNNING:
            self.strategy.member_ended(self, member)
        self.fill()

    def spawn(
        self,
        role: str,
        task: str,
        *,
        position: int = 0,
        input: str | None = None,
        parent: MemberRow | None = None,
        attempt: int = 0,
        context: dict[str, Any] | None = None,
    ) -> MemberRow:
        spec = self.member_spec(self.team, role)
        if context:
            spec["context"] = context
        if parent is not None and parent.session_id:
            spec["parentSessionId"] = parent.session_id
        member = new_member(
            self.session,
            role=role,
            task=task,
            spec=spec,
            team_id=self.team.id,
            position=position,
            input=input,
            parent_id=parent.id if parent else None,
            depth=parent.depth + 1 if parent else 0,
            attempt=attempt,
            queued=True,
        )
        self.members.append(member)
        return member

    def fill(self) -> None:
        """Launches queued members while the team is active and under its `maxAgents`."""
        if self.team.status != TeamStatus.ACTIVE:
            return
        running = sum(1 for m in self.live if m.status in ACTIVE)
        for member in self.live:
            if member.status != MemberStatus.QUEUED:
                continue
            if self.limit and running >= self.limit:
                break
            member.status = MemberStatus.LAUNCHING
            self.effects.launch.append(member.id)
            running += 1


def with_input(task: str, placeholder: str, value: str, label: str) -> str:
    """`task` with {{placeholder}} replaced by `value`, or `value` appended under `label`."""
    marker = "{{" + placeholder + "}}"
    if marker in task:
        return task.replace(marker, value)
    return f"{task}\n\n{label}:\n{value}" if value else task


def all_ended(members: list[MemberRow]) -> bool:
    return bool(members) and all(m.status in ENDED for m in members)


class Strategy(ABC):
    kind: ClassVar[team_pb2.ExecutionStrategy.ValueType]
    # The stored name, derived from `kind` ("map-reduce").
    name: ClassVar[str]
    # ScaleTeam applies to teams of this strategy (see `scale`).
    scalable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = STRATEGY.name(cls.kind)

    def check_create(self, request: team_service_pb2.CreateTeamRequest, v: Violations) -> None:
        """What a CreateTeam request of this strategy must give besides the common fields."""
        if not request.task.strip():
            v.add("task", "is required")

    @abstractmethod
    def start(self, run: TeamRun) -> None: ...

    @abstractmethod
    def member_ended(self, run: TeamRun, member: MemberRow) -> None:
        """A member ended for good (retries are handled before this is called)."""

    @abstractmethod
    def outcome(self, run: TeamRun) -> Outcome | None: ...

    @abstractmethod
    def progress(self, run: TeamRun) -> int: ...

    def results(self, run: TeamRun) -> dict[str, Any]:
        return {m.agent_id or m.id: m.result or "" for m in run.live if m.status == COMPLETED}

    def scale(self, run: TeamRun, target: int) -> Scaled:
        """Changes the team's size to `target` (only called when `scalable`)."""
        raise NotImplementedError(f"{self.name} teams do not scale")


def _share(done: int, total: int) -> float:
    return done / total if total else 0.0


class Parallel(Strategy):
    """One worker per input (or `size` workers on the team task); more workers when scaled up."""

    kind = team_pb2.EXECUTION_STRATEGY_PARALLEL
    scalable = True

    def start(self, run: TeamRun) -> None:
        inputs: list[str] = list(run.team.config.get("inputs") or [])
        if inputs:
            for i, item in enumerate(inputs):
                run.spawn("worker", with_input(run.team.task, "input", item, "Input"), position=i, input=item)
        else:
            for i in range(max(1, int(run.team.config.get("size") or 1))):
                run.spawn("worker", run.team.task, position=i)

    def member_ended(self, run: TeamRun, member: MemberRow) -> None:
        return None

    def outcome(self, run: TeamRun) -> Outcome | None:
        workers = run.with_role("worker")
        if not all_ended(workers):
            return None
        failed = [m for m in workers if m.status != COMPLETED]
        if failed:
            return Outcome.failed(f"{len(failed)} of {len(workers)} members did not complete")
        return Outcome.completed()

    def progress(self, run: TeamRun) -> int:
        workers = run.with_role("worker")
        return int(100 * _share(sum(m.status in ENDED for m in workers), len(workers)))

    def scale(self, run: TeamRun, target: int) -> Scaled:
        workers = run.with_role("worker")
        previous = len(workers)
        added: list[MemberRow] = []
        removed: list[MemberRow] = []
        if target > previous:
            start = max((m.position for m in workers), default=-1) + 1
            added = [run.spawn("worker", run.team.task, position=start + i) for i in range(target - previous)]
        elif target < previous:
            # Finished members keep their results; the newest unfinished ones go.
            unfinished = sorted(
                (m for m in workers if m.status not in ENDED), key=lambda m: m.position, reverse=True
            )
            removed = unfinished[: previous - target]
            for member in removed:
                member.superseded = True
                run.effects.stop(member, "team scaled down")
        run.team.config = {**run.team.config, "size": target}
        return Scaled(previous, added, removed)


class MapReduce(Strategy):
    """inputs (given, or from a splitter agent) -> one mapper each -> one reducer of all results.
    A failed splitter falls back to `parallel` on the team task."""

    kind = team_pb2.EXECUTION_STRATEGY_MAP_REDUCE
    scalable = True

    def start(self, run: TeamRun) -> None:
        inputs: list[str] = list(run.team.config.get("inputs") or [])
        if inputs:
            self._map(run, inputs)
        else:
            task = with_input(
                "Split this task into independent inputs, one per line (or a JSON array): {{input}}",
                "input",
                run.team.task,
                "Task",
            )
            run.spawn("splitter", task)

    def _map(self, run: TeamRun, inputs: list[str]) -> None:
        for i, item in enumerate(inputs):
            run.spawn("mapper", with_input(run.team.task, "input", item, "Input"), position=i, input=item)

    def member_ended(self, run: TeamRun, member: MemberRow) -> None:
        if member.role == "splitter":
            inputs = parse_items(member.result or "") if member.status == COMPLETED else []
            if inputs:
                self._map(run, inputs)
            else:
                run.team.effective_strategy = Parallel.name
                run.notes.append(f"splitter {member.status}: falling back to parallel")
                Parallel().start(run)
            return
        if member.role != "mapper":
            return
        mappers = run.with_role("mapper")
        if all_ended(mappers) and not run.with_role("reducer"):
            done = [m for m in mappers if m.status == COMPLETED]
            if not done:
                return
            results = [
                {"input": m.input, "result": m.result or ""} for m in sorted(done, key=lambda m: m.position)
            ]
            task = with_input(run.team.task, "results", json.dumps(results), "Results of the mappers (JSON)")
            run.spawn("reducer", task, context={"results": results})

    def outcome(self, run: TeamRun) -> Outcome | None:
        if run.team.effective_strategy == Parallel.name:
            return Parallel().outcome(run)
        mappers = run.with_role("mapper")
        if all_ended(mappers) and not any(m.status == COMPLETED for m in mappers):
            return Outcome.failed("every mapper failed")
        reducers = run.with_role("reducer")
        if not all_ended(reducers):
            return None
        if reducers[0].status != COMPLETED:
            return Outcome.failed(f"reducer {reducers[0].status}: {reducers[0].error or ''}".strip())
        return Outcome.completed()

    def progress(self, run: TeamRun) -> int:
        if run.team.effective_strategy == Parallel.name:
            return Parallel().progress(run)
        if all_ended(run.with_role("reducer")):
            return 100
        mappers = run.with_role("mapper")
        return int(10 + 80 * _share(sum(m.status in ENDED for m in mappers), len(mappers)))

    def results(self, run: TeamRun) -> dict[str, Any]:
        results = super().results(run)
        reducer = next((m for m in run.with_role("reducer") if m.status == COMPLETED), None)
        if reducer is not None:
            results["reduce"] = reducer.result or ""
        return results

    def scale(self, run: TeamRun, target: int) -> Scaled:
        """Mappers are spawned per input: scaling changes how many run at once."""
        previous = run.limit or len(run.with_role("mapper"))
        run.team.config = {**run.team.config, "maxAgents": target}
        return Scaled(previous)


class Pipeline(Strategy):
    """Ordered stages; each stage's agent gets the previous stage's result."""

    kind = team_pb2.EXECUTION_STRATEGY_PIPELINE

    def check_create(self, request: team_service_pb2.CreateTeamRequest, v: Violations) -> None:
        if not request.task.strip() and not request.config.stages:
            v.add("config.stages", "a pipeline team needs stages (or a task for a single stage)")

    def _stages(self, run: TeamRun) -> list[str]:
        return list(run.team.config.get("stages") or []) or [run.team.task]

    def start(self, run: TeamRun) -> None:
        run.spawn("stage", with_input(self._stages(run)[0], "previous", "", "Previous result"), position=0)

    def member_ended(self, run: TeamRun, member: MemberRow) -> None:
        stages = self._stages(run)
        following = member.position + 1
        if member.status == COMPLETED and following < len(stages):
            previous = member.result or ""
            task = with_input(stages[following], "previous", previous, "Previous result")
            run.spawn("stage", task, position=following, input=previous, context={"previous": previous})

    def outcome(self, run: TeamRun) -> Outcome | None:
        stages = run.with_role("stage")
        for member in stages:
            if member.status in ENDED and member.status != COMPLETED:
                return Outcome.failed(
                    f"stage {member.position + 1} {member.status}: {member.error or ''}".strip()
                )
        last = len(self._stages(run)) - 1
        if any(m.position == last and m.status == COMPLETED for m in stages):
            return Outcome.completed()
        return None

    def progress(self, run: TeamRun) -> int:
        done = sum(1 for m in run.with_role("stage") if m.status == COMPLETED)
        return int(100 * _share(done, len(self._stages(run))))

    def results(self, run: TeamRun) -> dict[str, Any]:
        results = super().results(run)
        last = max(
            (m for m in run.with_role("stage") if m.status == COMPLETED),
            key=lambda m: m.position,
            default=None,
        )
        if last is not None and last.position == len(self._stages(run)) - 1:
            results["final"] = last.result or ""
        return results


class Tree(Strategy):
    """A root agent decomposes the task; children work the subtasks (recursively, up to maxDepth);
    results are aggregated upwards into one tree."""

    kind = team_pb2.EXECUTION_STRATEGY_TREE

    def start(self, run: TeamRun) -> None:
        run.spawn("node", run.team.task)

    def member_ended(self, run: TeamRun, member: MemberRow) -> None:
        max_depth = int(run.team.config.get("maxDepth") or DEFAULT_MAX_DEPTH)
        if member.status != COMPLETED or member.depth >= max_depth:
            return
        for i, subtask in enumerate(parse_subtasks(member.result or "")):
            run.spawn("node", subtask, position=i, parent=member, context={"parentTask": member.task})

    def outcome(self, run: TeamRun) -> Outcome | None:
        nodes = run.with_role("node")
        if not all_ended(nodes):
            return None
        failed = [m for m in nodes if m.status != COMPLETED]
        if failed:
            return Outcome.failed(f"{len(failed)} of {len(nodes)} nodes did not complete")
        return Outcome.completed()

    def progress(self, run: TeamRun) -> int:
        nodes = run.with_role("node")
        return int(100 * _share(sum(m.status in ENDED for m in nodes), len(nodes)))

    def results(self, run: TeamRun) -> dict[str, Any]:
        nodes = run.with_role("node")
        children: dict[str | None, list[MemberRow]] = {}
        for node in sorted(nodes, key=lambda m: (m.depth, m.position)):
            children.setdefault(node.parent_id, []).append(node)

        def tree(node: MemberRow) -> dict[str, Any]:
            return {
                "agentId": node.agent_id or "",
                "task": node.task,
                "status": node.status,
                "result": node.result or "",
                "depth": node.depth,
                "children": [tree(c) for c in children.get(node.id, [])],
            }

        roots = children.get(None, [])
        return {"tree": tree(roots[0])} if roots else {}


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (Parallel(), MapReduce(), Pipeline(), Tree())}
