"""The sandbox every run executes in (bubblewrap), on a real worker, real git and real processes: what
an agent can see, write and reach, its limits, the tool allow-list and key allow-list of the openai
runtime, and a worker that refuses to start without a working sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from godel.v1 import agent_pb2, common_pb2
from godel.v1 import worker_service_pb2 as ws
from godel_server.runtime.agent_rules import DEFAULT_TOOLS, OPENAI_TOOLS, granted_tools
from godel_server.runtime.config import ConfigError, load_worker_settings, url_origin
from godel_server.worker import Worker
from godel_server.worker.procs import OWNER_VARIABLE, kill_leftovers
from godel_server.worker.runtimes.command import render_argv
from godel_server.worker.runtimes.tools import TOOL_SPECS
from godel_server.worker.sandbox import SandboxError
from tests.fakes.openai_server import FakeOpenAI, final, tool_call
from tests.fakes.tcp_listener import tcp_listener
from tests.fakes.worker_controller import FakeController
from tests.fakes.worker_env import (
    RunningWorker,
    alive,
    assignment,
    exists,
    git,
    make_git_repo,
    running_worker,
    worker_settings,
)
from tests.unit.test_worker_process import (
    exit_status,
    kill_worker_running_sleeps,
    last_lines,
    worker_process,
)
from tests.waits import wait_for_async

pytestmark = pytest.mark.timeout(90)

ADMIN_KEY = "godel_sk_admin-secret-0123456789"
WORKER_SECRET = "worker-environment-secret-42"
WORKER_OPENAI_KEY = "sk-worker-key-never-elsewhere"


Env = RunningWorker


async def run_script(
    env: Env, run_id: str, script: str, *, timeout: float = 30.0, **config: object
) -> tuple[ws.RunUpdate, str]:
    """Runs `sh -c script` as agent-<run_id>'s command; returns its final update and its log."""
    a = assignment(env.repo, run_id, f"agent-{run_id}", ["sh", "-c", script])
    a.config.MergeFrom(agent_pb2.AgentConfig(**config))  # type: ignore[arg-type]
    env.ctl.assign(a)
    update = await env.ctl.wait_final(run_id, timeout=timeout)
    return update, "\n".join(line.message for line in env.ctl.log_lines(run_id))


def sandboxed_worker(tmp_path: Path, **env: str) -> contextlib.AbstractAsyncContextManager[Env]:
    return running_worker(tmp_path, GODEL_OPENAI_API_KEY=WORKER_OPENAI_KEY, **env)


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    # What an agent must not get at: keys and databases in GODEL_HOME, the worker's environment,
    # and other agents' worktrees.
    home = tmp_path / "home"
    home.mkdir()
    (home / "admin.key").write_text(ADMIN_KEY + "\n")
    (home / "agent.db").write_text("database-secret\n")
    monkeypatch.setenv("GODEL_TEST_SECRET", WORKER_SECRET)
    async with sandboxed_worker(tmp_path) as running:
        other = running.settings.worktree_root / "other-agent"
        other.mkdir(parents=True)
        (other / "secret.txt").write_text("other-agent-secret\n")
        yield running


def limits(
    *, max_memory_mb: int = 0, max_processes: int = 0, max_cpu_seconds: int = 0
) -> common_pb2.SandboxConfig:
    return common_pb2.SandboxConfig(
        limits=common_pb2.ResourceLimits(
            max_memory_mb=max_memory_mb, max_processes=max_processes, max_cpu_seconds=max_cpu_seconds
        )
    )


async def test_an_agent_cannot_read_keys_databases_other_worktrees_or_the_workers_environment(
    env: Env,
) -> None:
    home, root = env.settings.home, env.settings.worktree_root
    script = f"""
        cat ../../home/admin.key {home}/admin.key {home}/agent.db {root}/other-agent/secret.txt
        ls {root} {home}
        tr '\\0' '\\n' < /proc/$PPID/environ
        cat /proc/*/environ | tr '\\0' '\\n'
        echo "processes: $(ls /proc | grep -c '^[0-9]')"
        env
    """
    _, text = await run_script(env, "r1", script)
    for secret in (ADMIN_KEY, "database-secret", "other-agent-secret", WORKER_SECRET, WORKER_OPENAI_KEY):
        assert secret not in text
    assert "No such file or directory" in text
    assert "GODEL_AGENT_ID=agent-r1" in text and "GODEL_RUN_ID=r1" in text
    assert "GODEL_TEST_SECRET" not in text and "GODEL_OPENAI_API_KEY" not in text
    # Its own PID namespace: bwrap's reaper, sh and the commands of this line.
    [count] = [line for line in text.splitlines() if line.startswith("processes: ")]
    assert int(count.split()[1]) <= 6


async def test_an_agent_cannot_write_outside_its_worktree_but_commits_on_its_branch(env: Env) -> None:
    config_before = (env.repo / ".git" / "config").read_text()
    main_before = git(env.repo, "rev-parse", "main")
    script = f"""
        touch {env.repo}/planted /usr/planted {env.settings.home}/planted
        echo '[core]' >> {env.repo}/.git/config
        echo '#!/bin/sh' > {env.repo}/.git/hooks/pre-commit
        git branch other; git tag planted; git update-ref refs/heads/main HEAD
        echo hi > hello.txt && git add hello.txt && git commit -q -m hi && echo committed
    """
    final, text = await run_script(env, "r1", script)
    assert final.state == ws.RUN_STATE_SUCCEEDED, text
    assert "committed" in text
    assert list(final.commits) == [git(env.repo, "rev-parse", "godel/agent-r1")]
    assert "Read-only file system" in text
    # The host saw none of it: no file, the same config and hooks, main and the tags unmoved.
    assert not any(exists(p) for p in (env.repo / "planted", "/usr/planted", env.settings.home / "planted"))
    assert (env.repo / ".git" / "config").read_text() == config_before
    assert not (env.repo / ".git" / "hooks" / "pre-commit").exists()
    assert git(env.repo, "rev-parse", "main") == main_before
    assert git(env.repo, "branch", "--list", "other") == "" and git(env.repo, "tag") == ""
    git(env.repo, "fsck", "--no-progress")


async def test_without_network_an_agent_cannot_reach_a_local_listener(env: Env) -> None:
    with tcp_listener() as (port, accepted):
        connect = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 5); print('connected')\""
        denied, text = await run_script(env, "r1", connect)
        assert denied.state == ws.RUN_STATE_FAILED and "connected" not in text
        assert "Connection refused" in text or "unreachable" in text
        assert accepted == []
        # The same with egress granted reaches it: the test can tell.
        granted, text = await run_script(env, "r2", connect, sandbox=common_pb2.SandboxConfig(network=True))
        assert granted.state == ws.RUN_STATE_SUCCEEDED, text
        assert "connected" in text and len(accepted) == 1


async def test_an_agent_over_its_memory_limit_is_stopped_with_the_reason(env: Env) -> None:
    grow = 'python3 -c "import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(8 << 20)); time.sleep(0.02)"'
    final, text = await run_script(env, "r1", grow, sandbox=limits(max_memory_mb=64))
    assert final.state == ws.RUN_STATE_FAILED
    assert final.error.startswith("sandbox: memory limit exceeded") and "limit 64 MiB" in final.error
    assert "sandbox: memory limit exceeded" in text


async def test_an_agent_at_its_process_limit_is_stopped_with_the_reason(env: Env) -> None:
    spawn = "for i in $(seq 40); do sleep 30 & done; wait"
    final, _ = await run_script(env, "r1", spawn, sandbox=limits(max_processes=8))
    assert final.state == ws.RUN_STATE_FAILED
    assert final.error.startswith("sandbox: process limit reached") and "limit 8" in final.error


async def test_cpu_time_and_wall_time_limits(env: Env) -> None:
    final, _ = await run_script(
        env, "r1", "while :; do :; done", sandbox=limits(max_cpu_seconds=1), timeout=60
    )
    assert final.state == ws.RUN_STATE_FAILED and final.error.startswith("sandbox: CPU time limit exceeded")
    wall = common_pb2.SandboxConfig(
        limits=common_pb2.ResourceLimits(max_duration=duration_pb2.Duration(nanos=500_000_000))
    )
    final, _ = await run_script(env, "r2", "sleep 30", sandbox=wall)
    assert (final.state, final.error) == (ws.RUN_STATE_FAILED, "timed out after 0.5s")


async def test_the_task_is_never_shell_code(env: Env) -> None:
    a = assignment(
        env.repo, "r1", "a1", ["sh", "-c", "echo {task}"], task="$(touch pwned); `touch pwned2` it"
    )
    env.ctl.assign(a)
    final = await env.ctl.wait_final("r1")
    assert final.state == ws.RUN_STATE_SUCCEEDED
    assert final.result.strip() == "$(touch pwned); `touch pwned2` it"
    worktree = env.settings.worktree_root / "a1"
    assert not (worktree / "pwned").exists() and not (worktree / "pwned2").exists()


async def test_extra_paths_only_under_the_workers_grant(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "data").mkdir(parents=True)
    (shared / "data" / "input.txt").write_text("shared input\n")
    async with sandboxed_worker(tmp_path, GODEL_SANDBOX_PATHS=f"{shared},{tmp_path}") as env:
        (shared / "out").mkdir()
        final, text = await run_script(
            env,
            "r2",
            f"cat {shared}/data/input.txt && echo out > {shared}/out/result.txt && echo wrote",
            sandbox=common_pb2.SandboxConfig(
                read_paths=[str(shared / "data")], write_paths=[str(shared / "out")]
            ),
        )
        assert final.state == ws.RUN_STATE_SUCCEEDED, text
        assert "shared input" in text and (shared / "out" / "result.txt").read_text() == "out\n"
        for n, (name, paths) in enumerate(
            (
                ("read_paths", ["/etc"]),  # not under GODEL_SANDBOX_PATHS
                ("read_paths", [str(env.settings.home)]),  # under it, but the worker's data
                ("write_paths", [str(tmp_path)]),  # would show the worktree root
                ("read_paths", ["relative/path"]),
            )
        ):
            sandbox = common_pb2.SandboxConfig()
            getattr(sandbox, name).extend(paths)
            final, text = await run_script(env, f"refused{n}", "true", sandbox=sandbox)
            assert final.state == ws.RUN_STATE_FAILED
            assert final.error.startswith(f"safety: config.sandbox.{name}: "), final.error
            assert final.error in text  # the refusal is in the agent's log too


async def test_killing_the_worker_kills_the_sandboxed_tree_at_once(tmp_path: Path) -> None:
    ctl = await FakeController().start()
    members: list[int] = []
    try:
        # bwrap, its reaper (PID 1 of the sandbox), sh and two sleeps.
        await kill_worker_running_sleeps(tmp_path, ctl, members, 5)
        # No process of the sandbox outlives the worker (unsandboxed, the sleeps would, but for the
        # worker's reaper: see test_worker_process.py).
        await wait_for_async(lambda: not any(alive(pid) for pid in members), 15, "the sandboxed tree to die")
    finally:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await ctl.stop()


# A bwrap that holds the sandbox of a `sleep 600` in its setup (--block-fd: after the namespaces,
# before the command) until a byte comes through the FIFO, where the inner bwrap has not asked for
# its death signal yet; the worker's start-up probe goes straight through.
_HELD_BWRAP = """#!/bin/sh
case "$*" in
  *"sleep 600"*) exec 9<>"{fifo}"; exec {bwrap} --block-fd 9 "$@" ;;
  *) exec {bwrap} "$@" ;;
esac
"""


async def test_a_worker_killed_while_bwrap_sets_a_sandbox_up_leaves_nothing_running(tmp_path: Path) -> None:
    ctl = await FakeController().start()
    root, fifo, held = tmp_path / "worktrees", tmp_path / "release", tmp_path / "held-bwrap"
    os.mkfifo(fifo)
    held.write_text(_HELD_BWRAP.format(fifo=fifo, bwrap=shutil.which("bwrap")))
    held.chmod(0o755)
    repo = make_git_repo(tmp_path / "repo")
    try:
        async with worker_process(tmp_path, ctl.address, GODEL_SANDBOX_BWRAP=str(held)) as proc:
            await ctl.wait_stream(timeout=20)
            ctl.assign(assignment(repo, "r1", "a1", ["sleep", "600"]))
            await ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
            # The outer bwrap and the inner one, waiting in the sandbox's setup.
            await wait_for_async(lambda: len(_marked_for(root)) >= 2, 15, "the inner bwrap")
            outer = min(_marked_for(root))
            proc.kill()
            await proc.wait()
        await wait_for_async(lambda: not alive(outer), 15, "the outer bwrap to die with the worker")
        with contextlib.suppress(OSError):  # ENXIO: no reader, the inner bwrap is gone already
            release = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(release, b"x")
            os.close(release)
        await wait_for_async(lambda: not _marked_for(root), 15, "the sandbox to die with its worker")
    finally:
        for pid in _marked_for(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await ctl.stop()


# A stand-in worker: starts one sandboxed `sleep` the way a run does, says so, and waits to be killed.
_SPAWNING_WORKER = """
import asyncio, shutil, sys
from pathlib import Path
from godel_server.worker.procs import spawn_group
from godel_server.worker.sandbox import Policy, Sandbox, system_mounts

async def main():
    box = Sandbox("race", Policy(), shutil.which("bwrap"), (*system_mounts(), "--proc", "/proc", "--dev", "/dev"))
    argv, env = box.command(["sleep", "600"], {"PATH": "/usr/bin:/bin"}, Path("/"))
    await spawn_group(argv, Path("/"), env, root=Path(sys.argv[1]))
    print("spawned", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _marked_for(root: Path) -> list[int]:
    """Live processes marked as started by a worker on `root`."""
    suffix = f":{root}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            environ = (entry / "environ").read_bytes().split(b"\0")
            if any(e.startswith(f"{OWNER_VARIABLE}=".encode()) and e.endswith(suffix) for e in environ):
                found.append(int(entry.name))
    return [pid for pid in found if alive(pid)]


async def test_a_worker_killed_while_bwrap_sets_a_sandbox_up_leaves_it_to_the_next_sweep(
    tmp_path: Path,
) -> None:
    # As root, bwrap loses the death signal while it sets the sandbox up: a worker killed in those
    # milliseconds leaves the sandbox (and the agent in it) running. The sweep a worker makes at
    # start finds it by its owner mark.
    root = tmp_path / "worktrees"
    survived, seen = 0, set[int]()
    try:
        for _ in range(12):
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _SPAWNING_WORKER, str(root), stdout=asyncio.subprocess.PIPE
            )
            assert worker.stdout is not None
            assert await asyncio.wait_for(worker.stdout.readline(), 60) == b"spawned\n"
            await asyncio.sleep(random.random() * 0.006)
            worker.kill()
            await worker.wait()
            # bwrap's own death signal, where it holds, acts within a moment.
            await asyncio.sleep(0.3)
            left = set(_marked_for(root))
            survived += bool(left - seen)
            seen |= left
        logging.getLogger(__name__).info(
            "sandboxes outliving their worker before the sweep: %d of 12", survived
        )
        kill_leftovers(root)
        await wait_for_async(lambda: not _marked_for(root), 15, "the sweep to leave nothing of the sandboxes")
    finally:
        for pid in _marked_for(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_a_worker_refuses_to_start_without_a_working_sandbox(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    # A "bwrap" that runs the command without isolating anything: the probe sees GODEL_HOME.
    fake = tmp_path / "fake-bwrap"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n')
    fake.chmod(0o755)
    for bwrap, reason in (
        (str(tmp_path / "missing-bwrap"), "is not installed"),
        ("false", "does not work here"),
        (str(fake), "is visible in the sandbox"),
    ):
        worker = Worker(worker_settings(tmp_path, "127.0.0.1:1", GODEL_SANDBOX_BWRAP=bwrap))
        with pytest.raises(SandboxError, match=reason):
            await worker.start()
        assert not worker.runs
    # As a process: exit status 2 and a message that says why.
    async with worker_process(tmp_path, "127.0.0.1:1", GODEL_SANDBOX_BWRAP="false") as proc:
        assert await exit_status(proc, tmp_path / "worker.log", 30) == 2
    assert "refuses to start without a sandbox" in last_lines(tmp_path / "worker.log")


async def test_sandbox_off_runs_unsandboxed_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with sandboxed_worker(tmp_path, GODEL_SANDBOX="off", GODEL_SANDBOX_BWRAP="false") as env:
        assert any("UNSAFE" in r.getMessage() for r in caplog.records)
        final, text = await run_script(env, "r1", "echo ran")
        assert final.state == ws.RUN_STATE_SUCCEEDED
        assert "sandbox: OFF" in text and "ran" in text


@pytest.fixture
def openai(tmp_path: Path) -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    """The deployment's endpoint (GODEL_OPENAI_BASE_URL) and another one."""
    with FakeOpenAI() as home_endpoint, FakeOpenAI() as elsewhere:
        yield home_endpoint, elsewhere


def _openai_run(repo: Path, run_id: str, **config: object) -> ws.RunAssignment:
    a = assignment(repo, run_id, f"agent-{run_id}", runtime="openai", task="do it", model="gpt-test")
    a.config.MergeFrom(agent_pb2.AgentConfig(**config))  # type: ignore[arg-type]
    return a


async def test_openai_agent_without_shell_cannot_run_a_command(
    tmp_path: Path, openai: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    fake, _ = openai
    fake.add(tool_call("shell", {"command": "touch pwned"}), final("done"))
    async with sandboxed_worker(tmp_path, GODEL_OPENAI_BASE_URL=fake.base_url) as env:
        env.ctl.assign(_openai_run(env.repo, "r1"))
        result = await env.ctl.wait_final("r1")
        assert result.state == ws.RUN_STATE_FAILED
        assert result.error.startswith("safety: config.tools: the model called 'shell', which is not granted")
        assert not (env.settings.worktree_root / "agent-r1" / "pwned").exists()
        offered = {t["function"]["name"] for t in fake.requests[0]["tools"]}
        assert offered == {"read_file", "write_file", "git_commit"}
        assert any(line.message == result.error for line in env.ctl.log_lines("r1"))
        assert fake.completions == 1  # nothing more was asked of the model
        # An unknown tool in the allow-list is refused before any request.
        env.ctl.assign(_openai_run(env.repo, "r2", tools=["read_file", "browser"]))
        result = await env.ctl.wait_final("r2")
        assert result.state == ws.RUN_STATE_FAILED
        assert result.error.startswith("safety: config.tools: unknown tool 'browser'")


async def test_openai_tools_run_in_the_sandbox(tmp_path: Path, openai: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    fake, _ = openai
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "admin.key").write_text(ADMIN_KEY)
    fake.add(
        tool_call("shell", {"command": "cat ../../home/admin.key; tr '\\0' '\\n' < /proc/$PPID/environ"}),
        tool_call("write_file", {"path": "notes/a.txt", "content": "hello\n"}),
        tool_call("read_file", {"path": "notes/a.txt"}),
        tool_call("git_commit", {"message": "notes"}),
        final("done"),
    )
    async with sandboxed_worker(tmp_path, GODEL_OPENAI_BASE_URL=fake.base_url) as env:
        env.ctl.assign(_openai_run(env.repo, "r1", tools=["shell", "read_file", "write_file", "git_commit"]))
        result = await env.ctl.wait_final("r1")
        assert result.state == ws.RUN_STATE_SUCCEEDED, result.error
        tool_results = [m.message.content for m in env.ctl.session_messages("r1") if m.message.role == "tool"]
        assert ADMIN_KEY not in tool_results[0] and WORKER_OPENAI_KEY not in tool_results[0]
        assert "No such file or directory" in tool_results[0]
        assert tool_results[2] == "hello\n"
        assert list(result.commits) == [git(env.repo, "rev-parse", "godel/agent-r1")]


async def test_the_workers_key_goes_only_to_allowed_origins(
    tmp_path: Path, openai: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    home_endpoint, elsewhere = openai
    async with sandboxed_worker(tmp_path, GODEL_OPENAI_BASE_URL=home_endpoint.base_url + "/v1") as env:
        env.ctl.assign(_openai_run(env.repo, "r1"))
        assert (await env.ctl.wait_final("r1")).state == ws.RUN_STATE_SUCCEEDED
        assert home_endpoint.headers[0]["authorization"] == f"Bearer {WORKER_OPENAI_KEY}"
        # Another endpoint gets no key of the worker's, and the agent's log says why.
        env.ctl.assign(_openai_run(env.repo, "r2", endpoint=elsewhere.base_url))
        assert (await env.ctl.wait_final("r2")).state == ws.RUN_STATE_SUCCEEDED
        assert "authorization" not in elsewhere.headers[0]
        assert any("not on GODEL_OPENAI_KEY_ORIGINS" in line.message for line in env.ctl.log_lines("r2"))
        # An agent may bring its own key for it.
        env.ctl.assign(
            _openai_run(env.repo, "r3", endpoint=elsewhere.base_url, env={"OPENAI_API_KEY": "sk-own"})
        )
        assert (await env.ctl.wait_final("r3")).state == ws.RUN_STATE_SUCCEEDED
        assert elsewhere.headers[1]["authorization"] == "Bearer sk-own"
        assert all(WORKER_OPENAI_KEY not in h.get("authorization", "") for h in elsewhere.headers)


def test_every_tool_has_a_spec_the_default_leaves_shell_out_and_the_specs_groups_expand() -> None:
    assert tuple(TOOL_SPECS) == OPENAI_TOOLS
    assert granted_tools([]) == DEFAULT_TOOLS and "shell" not in DEFAULT_TOOLS
    assert granted_tools(["git", "file"]) == ("read_file", "write_file", "git_commit")
    assert granted_tools(["bash", "read_file"]) == ("shell", "read_file")


def test_placeholders_inside_a_shell_script_are_quoted_and_a_whole_script_placeholder_is_the_script() -> None:
    values = {"task": "a'b; rm -rf /", "worktree": "/w x", "agent_id": "a1", "model": "m"}
    assert render_argv(["sh", "-c", "echo {task} {worktree}", "n", "{task}"], values) == [
        "sh",
        "-c",
        "echo 'a'\"'\"'b; rm -rf /' '/w x'",
        "n",
        "a'b; rm -rf /",
    ]
    assert render_argv(["bash", "-o", "pipefail", "-ec", "x={agent_id}"], values)[-1] == "x=a1"
    assert render_argv(["sh", "-c", "{task}"], values) == ["sh", "-c", "a'b; rm -rf /"]
    # Not a shell script: a plain argv element, or a script file's argument.
    assert render_argv(["python3", "-c", "{task}"], values)[-1] == "a'b; rm -rf /"
    assert render_argv(["sh", "run.sh", "-c", "{task}"], values)[-1] == "a'b; rm -rf /"


def test_sandbox_and_key_settings(tmp_path: Path) -> None:
    s = load_worker_settings({"GODEL_HOME": str(tmp_path / "home")})
    assert (s.sandbox, s.bwrap, s.sandbox_paths) == ("bwrap", "bwrap", ())
    assert (s.max_memory_mb, s.max_processes, s.max_cpu_seconds) == (0, 512, 0)
    assert s.worktree_root == tmp_path / "home-worktrees"
    assert s.openai_key_origins == ("https://api.openai.com",)
    s = load_worker_settings(
        {
            "GODEL_SANDBOX": "OFF",
            "GODEL_SANDBOX_PATHS": "/srv/data, /opt/tools",
            "GODEL_OPENAI_BASE_URL": "http://LocalHost:8000/v1",
            "GODEL_SANDBOX_MAX_MEMORY_MB": "2048",
        }
    )
    assert s.sandbox == "off" and s.sandbox_paths == (Path("/srv/data"), Path("/opt/tools"))
    assert s.openai_key_origins == ("http://localhost:8000",) and s.max_memory_mb == 2048
    assert url_origin("https://api.openai.com:443/v1/chat") == "https://api.openai.com"
    assert url_origin("not a url") == ""
    for bad in (
        {"GODEL_SANDBOX": "docker"},
        {"GODEL_SANDBOX_PATHS": "relative/dir"},
        {"GODEL_SANDBOX_MAX_PROCESSES": "-1"},
        {"GODEL_OPENAI_KEY_ORIGINS": "no-scheme"},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            load_worker_settings(bad)
