"""The workflow engine's decisions (team/workflows/scheduler.py) without a database: a fake of the
agent service (tests/fakes/workflows.py) plays the members each step launches."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from godel_server.runtime.errors import FailedPreconditionError
from godel_server.runtime.statuses import StepStatus, WorkflowStatus
from godel_server.team.models import MemberRow
from godel_server.team.workflows.dag import FINISHED, Dag
from godel_server.team.workflows.scheduler import StepStates, StepView
from tests.fakes.workflows import AgentFailed, PlayedWorkflow

DIAMOND = """
name: diamond
maxConcurrency: 2
steps:
  - {id: fetch, task: fetch}
  - {id: lint, dependsOn: [fetch], task: lint}
  - {id: test, dependsOn: [fetch], task: test}
  - {id: docs, dependsOn: [fetch], task: docs}
  - {id: package, dependsOn: [lint, test, docs], task: "package {{ steps.test.output }}"}
"""


def ok(member: MemberRow) -> str:
    return f"{member.step_id} ok"


async def test_a_dag_runs_in_dependency_order_within_max_concurrency(tmp_path: Path) -> None:
    wf = PlayedWorkflow(DIAMOND, ok, tmp_path)
    assert await wf.start()
    await wf.play()
    assert wf.wf.status == WorkflowStatus.COMPLETED and wf.wf.progress == 100
    ends = [s for kind, s in wf.log if kind == "end"]
    assert ends[0] == "fetch" and ends[-1] == "package" and sorted(ends[1:4]) == ["docs", "lint", "test"]
    assert wf.peak == 2
    package = next(m for m in wf.source.members if m.step_id == "package")
    assert package.task == "package test ok"  # the template read the finished step's output
    assert wf.wf.results == {s: f"{s} ok" for s in ("fetch", "lint", "test", "docs", "package")}
    assert wf.event_types()[0] == "workflow:start" and wf.event_types()[-1] == "workflow:complete"
    assert wf.event_types().count("workflow:step:start") == 5
    assert ("disarm", 0.0) in wf.timers


async def test_step_rows_are_loaded_only_when_needed(tmp_path: Path) -> None:
    wf = PlayedWorkflow(DIAMOND, ok, tmp_path, preload=False)
    await wf.start()
    await wf.play()
    assert wf.wf.status == WorkflowStatus.COMPLETED
    loaded = [s for load in wf.source.loads for s in load]
    assert sorted(loaded) == sorted(["fetch", "lint", "test", "docs", "package"])  # each once


async def test_a_false_condition_skips_the_step_and_its_dependents_still_run(tmp_path: Path) -> None:
    text = """
name: skip
steps:
  - {id: a, task: a}
  - {id: b, dependsOn: [a], task: b, when: "steps.a.output == 'go'"}
  - {id: c, dependsOn: [b], task: c}
"""
    wf = PlayedWorkflow(text, ok, tmp_path)
    await wf.start()
    await wf.play()
    assert [wf.step(s).status for s in "abc"] == [
        StepStatus.COMPLETED,
        StepStatus.SKIPPED,
        StepStatus.COMPLETED,
    ]
    assert "workflow:step:skip" in wf.event_types()
    assert wf.wf.status == WorkflowStatus.COMPLETED


async def test_a_failed_step_is_retried_after_its_backoff(tmp_path: Path) -> None:
    text = """
name: retry
retryPolicy: {initialBackoff: 5s}
steps:
  - {id: a, task: a, retries: 1}
  - {id: b, dependsOn: [a], task: b}
"""

    def flaky(member: MemberRow) -> str:
        if member.step_id == "a" and member.attempt == 0:
            raise AgentFailed("network down")
        return "fine"

    wf = PlayedWorkflow(text, flaky, tmp_path)
    await wf.start()
    await wf.play()
    a = wf.step("a")
    assert (a.status, a.retry_count, a.error) == (StepStatus.RETRYING, 1, "network down")
    assert a.next_attempt_at == wf.now + timedelta(seconds=5)
    assert wf.timers[-1] == ("arm", 5.0)
    await wf.wake(timedelta(seconds=2))  # not due yet: armed again for the rest
    assert a.status == StepStatus.RETRYING and wf.timers[-1] == ("arm", 3.0)
    await wf.wake(timedelta(seconds=3))
    await wf.play()
    assert [wf.step(s).status for s in "ab"] == [StepStatus.COMPLETED, StepStatus.COMPLETED]
    assert [m.attempt for m in wf.source.members if m.step_id == "a"] == [0, 1]
    assert wf.wf.status == WorkflowStatus.COMPLETED


async def test_a_failed_step_fails_the_workflow_and_cancels_the_rest(tmp_path: Path) -> None:
    def broken(member: MemberRow) -> str:
        if member.step_id == "lint":
            raise AgentFailed("lint errors")
        return "ok"

    wf = PlayedWorkflow(DIAMOND, broken, tmp_path)
    await wf.start()
    await wf.play()
    assert wf.wf.status == WorkflowStatus.FAILED
    assert wf.wf.error == "step lint failed: lint errors"
    assert wf.event_types()[-1] == "workflow:error"
    # The steps that had not finished are cancelled, and their running agents are stopped.
    assert {s.step_id: s.status for s in wf.steps} == {
        "fetch": StepStatus.COMPLETED,
        "lint": StepStatus.FAILED,
        "test": StepStatus.CANCELLED,
        "docs": StepStatus.CANCELLED,
        "package": StepStatus.CANCELLED,
    }
    assert [agent for agent, _ in wf.run.effects.kill] == [
        m.agent_id for m in wf.source.members if m.step_id == "test"
    ]


async def test_on_error_continue_completes_with_the_failed_steps_named(tmp_path: Path) -> None:
    def broken(member: MemberRow) -> str:
        if member.step_id == "docs":
            raise AgentFailed("no docs")
        return "ok"

    wf = PlayedWorkflow(DIAMOND.replace("maxConcurrency: 2", "onError: continue"), broken, tmp_path)
    await wf.start()
    await wf.play()
    assert wf.wf.status == WorkflowStatus.COMPLETED
    end = wf.run.events[-1]
    assert end.type == "workflow:complete"
    assert end.workflow_completed.failed_steps == ["docs"]


async def test_a_passed_deadline_fails_the_workflow(tmp_path: Path) -> None:
    wf = PlayedWorkflow("name: slow\ntimeout: 60s\nsteps:\n  - {id: a, task: a}\n", ok, tmp_path)
    await wf.start()
    assert wf.wf.deadline_at == wf.now + timedelta(seconds=60) and wf.timers == [("arm", 60.0)]
    await wf.wake(timedelta(seconds=61))
    assert wf.wf.status == WorkflowStatus.FAILED and wf.wf.error == "workflow timed out after 60s"


async def test_only_a_pending_workflow_starts(tmp_path: Path) -> None:
    wf = PlayedWorkflow("name: one\nsteps:\n  - {id: a, task: a}\n", ok, tmp_path)
    assert await wf.start()
    assert not await wf.start()  # running: nothing to do
    await wf.play()
    with pytest.raises(FailedPreconditionError, match="it is completed"):
        await wf.start()


async def test_an_old_attempts_member_does_not_move_the_step(tmp_path: Path) -> None:
    wf = PlayedWorkflow("name: one\nsteps:\n  - {id: a, task: a, retries: 2}\n", ok, tmp_path)
    await wf.start()
    member = wf.member(wf.run.effects.launch[0])
    member.attempt = 1  # not the step's current attempt (0)
    member.status = member.status.COMPLETED
    await wf.scheduler.member_ended(wf.run, member)
    assert wf.step("a").status == StepStatus.RUNNING and wf.wf.status == WorkflowStatus.RUNNING


@pytest.mark.parametrize("seed", range(5))
def test_the_step_view_keeps_its_ready_set_and_counts_as_a_full_pass_finds_them(seed: int) -> None:
    """StepStates follows each change instead of reading every step per event: after any sequence
    of changes (finishing, retrying, cancelling) its ready steps are Dag.ready's (also when asked
    again with nothing changed in between: the order is kept until the set changes) and its counts
    are a recount's."""
    rng = random.Random(seed)
    ids = [f"s{i:02d}" for i in range(40)]
    dag = Dag([(sid, rng.sample(ids[:i], k=min(i, rng.randint(0, 3)))) for i, sid in enumerate(ids)])
    state = StepStates(0, dag, {sid: StepView(StepStatus.PENDING) for sid in ids})
    for _ in range(300):
        sid = rng.choice(ids)
        state.set_status(sid, rng.choice(list(StepStatus)))
        statuses = {s: v.status for s, v in state.steps.items()}
        assert list(state.ready()) == dag.ready(statuses) == list(state.ready())
        assert state.any_ready() == bool(dag.ready(statuses))
        for status in StepStatus:
            assert state.count(status) == sum(1 for v in statuses.values() if v == status)
        assert state.all_finished() == all(v in FINISHED for v in statuses.values())
