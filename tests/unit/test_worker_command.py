"""The worker's "command" runtime against a fake agent-service replica and real git repositories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from godel.v1 import agent_pb2
from godel.v1 import worker_service_pb2 as ws
from godel_server.worker.procs import group_members
from tests.fakes.worker_env import (
    RunningWorker,
    alive,
    assignment,
    git,
    proc_state,
    running_worker,
)
from tests.waits import wait_for_async

pytestmark = pytest.mark.timeout(60)


Env = RunningWorker


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running_worker(tmp_path, GODEL_WORKER_CAPACITY="2") as running:
        yield running


async def test_success_records_the_commit_on_the_agents_branch(env: Env) -> None:
    cmd = ["sh", "-c", "echo hi > hello.txt && git add . && git commit -q -m hi && echo done"]
    env.ctl.assign(assignment(env.repo, "r1", "a1", cmd))
    final = await env.ctl.wait_final("r1")
    assert final.state == ws.RUN_STATE_SUCCEEDED, final.error
    assert env.ctl.states("r1") == [
        ws.RUN_STATE_STARTING,
        ws.RUN_STATE_WORKTREE_READY,
        ws.RUN_STATE_RUNNING,
        ws.RUN_STATE_SUCCEEDED,
    ]
    assert all(u.HasField("time") for u in env.ctl.updates("r1"))
    worktree = env.settings.worktree_root / "a1"
    assert final.worktree == str(worktree) and final.branch == "godel/a1"
    assert final.HasField("exit_code") and final.exit_code == 0
    assert list(final.commits) == [git(env.repo, "rev-parse", "godel/a1")]
    assert git(worktree, "branch", "--show-current") == "godel/a1"
    assert (worktree / "hello.txt").read_text() == "hi\n"
    assert "Godel agent a1" in git(env.repo, "log", "-1", "--format=%an", "godel/a1")
    assert final.result.strip() == "done"
    assert [(line.stream, line.message) for line in env.ctl.log_lines("r1")] == [("stdout", "done")]


async def test_argv_placeholders_and_environment(env: Env) -> None:
    cmd = ["sh", "-c", 'printf "%s|%s|%s|%s|$GODEL_AGENT_ID|$GODEL_TASK\\n" "$@"', "sh"]
    cmd += ["{task}", "{agent_id}", "{model}", "{worktree}"]
    env.ctl.assign(assignment(env.repo, "r1", "a1", cmd, task="fix {it}", model="m1"))
    final = await env.ctl.wait_final("r1")
    worktree = env.settings.worktree_root / "a1"
    assert final.result.strip() == f"fix {{it}}|a1|m1|{worktree}|a1|fix {{it}}"


async def test_failure_reports_exit_code_and_stderr(env: Env) -> None:
    env.ctl.assign(assignment(env.repo, "r1", "a1", ["sh", "-c", "echo oops >&2; exit 3"]))
    final = await env.ctl.wait_final("r1")
    assert final.state == ws.RUN_STATE_FAILED
    assert final.exit_code == 3 and final.error == "exited with code 3"
    [line] = env.ctl.log_lines("r1")
    assert (line.stream, line.message, line.level) == ("stderr", "oops", agent_pb2.LOG_LEVEL_WARN)


async def test_empty_command_fails_clearly(env: Env) -> None:
    env.ctl.assign(assignment(env.repo, "r1", "a1", []))
    final = await env.ctl.wait_final("r1")
    assert (final.state, final.error) == (ws.RUN_STATE_FAILED, "config.command is empty")


async def test_timeout_kills_the_run(env: Env) -> None:
    env.ctl.assign(assignment(env.repo, "r1", "a1", ["sleep", "600"], timeout=0.5))
    final = await env.ctl.wait_final("r1", timeout=15)
    assert (final.state, final.error) == (ws.RUN_STATE_FAILED, "timed out after 0.5s")


async def test_kill_stops_the_whole_process_tree(env: Env) -> None:
    env.ctl.assign(assignment(env.repo, "r1", "a1", ["sh", "-c", "sleep 600 & sleep 600"]))
    await env.ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
    pgid = env.worker.runs["r1"].pid
    await wait_for_async(lambda: len(group_members(pgid)) >= 3, 10, "sh and its two sleeps")
    members = group_members(pgid)
    env.ctl.control("r1", ws.CONTROL_ACTION_KILL, reason="operator")
    ack = await env.ctl.wait_ack("r1", ws.CONTROL_ACTION_KILL)
    assert ack.ok
    # The sleeps would live 600 s: dying within the deadline is the kill's doing.
    await wait_for_async(lambda: not any(alive(pid) for pid in members), 15, "the process tree to die")
    final = await env.ctl.wait_final("r1", timeout=15)
    assert (final.state, final.error) == (ws.RUN_STATE_KILLED, "operator")


async def test_pause_stops_and_resume_continues_the_process(env: Env) -> None:
    env.ctl.assign(assignment(env.repo, "r1", "a1", ["sleep", "600"]))
    await env.ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
    pid = env.worker.runs["r1"].pid
    env.ctl.control("r1", ws.CONTROL_ACTION_PAUSE)
    assert (await env.ctl.wait_ack("r1", ws.CONTROL_ACTION_PAUSE)).ok
    await env.ctl.wait_update("r1", ws.RUN_STATE_PAUSED)
    await wait_for_async(lambda: proc_state(pid) == "T", 15, "the process to stop")
    env.ctl.control("r1", ws.CONTROL_ACTION_RESUME)
    assert (await env.ctl.wait_ack("r1", ws.CONTROL_ACTION_RESUME)).ok
    await wait_for_async(
        lambda: env.ctl.states("r1")[-1] == ws.RUN_STATE_RUNNING, 15, "the run to be running"
    )
    await wait_for_async(lambda: proc_state(pid) not in ("T", None), 15, "the process to continue")
    env.ctl.control("r1", ws.CONTROL_ACTION_KILL)
    assert (await env.ctl.wait_final("r1")).state == ws.RUN_STATE_KILLED


async def test_a_paused_run_is_not_timed_out(env: Env) -> None:
    # Paused from the start, whatever the machine's speed: its 0.8 s of run time never begin.
    env.ctl.assign(assignment(env.repo, "r1", "a1", ["sleep", "600"], timeout=0.8, start_paused=True))
    await env.ctl.wait_update("r1", ws.RUN_STATE_PAUSED)
    with pytest.raises(TimeoutError):
        await env.ctl.wait_final("r1", timeout=1.5)
    env.ctl.control("r1", ws.CONTROL_ACTION_RESUME)
    final = await env.ctl.wait_final("r1", timeout=15)
    assert (final.state, final.error) == (ws.RUN_STATE_FAILED, "timed out after 0.8s")


async def test_start_paused_runs_nothing_until_resumed(env: Env) -> None:
    env.ctl.assign(assignment(env.repo, "r1", "a1", ["sleep", "600"], start_paused=True))
    await env.ctl.wait_update("r1", ws.RUN_STATE_PAUSED)
    assert env.ctl.states("r1") == [ws.RUN_STATE_STARTING, ws.RUN_STATE_WORKTREE_READY, ws.RUN_STATE_PAUSED]
    pid = env.worker.runs["r1"].pid
    await wait_for_async(lambda: proc_state(pid) == "T", 15, "the process to stop")
    env.ctl.control("r1", ws.CONTROL_ACTION_RESUME)
    await env.ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
    env.ctl.control("r1", ws.CONTROL_ACTION_KILL)
    assert (await env.ctl.wait_final("r1")).state == ws.RUN_STATE_KILLED


async def test_rejects_beyond_capacity_and_unknown_runtimes(env: Env) -> None:
    for n in (1, 2):
        env.ctl.assign(assignment(env.repo, f"r{n}", f"a{n}", ["sleep", "600"]))
        await env.ctl.wait_update(f"r{n}", ws.RUN_STATE_RUNNING)
    env.ctl.assign(assignment(env.repo, "r3", "a3", ["true"]))
    final = await env.ctl.wait_final("r3")
    assert (final.state, final.error) == (ws.RUN_STATE_REJECTED, "worker at capacity (2 runs)")
    assert final.reject_reason == ws.REJECT_REASON_CAPACITY  # the agent service tries again later
    env.ctl.control("r1", ws.CONTROL_ACTION_KILL)
    await env.ctl.wait_final("r1")
    env.ctl.assign(assignment(env.repo, "r4", "a4", ["true"], runtime="claude"))
    final = await env.ctl.wait_final("r4")
    assert final.state == ws.RUN_STATE_REJECTED and "unknown runtime 'claude'" in final.error
    assert final.reject_reason == ws.REJECT_REASON_RUNTIME
    assert env.ctl.states("r3") == [ws.RUN_STATE_REJECTED]
    assert env.ctl.states("r4") == [ws.RUN_STATE_REJECTED]
    assert not (env.settings.worktree_root / "a3").exists()
    env.ctl.control("r2", ws.CONTROL_ACTION_KILL)
    await env.ctl.wait_final("r2")


async def test_control_of_an_unknown_run_is_refused(env: Env) -> None:
    env.ctl.control("nope", ws.CONTROL_ACTION_PAUSE)
    ack = await env.ctl.wait_ack("nope", ws.CONTROL_ACTION_PAUSE)
    assert (ack.ok, ack.error) == (False, "unknown run")
    # How the agent service learns that a run its worker does not report is not there.
    env.ctl.control("nope", ws.CONTROL_ACTION_ADOPT)
    ack = await env.ctl.wait_ack("nope", ws.CONTROL_ACTION_ADOPT)
    assert (ack.ok, ack.error) == (False, "unknown run")


async def test_bad_repository_fails_clearly_and_creates_nothing(env: Env, tmp_path: Path) -> None:
    not_git = tmp_path / "plain"
    not_git.mkdir()
    env.ctl.assign(assignment(not_git, "r1", "a1", ["true"]))
    final = await env.ctl.wait_final("r1")
    assert final.state == ws.RUN_STATE_FAILED and "is not a git repository" in final.error
    env.ctl.assign(assignment(tmp_path / "missing", "r2", "a2", ["true"]))
    final = await env.ctl.wait_final("r2")
    assert final.state == ws.RUN_STATE_FAILED and "does not exist" in final.error
    root = env.settings.worktree_root
    assert not root.exists() or not [p for p in root.iterdir() if p.name != ".pids"]
    assert list(not_git.iterdir()) == []
