"""The agent service's side of crash safety, without a database: the supervisor's verdict on a run
from what its worker says (pure), worker updates and usage applied once whatever the worker
resends, runs lost to infrastructure run again without failing the agent (until
GODEL_AGENT_MAX_RESCHEDULES), and a full worker's refusal that does not count against the agent
(tests/fakes/agents.py: the real coordinator and store over memory)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from godel.v1 import agent_events_pb2
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.models import AgentRow
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.supervisor import Sighting, Timing, Verdict, judge
from godel_server.runtime.statuses import LifecycleState, SessionStatus
from tests.fakes.agents import FakeWorker, MemoryDatabase, coordinator, new_agent, worker_stream

L = LifecycleState
TIMING = Timing(lost_grace=15.0, progress_timeout=60.0)


def _seen(state: int | None = wpb.RUN_STATE_RUNNING, **fields: object) -> Sighting:
    values: dict[str, object] = {
        "worker_id": "w1",
        "connected": True,
        "status": None if state is None else wpb.RunStatus(run_id="r1", state=state),  # type: ignore[arg-type]
        "owned_here": True,
        "silence": 0.5,
    }
    values.update(fields)
    return Sighting(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sighting", "verdict", "says"),
    [
        (_seen(), Verdict.HEALTHY, ""),
        (_seen(owned_here=False), Verdict.ADOPT, ""),
        (_seen(wpb.RUN_STATE_SUCCEEDED, owned_here=False), Verdict.ADOPT, ""),  # its final comes next
        (_seen(wpb.RUN_STATE_SUCCEEDED, ended=3.0), Verdict.WAIT, ""),
        (_seen(wpb.RUN_STATE_LOST, ended=16.0), Verdict.LOST, "reports the run ended (LOST)"),
        # Its final update is here, waiting for the database.
        (_seen(wpb.RUN_STATE_SUCCEEDED, ended=16.0, applying=True), Verdict.WAIT, ""),
        (_seen(None, missing=1.0), Verdict.WAIT, ""),  # assigned a moment ago
        (_seen(None, missing=4.0), Verdict.ASK, "does not hold the run"),
        (_seen(None, connected=False, silence=14.0), Verdict.WAIT, ""),  # it may reconnect
        (_seen(None, connected=False, silence=16.0), Verdict.LOST, "out of contact for 16s (not connected"),
        (_seen(silence=16.0), Verdict.LOST, "connected but silent"),
        (_seen(quiet=61.0), Verdict.STUCK, "no progress for 60s"),
        (_seen(wpb.RUN_STATE_PAUSED, quiet=600.0), Verdict.HEALTHY, ""),  # paused runs print nothing
    ],
)
def test_the_verdict_on_a_run(sighting: Sighting, verdict: Verdict, says: str) -> None:
    decision = judge(sighting, TIMING)
    assert decision.verdict is verdict
    assert says in decision.reason


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[RunCoordinator, MemoryDatabase, FakeWorker]]:
    """A coordinator that reruns a lost run at most once, one worker, and an agent without retries."""
    coord, db, registry = coordinator(tmp_path, GODEL_AGENT_MAX_RESCHEDULES="1")
    worker = FakeWorker(registry, "w1")
    new_agent(db, max_retries=0)
    yield coord, db, worker
    await worker.stop()
    await coord.stop()


def _agent(db: MemoryDatabase) -> AgentRow:
    return next(iter(db.agents.values()))


async def _run(coord: RunCoordinator, db: MemoryDatabase) -> str:
    agent = _agent(db)
    assert await coord._assign(agent.id)
    assert agent.run_id
    return agent.run_id


def _update(agent: AgentRow, run_id: str, state: int, seq: int, **fields: object) -> wpb.RunUpdate:
    return wpb.RunUpdate(run_id=run_id, agent_id=agent.id, state=state, seq=seq, **fields)  # type: ignore[arg-type]


async def test_updates_and_usage_sent_again_are_applied_once(
    rig: tuple[RunCoordinator, MemoryDatabase, FakeWorker],
) -> None:
    coord, db, worker = rig
    agent, run_id = _agent(db), await _run(coord, db)
    for _ in range(2):  # a worker resends what it did not see acknowledged
        await coord.on_update(worker.conn, _update(agent, run_id, wpb.RUN_STATE_RUNNING, 3, worktree="/w/a1"))
        usage = wpb.RunUsage(run_id=run_id, agent_id=agent.id, model="m", prompt_tokens=100, seq=4)
        await coord.on_usage(worker.conn, usage)
    assert (agent.lifecycle_state, agent.worktree_path, agent.prompt_tokens) == (L.EXECUTING, "/w/a1", 100)
    assert [t.trigger for t in db.transitions] == ["worktree_created", "session_started"]
    assert db.event_types(agent.id).count("agent:usage") == 1
    # A final sent twice: the first completes the agent, the second changes nothing.
    for _ in range(2):
        await coord.on_update(worker.conn, _update(agent, run_id, wpb.RUN_STATE_SUCCEEDED, 5))
    assert [t.trigger for t in db.transitions][-1] == "task_complete"
    assert len(db.transitions) == 3


async def test_a_lost_run_runs_again_without_failing_the_agent(
    rig: tuple[RunCoordinator, MemoryDatabase, FakeWorker],
) -> None:
    coord, db, worker = rig
    agent, first = _agent(db), await _run(coord, db)
    await coord.on_update(worker.conn, _update(agent, first, wpb.RUN_STATE_RUNNING, 1))
    error = "the worker restarted; the run ended with its previous process"
    lost = _update(agent, first, wpb.RUN_STATE_LOST, 2, error=error)
    await coord.on_update(worker.conn, lost)
    # Still executing (its state is the agent's, not the crash's), no retry used, a rerun counted.
    assert (agent.lifecycle_state, agent.run_id, agent.retry_count, agent.reschedules) == (
        L.EXECUTING,
        None,
        0,
        1,
    )
    assert agent.last_error is None and agent.completed_at is None
    assert db.sessions[first].status == SessionStatus.FAILED and db.sessions[first].meta["lost"].endswith(
        error
    )
    types = db.event_types(agent.id)
    assert types[-2:] == ["agent:run:lost", "agent:run:rescheduled"] and "agent:error" not in types
    rescheduled = db.last_event("agent:run:rescheduled")
    assert isinstance(rescheduled, agent_events_pb2.AgentRunRescheduled)
    assert (rescheduled.previous_run_id, rescheduled.reschedules, rescheduled.max_reschedules) == (
        first,
        1,
        1,
    )
    assert rescheduled.reason == f"worker w1: {error}"
    await asyncio.sleep(0.05)  # the rerun is queued at once
    second = await _run(coord, db)
    assert second != first
    for _ in range(100):  # the fake worker reads its stream in a task of its own
        if worker.assigned[-1].run_id == second:
            break
        await asyncio.sleep(0.01)
    assert worker.assigned[-1].run_id == second and worker.assigned[-1].reuse_worktree
    # The worker's answer to the stale run's duplicate changes nothing.
    await coord.on_update(worker.conn, lost)
    assert agent.run_id == second
    # Lost once more than GODEL_AGENT_MAX_RESCHEDULES allows: the agent fails, saying why.
    await coord._run_lost(agent.id, second, "worker w1 out of contact for 16s")
    assert agent.lifecycle_state == L.FAILED and agent.completed_at is not None
    assert agent.last_error == (
        "its run was lost 2 times (GODEL_AGENT_MAX_RESCHEDULES is 1); last: worker w1 out of contact for 16s"
    )


async def test_a_full_worker_does_not_count_against_the_agent(
    rig: tuple[RunCoordinator, MemoryDatabase, FakeWorker],
) -> None:
    coord, db, worker = rig
    agent, run_id = _agent(db), await _run(coord, db)
    full = _update(
        agent,
        run_id,
        wpb.RUN_STATE_REJECTED,
        0,
        reject_reason=wpb.REJECT_REASON_CAPACITY,
        error="worker at capacity",
    )
    await coord.on_update(worker.conn, full)
    assert (agent.lifecycle_state, agent.run_id, agent.last_error) == (L.INITIALIZING, None, None)
    assert worker.conn.free == 0  # this replica's count was behind; the worker's next heartbeat corrects it
    worker.conn.free = 1
    second = await _run(coord, db)
    wrong = _update(
        agent,
        second,
        wpb.RUN_STATE_REJECTED,
        0,
        reject_reason=wpb.REJECT_REASON_RUNTIME,
        error="unknown runtime",
    )
    await coord.on_update(worker.conn, wrong)  # the only worker cannot run it at all
    assert (
        agent.lifecycle_state == L.FAILED
        and agent.last_error == "no worker accepted the run: unknown runtime"
    )


class SlowCoordinator:
    """A coordinator whose database is slow: updates wait until `release` is set."""

    replica_id = "replica-1"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.applied: list[int] = []

    def nudge(self) -> None:
        return None

    async def on_update(self, conn: object, update: wpb.RunUpdate) -> None:
        await self.release.wait()
        self.applied.append(update.seq)

    async def on_worker_gone(self, conn: object) -> None:
        return None


async def test_heartbeats_are_acknowledged_while_run_messages_wait_for_the_database() -> None:
    """A heartbeat's acknowledgement renews the worker's lease on the replica's runs: were it queued
    behind slow updates, a busy replica would make its workers stop their runs. Its report is taken
    at once too, and the run it reports ended counts as `applying` while its final update waits:
    otherwise the supervisor would declare the run lost and run it again."""
    slow = SlowCoordinator()
    async with worker_stream(slow) as (call, conn):
        update = wpb.RunUpdate(run_id="r1", agent_id="a1", state=wpb.RUN_STATE_SUCCEEDED, seq=1)
        await call.write(wpb.ConnectRequest(update=update))
        ended = wpb.RunStatus(run_id="r1", state=wpb.RUN_STATE_SUCCEEDED)
        await call.write(wpb.ConnectRequest(heartbeat=wpb.WorkerHeartbeat(seq=7, runs=[ended])))
        first = await asyncio.wait_for(call.read(), 5)
        assert first.heartbeat_ack.seq == 7 and slow.applied == []
        assert conn.runs["r1"].state == wpb.RUN_STATE_SUCCEEDED and conn.applying("r1")
        slow.release.set()
        second = await asyncio.wait_for(call.read(), 5)
        assert (second.run_ack.run_id, second.run_ack.seq) == ("r1", 1) and slow.applied == [1]
        assert not conn.applying("r1")
