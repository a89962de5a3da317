"""The step graph of a workflow: topological order, readiness and retry backoff.

Statuses are StepStatus values (runtime/statuses.py: "pending", "running", "retrying", "completed",
"failed", "skipped", "cancelled"); a step missing from a statuses mapping counts as "pending"."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence

from google.protobuf import duration_pb2

from godel.v1 import common_pb2, workflow_pb2
from godel_server.runtime.statuses import StepStatus

PENDING = StepStatus.PENDING
# A dependency in one of these states no longer holds its dependents back.
FINISHED = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.FAILED, StepStatus.CANCELLED})
# Finished without producing a result; what that means for dependents is the engine's call.
FAILED = frozenset({StepStatus.FAILED, StepStatus.CANCELLED})

DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_BACKOFF_MULTIPLIER = 2.0


class Reachability:
    """Which steps each step depends on, directly or transitively, in a graph that may have cycles
    and dangling edges (those, and self-dependencies, are ignored): validation needs it before it
    knows the graph is a DAG. Iterative throughout, so deep chains are fine."""

    def __init__(self, ids: Sequence[str], deps: Mapping[str, Sequence[str]]) -> None:
        known = set(ids)
        self._ids = list(ids)
        self._edges = {s: [d for d in deps.get(s, ()) if d in known and d != s] for s in ids}
        self._bit = {s: i for i, s in enumerate(ids)}
        self.components = _components(self._ids, self._edges)
        self._masks: dict[str, int] | None = None

    def cycles(self) -> list[list[str]]:
        """One cycle per strongly connected group of steps, as a path that starts and ends at the
        group's first step and follows dependsOn edges (["a", "b", "a"]: a depends on b, b on a)."""
        found = [_cycle_path(set(c), self._edges, self._ids) for c in self.components if len(c) > 1]
        return sorted(found, key=lambda cycle: self._bit[cycle[0]])

    def depends_on(self, step_id: str, ancestor: str) -> bool:
        return bool(self._ancestor_masks()[step_id] >> self._bit[ancestor] & 1)

    def upstream(self, step_id: str) -> list[str]:
        """The steps `step_id` depends on, in definition order."""
        mask = self._ancestor_masks()[step_id]
        return [s for i, s in enumerate(self._ids) if mask >> i & 1]

    def _ancestor_masks(self) -> dict[str, int]:
        # One int bitset per step (bit i = ids[i]), built on first use. Components come
        # dependencies-first, so the masks of a component's dependencies are always ready.
        if self._masks is None:
            component_of: dict[str, int] = {}
            members_of: list[int] = []
            masks: list[int] = []
            for c, members in enumerate(self.components):
                members_mask = 0
                for member in members:
                    component_of[member] = c
                    members_mask |= 1 << self._bit[member]
                # In a cycle every member depends on every member.
                mask = members_mask if len(members) > 1 else 0
                for member in members:
                    for dep in self._edges[member]:
                        if component_of[dep] != c:
                            mask |= masks[component_of[dep]] | members_of[component_of[dep]]
                members_of.append(members_mask)
                masks.append(mask)
            self._masks = {s: masks[component_of[s]] for s in self._ids}
        return self._masks


def find_cycles(ids: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """See Reachability.cycles."""
    return Reachability(ids, deps).cycles()


def _components(ids: list[str], edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each listed after every component it depends on."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in ids:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if i < len(targets):
                work.append((node, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_path(group: set[str], edges: Mapping[str, list[str]], ids: Sequence[str]) -> list[str]:
    # Shortest way back to the group's first step (in definition order), by BFS inside the group.
    start = next(s for s in ids if s in group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in edges[node]:
                if target not in group:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError("a strongly connected group always has a cycle")


class Dag:
    """Steps and their dependsOn edges. Construction fails with ValueError on duplicate ids,
    unknown dependencies or cycles (a validated definition has none)."""

    def __init__(self, steps: Iterable[tuple[str, Sequence[str]]]) -> None:
        ids: list[str] = []
        deps: dict[str, tuple[str, ...]] = {}
        for step_id, step_deps in steps:
            if step_id in deps:
                raise ValueError(f"duplicate step id {step_id!r}")
            ids.append(step_id)
            deps[step_id] = tuple(dict.fromkeys(step_deps))
        for step_id in ids:
            for dep in deps[step_id]:
                if dep not in deps or dep == step_id:
                    raise ValueError(f"step {step_id!r} has an invalid dependency {dep!r}")
        position = {s: i for i, s in enumerate(ids)}
        dependents: dict[str, list[str]] = {s: [] for s in ids}
        waiting = {s: len(deps[s]) for s in ids}
        for step_id in ids:
            for dep in deps[step_id]:
                dependents[dep].append(step_id)
        # Kahn's algorithm; among the steps that are free, the earliest defined goes first.
        heap = [position[s] for s in ids if not waiting[s]]
        order: list[str] = []
        while heap:
            step_id = ids[heapq.heappop(heap)]
            order.append(step_id)
            for dependent in dependents[step_id]:
                waiting[dependent] -= 1
                if not waiting[dependent]:
                    heapq.heappush(heap, position[dependent])
        if len(order) != len(ids):
            path = find_cycles(ids, deps)[0]
            raise ValueError(f"cycle: {' -> '.join(path)}")
        self.order: tuple[str, ...] = tuple(order)
        self._rank = {s: i for i, s in enumerate(order)}
        self.deps: Mapping[str, tuple[str, ...]] = deps
        self.dependents: Mapping[str, tuple[str, ...]] = {
            s: tuple(sorted(dependents[s], key=self._rank.__getitem__)) for s in ids
        }
        self.roots: tuple[str, ...] = tuple(s for s in order if not deps[s])
        self.leaves: tuple[str, ...] = tuple(s for s in order if not dependents[s])
        self._reachability: Reachability | None = None

    @classmethod
    def from_definition(cls, definition: workflow_pb2.WorkflowDefinition) -> Dag:
        return cls((step.id, list(step.depends_on)) for step in definition.steps)

    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._rank

    def rank(self, step_id: str) -> int:
        """Position of the step in `order`."""
        return self._rank[step_id]

    def ready(self, statuses: Mapping[str, str]) -> list[str]:
        """Pending steps whose dependencies are all finished, in topological order."""
        return [s for s in self.order if self.is_ready(s, statuses)]

    def is_ready(self, step_id: str, statuses: Mapping[str, str], *, finishing: str = "") -> bool:
        """The step is pending and every dependency of it has finished (`finishing` counts as
        finished whatever `statuses` says of it)."""
        if statuses.get(step_id, PENDING) != PENDING:
            return False
        return all(d == finishing or statuses.get(d, PENDING) in FINISHED for d in self.deps[step_id])

    def unblocked_by(self, step_id: str, statuses: Mapping[str, str]) -> list[str]:
        """The dependents of `step_id` that are ready once it has finished: only these can become
        ready when it does, so this is the cheap way to keep a ready set up to date."""
        return [s for s in self.dependents.get(step_id, ()) if self.is_ready(s, statuses, finishing=step_id)]

    def blocked_by_failure(self, step_id: str, statuses: Mapping[str, str]) -> list[str]:
        """The direct dependencies of the step that failed or were cancelled."""
        return [d for d in self.deps[step_id] if statuses.get(d, PENDING) in FAILED]

    def is_upstream(self, ancestor: str, step_id: str) -> bool:
        """True when `step_id` depends on `ancestor`, directly or transitively."""
        return self._reach().depends_on(step_id, ancestor)

    def upstream(self, step_id: str) -> list[str]:
        """Every step `step_id` depends on, directly or transitively, in topological order."""
        return sorted(self._reach().upstream(step_id), key=self._rank.__getitem__)

    def downstream(self, step_id: str) -> list[str]:
        """Every step that depends on `step_id`, directly or transitively, in topological order."""
        seen: set[str] = set()
        todo = [step_id]
        while todo:
            for dependent in self.dependents[todo.pop()]:
                if dependent not in seen:
                    seen.add(dependent)
                    todo.append(dependent)
        return sorted(seen, key=self._rank.__getitem__)

    def _reach(self) -> Reachability:
        if self._reachability is None:
            self._reachability = Reachability(self.order, self.deps)
        return self._reachability


def backoff_seconds(policy: common_pb2.RetryPolicy | None, attempt: int) -> float:
    """Delay before retry number `attempt` (1 = the first retry): initial * multiplier^(attempt-1),
    capped at the maximum. Unset fields default to 1 s, x2 and 60 s; 0 for attempt < 1."""
    if attempt < 1:
        return 0.0
    initial, maximum, multiplier = DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_BACKOFF_MULTIPLIER
    if policy is not None:
        if policy.HasField("initial_backoff"):
            initial = _seconds(policy.initial_backoff)
        if policy.HasField("max_backoff"):
            maximum = _seconds(policy.max_backoff)
        if 1 <= policy.backoff_multiplier < math.inf:
            multiplier = policy.backoff_multiplier
    initial, maximum = max(initial, 0.0), max(maximum, 0.0)
    try:
        delay = initial * multiplier ** (attempt - 1)
    except OverflowError:
        delay = maximum
    return min(delay, maximum)


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9
