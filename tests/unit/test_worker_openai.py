"""The worker's "openai" runtime against the scripted FakeOpenAI endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.runtime.config import WorkerSettings
from godel_server.worker import Worker
from godel_server.worker.procs import group_members
from godel_server.worker.runtimes.tools import TOOL_SPECS
from tests.fakes.openai_server import FakeOpenAI, final, http_error, tool_call, tool_calls
from tests.fakes.worker_controller import FakeController
from tests.fakes.worker_env import alive, assignment, git, running_worker
from tests.waits import wait_for_async

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-secret-123"


@dataclass
class Env:
    ctl: FakeController
    worker: Worker
    repo: Path
    settings: WorkerSettings
    fake: FakeOpenAI


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    with FakeOpenAI(prompt_tokens=100, completion_tokens=20) as fake:
        async with running_worker(
            tmp_path,
            GODEL_OPENAI_BASE_URL=fake.base_url + "/v1/",
            GODEL_OPENAI_API_KEY=KEY,
            GODEL_WORKER_MAX_STEPS="4",
        ) as w:
            yield Env(w.ctl, w.worker, w.repo, w.settings, fake)


def _run(env: Env, run_id: str = "r1", **kw: object) -> ws.RunAssignment:
    a = assignment(env.repo, run_id, "a1", runtime="openai", task="write hello", model="gpt-test", **kw)  # type: ignore[arg-type]
    a.config.tools.extend(TOOL_SPECS)  # every tool: the default leaves `shell` out
    return a


def _everything_sent(env: Env) -> str:
    return "\n".join(str(r) for r in env.ctl.received)


async def test_tool_loop_writes_commits_and_reports(env: Env) -> None:
    env.fake.add(
        tool_call("write_file", {"path": "docs/hello.txt", "content": "hello\n"}),
        tool_calls([("read_file", {"path": "docs/hello.txt"}), ("git_commit", {"message": "add hello"})]),
        final("All done."),
    )
    env.ctl.assign(_run(env))
    result = await env.ctl.wait_final("r1")
    assert result.state == ws.RUN_STATE_SUCCEEDED, result.error
    assert result.result == "All done."
    worktree = env.settings.worktree_root / "a1"
    assert (worktree / "docs" / "hello.txt").read_text() == "hello\n"
    head = git(env.repo, "rev-parse", "godel/a1")
    assert list(result.commits) == [head]
    assert git(env.repo, "log", "-1", "--format=%s|%an", "godel/a1") == "add hello|Godel agent a1"
    # The commit was reported as soon as the tool made it.
    running = [u for u in env.ctl.updates("r1") if u.state == ws.RUN_STATE_RUNNING and u.commits]
    assert running and list(running[0].commits) == [head]
    # Usage per completion.
    usage = env.ctl.usage("r1")
    assert sum(u.prompt_tokens for u in usage) == 300 and sum(u.completion_tokens for u in usage) == 60
    assert {u.model for u in usage} == {"gpt-test"}
    # Session: system, user, then assistant/tool messages in order.
    roles = [m.message.role for m in env.ctl.session_messages("r1")]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "tool", "assistant"]
    tool_msgs = [m.message for m in env.ctl.session_messages("r1") if m.message.role == "tool"]
    assert tool_msgs[1].name == "read_file" and tool_msgs[1].content == "hello\n"
    # The requests: streaming with usage, tools offered, results sent back, the key as bearer.
    first, second, third = env.fake.requests
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert first["model"] == "gpt-test"
    assert {t["function"]["name"] for t in first["tools"]} == {
        "shell",
        "read_file",
        "write_file",
        "git_commit",
    }
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert second["messages"][-1]["role"] == "tool" and "wrote 6 bytes" in second["messages"][-1]["content"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "write_file"
    assert third["messages"][-1]["content"].startswith("committed ")
    assert env.fake.headers[0]["authorization"] == f"Bearer {KEY}"
    assert any(line.stream == "tool" and "write_file" in line.message for line in env.ctl.log_lines("r1"))
    assert KEY not in _everything_sent(env)


async def test_paths_outside_the_worktree_are_rejected(env: Env, tmp_path: Path) -> None:
    env.fake.add(
        tool_call("read_file", {"path": "../../../../etc/hostname"}),
        tool_call("write_file", {"path": str(tmp_path / "outside.txt"), "content": "x"}),
        tool_call("write_file", {"path": ".git", "content": "x"}),
        final("gave up"),
    )
    env.ctl.assign(_run(env))
    result = await env.ctl.wait_final("r1")
    assert result.state == ws.RUN_STATE_SUCCEEDED
    tool_results = [m.message.content for m in env.ctl.session_messages("r1") if m.message.role == "tool"]
    assert [t.split(":")[0] for t in tool_results] == ["error", "error", "error"]
    assert "outside the worktree" in tool_results[0] and "outside the worktree" in tool_results[1]
    assert not (tmp_path / "outside.txt").exists()


async def test_shell_tool_and_sampling_settings(env: Env) -> None:
    env.fake.add(tool_call("shell", {"command": "echo out; echo err >&2; pwd; exit 2"}), final("ok"))
    a = _run(env)
    a.config.temperature = 0.25
    a.config.max_tokens = 512
    env.ctl.assign(a)
    assert (await env.ctl.wait_final("r1")).state == ws.RUN_STATE_SUCCEEDED
    [tool] = [m.message.content for m in env.ctl.session_messages("r1") if m.message.role == "tool"]
    lines = tool.splitlines()
    assert lines[0] == "exited with code 2" and "out" in lines and "err" in lines
    assert str(env.settings.worktree_root / "a1") in lines
    assert (env.fake.requests[0]["temperature"], env.fake.requests[0]["max_tokens"]) == (0.25, 512)


async def test_http_errors_fail_the_run_without_leaking_the_key(env: Env) -> None:
    env.fake.add(http_error(500, json.dumps({"error": {"message": "model overloaded"}})))
    env.ctl.assign(_run(env))
    result = await env.ctl.wait_final("r1")
    assert result.state == ws.RUN_STATE_FAILED
    assert "HTTP 500" in result.error and "model overloaded" in result.error
    assert KEY not in _everything_sent(env)


async def test_unreachable_endpoint_fails_clearly(env: Env) -> None:
    a = _run(env)
    a.config.endpoint = "http://127.0.0.1:1"
    env.ctl.assign(a)
    result = await env.ctl.wait_final("r1")
    assert (
        result.state == ws.RUN_STATE_FAILED
        and "request to http://127.0.0.1:1/v1/chat/completions failed" in result.error
    )


async def test_too_many_steps_fail(env: Env) -> None:
    env.fake.default = tool_call("shell", {"command": "true"})
    env.ctl.assign(_run(env))
    result = await env.ctl.wait_final("r1")
    assert result.state == ws.RUN_STATE_FAILED and "no final answer after 4 completions" in result.error
    assert env.fake.completions == 4


async def test_kill_stops_a_running_tool_at_once(env: Env) -> None:
    env.fake.add(tool_call("shell", {"command": "sleep 600 & sleep 600"}))
    env.ctl.assign(_run(env))
    await env.ctl.wait_for(
        lambda r: r.WhichOneof("message") == "logs" and any(line.stream == "tool" for line in r.logs.lines)
    )
    run = env.worker.runs["r1"]
    await wait_for_async(
        lambda: bool(run._pgids) and len(group_members(next(iter(run._pgids)))) >= 3, 10, "sh and its sleeps"
    )
    members = group_members(next(iter(run._pgids)))
    env.ctl.control("r1", ws.CONTROL_ACTION_KILL)
    # The sleeps would live 600 s: dying within the deadline is the kill's doing.
    await wait_for_async(lambda: not any(alive(pid) for pid in members), 15, "the tool's processes to die")
    assert (await env.ctl.wait_final("r1", timeout=15)).state == ws.RUN_STATE_KILLED


async def test_pause_blocks_the_next_request(env: Env) -> None:
    env.fake.add(final("finished"))
    env.ctl.assign(_run(env, start_paused=True))
    await env.ctl.wait_update("r1", ws.RUN_STATE_PAUSED)
    with pytest.raises(TimeoutError):
        await env.ctl.wait_final("r1", timeout=0.5)
    assert env.fake.requests == []
    env.ctl.control("r1", ws.CONTROL_ACTION_RESUME)
    result = await env.ctl.wait_final("r1")
    assert (result.state, result.result) == (ws.RUN_STATE_SUCCEEDED, "finished")
