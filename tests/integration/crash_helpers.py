"""Checks of the crash tests: no agent failed, stalled, or ran twice at the same time.

"Twice at the same time" is seen from inside the agents' sandbox (tests/fakes/burst.py,
EXCLUSIVE_RUN): on the agent's branch, the commits must read blocks of "start R" (+ "end R" right
after it, for a run that finished), one block per run that got as far as its command, the last one
finished, and no "overlap"."""

from __future__ import annotations

import time

import grpc

from godel.v1 import agent_pb2, agent_service_pb2
from tests.conftest import RunningMesh
from tests.fakes.worker_env import git
from tests.integration.agent_helpers import Agents
from tests.waits import wait_for

L = agent_pb2


def labelled(agents: Agents, label: str) -> list[agent_pb2.Agent]:
    found: list[agent_pb2.Agent] = []
    token = ""
    while True:
        page = agents.stub.ListAgents(
            agent_service_pb2.ListAgentsRequest(label=label, page_size=1000, page_token=token),
            metadata=agents.md,
            timeout=10,
        )
        found.extend(page.agents)
        token = page.next_page_token
        if not token:
            return found


def wait_all_completed(
    agents: Agents, label: str, must_include: list[str], deadline: float
) -> list[agent_pb2.Agent]:
    """Every agent of the label completed before `deadline` (monotonic); fails naming the ones that
    failed or are still on their way."""
    must = set(must_include)
    seen: list[agent_pb2.Agent] = []

    def all_completed() -> list[agent_pb2.Agent] | None:
        try:
            seen[:] = labelled(agents, label)
        except grpc.RpcError:  # the service may still be coming back
            seen[:] = []
        failed = [
            a for a in seen if a.lifecycle_state in (L.LIFECYCLE_STATE_FAILED, L.LIFECYCLE_STATE_KILLED)
        ]
        assert not failed, "failed: " + "; ".join(f"{a.id}: {a.last_error}" for a in failed[:5])
        done = all(a.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED for a in seen)
        return list(seen) if seen and done and {a.id for a in seen} >= must else None

    def describe() -> str:
        stuck = [a for a in seen if a.lifecycle_state != L.LIFECYCLE_STATE_COMPLETED]
        missing = must - {a.id for a in seen}
        return (
            f"{len(seen) - len(stuck)}/{len(seen)} completed, {len(missing)} acknowledged agents missing; "
            "not done: "
            + "; ".join(
                f"{a.id} {L.LifecycleState.Name(a.lifecycle_state)} run={a.session_id} "
                f"pending={a.pending_message!r}"
                for a in stuck[:5]
            )
        )

    return wait_for(
        all_completed,
        max(0.0, deadline - time.monotonic()),
        f"every agent labelled {label} to complete",
        interval=0.2,
        describe=describe,
    )


def run_blocks(subjects: list[str]) -> list[tuple[str, bool]]:
    """The agent's runs as its commits tell them: (run id, finished), in order; AssertionError when
    two runs were alive at once (an "overlap", or a run's start between another's start and end)."""
    blocks: list[tuple[str, bool]] = []
    for subject in subjects:
        kind, _, run_id = subject.partition(" ")
        assert kind != "overlap", f"run {run_id} found another run of the agent alive: {subjects}"
        if kind == "start":
            assert all(run_id != r for r, _ in blocks), f"run {run_id} started twice: {subjects}"
            blocks.append((run_id, False))
        elif kind == "end":
            assert blocks and blocks[-1] == (run_id, False), f"run {run_id} ended out of turn: {subjects}"
            blocks[-1] = (run_id, True)
    return blocks


def check_ran_once_at_a_time(godel: RunningMesh, agents: Agents, agent: agent_pb2.Agent) -> None:
    """The commits of the agent's branch (module docstring), its sessions and its events agree: every
    run alone, the last one finished, one spawn and one completion, and reruns only for lost runs."""
    subjects = git(
        godel.mesh.default_repo, "log", "--reverse", "--format=%s", f"godel/{agent.id}"
    ).splitlines()
    blocks = run_blocks([s for s in subjects if s.split(" ", 1)[0] in ("start", "end", "overlap")])
    assert blocks and blocks[-1][1], f"{agent.id}: its last run did not finish: {subjects}"
    # A command can finish an instant before its worker dies, its outcome with it: that run is lost
    # and runs again (after it, never beside it). Otherwise one run finished.
    finished = sum(done for _, done in blocks)
    assert finished == 1 or agent.reschedules >= finished - 1, f"{agent.id}: finished twice: {subjects}"
    sessions = agents.stub.ListAgentSessions(
        agent_service_pb2.ListAgentSessionsRequest(id=agent.id, page_size=100), metadata=agents.md, timeout=10
    ).sessions
    session_ids = {s.id for s in sessions}
    assert {r for r, _ in blocks} <= session_ids, (agent.id, blocks, session_ids)
    assert agent.session_id == blocks[-1][0]
    # A session per assignment: the finished run, the lost ones, and any a full worker turned away.
    assert agent.retry_count == 0 and len(sessions) >= agent.reschedules + 1, (agent.id, agent.reschedules)
    types = agents.wait_events(agent.id, ["agent:spawn", "agent:complete"])
    assert types.count("agent:spawn") == 1 and types.count("agent:complete") == 1, (agent.id, types)
    assert "agent:error" not in types
    assert types.count("agent:run:rescheduled") == agent.reschedules, (agent.id, types)
