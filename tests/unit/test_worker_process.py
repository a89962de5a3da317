"""`godel-server worker` as a process: flags, SIGTERM, and what happens when the worker dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.worker.procs import group_members
from tests.fakes.worker_controller import FakeController
from tests.fakes.worker_env import alive, assignment, make_git_repo, wait_until

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def worker_process(
    tmp_path: Path, address: str, *flags: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "GODEL_HOME": str(tmp_path / "home"),
        "GODEL_WORKTREE_ROOT": str(tmp_path / "worktrees"),
        "GODEL_WORKER_CONNECT": "127.0.0.1:1",  # overridden by --connect
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "godel_server",
        "worker",
        "--connect",
        address,
        *flags,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_reports_runs_failed_and_exits(tmp_path: Path) -> None:
    ctl = await FakeController().start()
    repo = make_git_repo(tmp_path / "repo")
    try:
        async with worker_process(tmp_path, ctl.address, "--capacity", "5") as proc:
            stream = await ctl.wait_stream(timeout=20)
            assert stream.hello is not None and stream.hello.capacity == 5
            ctl.assign(assignment(repo, "r1", "a1", ["sleep", "600"]))
            await ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
            proc.send_signal(signal.SIGTERM)
            final = await ctl.wait_final("r1", timeout=5)
            assert (final.state, final.error) == (ws.RUN_STATE_FAILED, "worker shutting down")
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            assert proc.stderr is not None
            lines = (await proc.stderr.read()).decode().splitlines()
            records = [json.loads(line) for line in lines if line.startswith("{")]
            assert any(r["msg"] == "worker connected" and r["service"] == "worker" for r in records)
    finally:
        await ctl.stop()


async def test_a_killed_worker_leaves_nothing_running_after_its_restart(tmp_path: Path) -> None:
    ctl = await FakeController().start()
    repo = make_git_repo(tmp_path / "repo")
    try:
        async with worker_process(tmp_path, ctl.address) as proc:
            await ctl.wait_stream(timeout=20)
            ctl.assign(assignment(repo, "r1", "a1", ["sh", "-c", "sleep 600 & sleep 600"]))
            await ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
            beat = await ctl.wait_for(
                lambda r: r.WhichOneof("message") == "heartbeat" and any(s.pid for s in r.heartbeat.runs)
            )
            pgid = beat.heartbeat.runs[0].pid
            await wait_until(lambda: len(group_members(pgid)) >= 3)
            members = group_members(pgid)
            proc.kill()
            await proc.wait()
        # The direct child dies with the worker (PR_SET_PDEATHSIG) ...
        await wait_until(lambda: not alive(pgid), timeout=2)
        survivors = [pid for pid in members if alive(pid)]
        assert survivors  # the grandchildren have no death signal of their own
        # ... and a new worker on the same worktree root kills what is left of the group.
        count = len(ctl.streams)
        async with worker_process(tmp_path, ctl.address) as proc:
            await ctl.wait_stream(timeout=20, after=count)
            await wait_until(lambda: not any(alive(pid) for pid in survivors), timeout=2)
            assert not list((tmp_path / "worktrees" / ".pids").glob("*/r1"))
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        for pid in members if "members" in locals() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await ctl.stop()
