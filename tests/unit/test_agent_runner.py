"""The agent service's run coordinator (agent/runner.py) without a database: scheduling onto
workers, worker reports driving the state machine, retries with backoff, rejections and
completion with worktree cleanup (tests/fakes/agents.py: the real store over memory, a fake
worker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from godel.v1 import agent_events_pb2
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.models import AgentRow
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.workers import IN_FLIGHT_SECONDS, MAX_IN_FLIGHT, Placement, WorkerRegistry
from godel_server.runtime.events import utcnow
from godel_server.runtime.statuses import AgentStatus, LifecycleState, SessionStatus
from tests.fakes.agents import FakeWorker, MemoryDatabase, coordinator, new_agent
from tests.waits import wait_for_async


def final_of(db: MemoryDatabase) -> bool:
    """Whether the last `agent:error` said no retry follows."""
    failed = db.last_event("agent:error")
    assert isinstance(failed, agent_events_pb2.AgentFailed)
    return failed.final


def state(agent: AgentRow) -> LifecycleState:
    """The agent's state now (a function, so that mypy does not keep what an assert narrowed)."""
    return agent.lifecycle_state


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Waits for a background task of the coordinator to have done something."""
    await wait_for_async(condition, timeout, "the coordinator's background work", interval=0.01)


@dataclass
class Rig:
    coord: RunCoordinator
    db: MemoryDatabase
    registry: WorkerRegistry
    workers: list[FakeWorker] = field(default_factory=list)

    def worker(self, worker_id: str = "w1", capacity: int = 4) -> FakeWorker:
        self.workers.append(FakeWorker(self.registry, worker_id, capacity=capacity))
        return self.workers[-1]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A coordinator with a 2 s first retry backoff; workers connect with `rig.worker()`."""
    rig = Rig(*coordinator(tmp_path, GODEL_RETRY_BACKOFF_SECONDS="2"))
    yield rig
    for worker in rig.workers:
        await worker.stop()
    await rig.coord.stop()


async def test_an_agent_runs_on_the_worker_with_the_most_room(
    rig: Rig,
) -> None:
    coord, db = rig.coord, rig.db
    small, big = rig.worker("w-small", capacity=1), rig.worker("w-big", capacity=3)
    agent = new_agent(db)
    assert await coord._assign(agent.id)
    assert (agent.worker_id, agent.run_id, agent.session_id) == ("w-big", agent.run_id, agent.run_id)
    assert big.conn.free == 2 and small.conn.free == 1
    session = db.sessions[agent.run_id or ""]
    assert session.status == SessionStatus.PENDING and session.meta["workerId"] == "w-big"
    await until(lambda: bool(big.assigned))
    assignment = big.assigned[0]
    assert (assignment.agent_id, assignment.task, list(assignment.config.command)) == (
        agent.id,
        "do it",
        ["true"],
    )
    assert assignment.branch == f"godel/{agent.id}" and not assignment.reuse_worktree
    # Assigned once: a second pass leaves it alone.
    assert await coord._assign(agent.id) and len(db.sessions) == 1


async def test_an_assignment_is_one_transaction(
    rig: Rig,
) -> None:
    """The agent is read, the worker picked and the run written in one transaction: no read of its
    own before it (a round trip and a load of the whole row per assignment, bench/README.md)."""
    coord, db = rig.coord, rig.db
    rig.worker("w1")
    placed, empty = new_agent(db), new_agent(db, command=())
    for agent in (placed, empty):
        before = db.transactions
        assert await coord._assign(agent.id)
        assert db.transactions - before == 1
    assert placed.run_id is not None and state(empty) == LifecycleState.FAILED


async def test_without_room_the_agent_stays_pending(
    rig: Rig,
) -> None:
    coord, db = rig.coord, rig.db
    rig.worker("w1", capacity=0)
    agent = new_agent(db)
    assert not await coord._assign(agent.id)
    assert agent.run_id is None and state(agent) == LifecycleState.INITIALIZING
    assert agent.pending_reason == "no_free_slot" and agent.pending_message


async def test_an_agent_with_nothing_to_run_fails_at_once(
    rig: Rig,
) -> None:
    coord, db = rig.coord, rig.db
    rig.worker("w1")
    agent = new_agent(db, command=())
    assert await coord._assign(agent.id)
    assert state(agent) == LifecycleState.FAILED and agent.status == AgentStatus.FAILED
    assert agent.last_error is not None and agent.last_error.startswith("nothing to run")
    assert db.event_types(agent.id) == ["agent:error"] and final_of(db) is True


async def test_worker_reports_drive_the_state_machine_to_completion(
    rig: Rig,
) -> None:
    coord, db = rig.coord, rig.db
    worker = rig.worker("w1")
    agent = new_agent(db)
    await coord._assign(agent.id)
    run_id = agent.run_id or ""
    await coord.on_update(
        worker.conn, worker.update(run_id, agent.id, wpb.RUN_STATE_WORKTREE_READY, worktree="/wt/a")
    )
    assert state(agent) == LifecycleState.SPAWNING and agent.worktree_path == "/wt/a"
    await coord.on_update(worker.conn, worker.update(run_id, agent.id, wpb.RUN_STATE_RUNNING))
    assert state(agent) == LifecycleState.EXECUTING and agent.status == AgentStatus.RUNNING
    assert db.sessions[run_id].status == SessionStatus.ACTIVE
    await coord.on_update(
        worker.conn,
        worker.update(run_id, agent.id, wpb.RUN_STATE_SUCCEEDED, result="42", commits=["abc"]),
    )
    assert db.sessions[run_id].status == SessionStatus.COMPLETED and agent.run_id is None
    # Completion removes the worktree through a worker, then the agent is completed.
    await until(lambda: state(agent) == LifecycleState.COMPLETED)
    cleanup = next(c for c in worker.controls if c.action == wpb.CONTROL_ACTION_CLEANUP)
    assert cleanup.worktree == "/wt/a"
    assert (agent.result, agent.commits, agent.status) == ("42", ["abc"], AgentStatus.COMPLETED)
    assert db.event_types(agent.id) == ["agent:start", "agent:complete"]
    assert [t.trigger for t in db.transitions] == [
        "worktree_created",
        "session_started",
        "task_complete",
        "cleanup_done",
    ]


async def test_a_failed_run_is_retried_with_backoff_until_the_retries_run_out(
    rig: Rig,
) -> None:
    coord, db = rig.coord, rig.db
    worker = rig.worker("w1")
    agent = new_agent(db, max_retries=1)
    for attempt, (final, backoff) in enumerate([(False, 2.0), (True, None)]):
        if attempt:
            agent.next_attempt_at = utcnow()  # the backoff has passed
        assert await coord._assign(agent.id)
        run_id = agent.run_id or ""
        await coord.on_update(worker.conn, worker.update(run_id, agent.id, wpb.RUN_STATE_RUNNING))
        assert state(agent) == LifecycleState.EXECUTING
        before = utcnow()
        await coord.on_update(
            worker.conn, worker.update(run_id, agent.id, wpb.RUN_STATE_FAILED, error="tests failed")
        )
        assert state(agent) == LifecycleState.FAILED and agent.last_error == "tests failed"
        assert db.sessions[run_id].status == SessionStatus.FAILED
        assert final_of(db) is final
        if backoff is None:
            assert agent.next_attempt_at is None and agent.completed_at is not None
        else:
            assert agent.retry_count == 1 and agent.next_attempt_at is not None
            wait = agent.next_attempt_at - before
            assert timedelta(seconds=backoff - 1) < wait <= timedelta(seconds=backoff + 1)
    assert [t.trigger for t in db.transitions if t.trigger in ("error", "retry")] == [
        "error",
        "retry",
        "error",
    ]


async def test_a_run_every_worker_rejects_fails_the_agent(
    rig: Rig,
) -> None:
    coord, db = rig.coord, rig.db
    workers = [rig.worker("w1"), rig.worker("w2")]
    agent = new_agent(db)
    tried: list[str] = []
    for _ in workers:
        assert await coord._assign(agent.id)
        tried.append(agent.worker_id or "")
        conn = rig.registry.get(agent.worker_id)
        assert conn is not None
        await coord.on_update(
            conn,
            wpb.RunUpdate(
                run_id=agent.run_id or "", agent_id=agent.id, state=wpb.RUN_STATE_REJECTED, error="no git"
            ),
        )
    assert sorted(tried) == ["w1", "w2"]  # the second attempt went to the other worker
    assert state(agent) == LifecycleState.FAILED and agent.run_id is None
    assert agent.last_error == "no worker accepted the run: no git"


async def test_a_report_of_a_run_the_agent_no_longer_has_kills_that_run(
    rig: Rig,
) -> None:
    coord, db = rig.coord, rig.db
    worker = rig.worker("w1")
    agent = new_agent(db)
    await coord._assign(agent.id)
    await coord.on_update(worker.conn, worker.update("an-old-run", agent.id, wpb.RUN_STATE_RUNNING))
    await until(lambda: any(c.run_id == "an-old-run" for c in worker.controls))
    kill = next(c for c in worker.controls if c.run_id == "an-old-run")
    assert kill.action == wpb.CONTROL_ACTION_KILL
    assert state(agent) == LifecycleState.INITIALIZING  # the agent's own run is untouched


async def test_a_burst_of_runs_waits_here_not_in_the_workers_stream(
    rig: Rig,
) -> None:
    """At most MAX_IN_FLIGHT assignments the worker has not spoken of yet: behind more, in the
    ordered stream, the acknowledgements of its heartbeats came too late for its run lease and it
    stopped every run (bench/README.md, "A worker stops 1,000 runs at once"). The wait is a moment's:
    nothing is written on the waiting agent; a word on a run, or a heartbeat listing runs, makes
    room, and a heartbeat's free slots do not count the runs still on their way."""
    coord, db = rig.coord, rig.db
    capacity = MAX_IN_FLIGHT + 10
    worker = rig.worker("w1", capacity=capacity)
    agents = [new_agent(db) for _ in range(MAX_IN_FLIGHT + 2)]
    placed = [await coord._assign(a.id) for a in agents]
    assert placed == [True] * MAX_IN_FLIGHT + [False, False]
    late, last = agents[-2:]
    assert last.pending_reason is None and last.run_id is None
    assert "still taking the runs" in coord.registry.unplaced(Placement("command"), "replica-1").message

    # The heartbeat the worker sent before these reached it: they are not in its free count.
    worker.conn.report([], free=capacity)
    assert worker.conn.free == capacity - MAX_IN_FLIGHT

    assert worker.conn.seen(agents[0].run_id or "")  # its first update: room for one
    assert await coord._assign(late.id) and not await coord._assign(last.id)
    seen = [
        wpb.RunStatus(run_id=a.run_id or "", agent_id=a.id, state=wpb.RUN_STATE_RUNNING) for a in agents[1:10]
    ]
    worker.conn.report(seen, free=capacity - 10)
    assert await coord._assign(last.id)
    await until(lambda: len(worker.assigned) == MAX_IN_FLIGHT + 2)


async def test_an_assignment_the_worker_never_speaks_of_stops_holding_a_place(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After IN_FLIGHT_SECONDS an unconfirmed assignment no longer counts against the cap: a worker
    that ignored some (the supervisor judges those runs) does not stop taking runs for good."""
    clock = [1_000_000.0]  # a machine up for days; monotonic() never starts at zero here
    monkeypatch.setattr("godel_server.agent.workers.time.monotonic", lambda: clock[0])
    coord, db = rig.coord, rig.db
    rig.worker("w1", capacity=MAX_IN_FLIGHT + 10)
    agents = [new_agent(db) for _ in range(MAX_IN_FLIGHT + 1)]
    assert [await coord._assign(a.id) for a in agents] == [True] * MAX_IN_FLIGHT + [False]
    clock[0] += IN_FLIGHT_SECONDS - 1
    assert not await coord._assign(agents[-1].id)
    clock[0] += 2
    assert await coord._assign(agents[-1].id)


async def test_the_start_of_a_run_assigned_on_the_connection_costs_no_transaction(
    rig: Rig,
) -> None:
    coord, db = rig.coord, rig.db
    worker = rig.worker("w1")
    agent = new_agent(db)
    await coord._assign(agent.id)
    run_id = agent.run_id or ""
    before = db.transactions
    await coord.on_update(worker.conn, worker.update(run_id, agent.id, wpb.RUN_STATE_STARTING))
    assert db.transactions == before and state(agent) == LifecycleState.INITIALIZING
    # A run this connection was not given is still checked against the agent (and, being the
    # agent's run on this worker, adopted: a worker reconnecting after a restart of the replica).
    worker.conn.owned.discard((agent.id, run_id))
    await coord.on_update(worker.conn, worker.update(run_id, agent.id, wpb.RUN_STATE_STARTING))
    assert db.transactions > before and (agent.id, run_id) in worker.conn.owned
    # When the agent has moved on from a run of this connection, the run's next update stops it.
    agent.run_id = "the-agents-next-run"
    await coord.on_update(worker.conn, worker.update(run_id, agent.id, wpb.RUN_STATE_STARTING))
    assert not worker.controls
    await coord.on_update(worker.conn, worker.update(run_id, agent.id, wpb.RUN_STATE_WORKTREE_READY))
    await until(lambda: any(c.run_id == run_id for c in worker.controls))
    assert worker.controls[0].action == wpb.CONTROL_ACTION_KILL
    assert state(agent) == LifecycleState.INITIALIZING
