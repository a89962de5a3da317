"""`godel-server worker` as a process: flags, SIGTERM, and what happens when the worker dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.worker import procs
from godel_server.worker.procs import group_members
from tests.fakes.worker_controller import FakeController
from tests.fakes.worker_env import alive, assignment, make_git_repo
from tests.waits import wait_for_async

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def worker_process(
    tmp_path: Path, address: str, *flags: str, **extra_env: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "GODEL_HOME": str(tmp_path / "home"),
        "GODEL_WORKTREE_ROOT": str(tmp_path / "worktrees"),
        "GODEL_WORKER_CONNECT": "127.0.0.1:1",  # overridden by --connect
        **extra_env,
    }
    # Its log goes to a file: a pipe nobody reads fills up, and a worker blocked writing its log
    # cannot exit on SIGTERM.
    log = (tmp_path / "worker.log").open("ab")
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
        stderr=log,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


async def exit_status(proc: asyncio.subprocess.Process, log: Path, timeout: float = 20) -> int:
    """The worker's exit status once it exits; fails with its last log lines when it is still
    running after `timeout` seconds."""
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        pytest.fail(f"the worker was still running after {timeout} s; its log ends:\n{last_lines(log)}")


def last_lines(log: Path, count: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-count:])


async def test_sigterm_reports_runs_lost_and_exits(tmp_path: Path) -> None:
    ctl = await FakeController().start()
    repo = make_git_repo(tmp_path / "repo")
    try:
        async with worker_process(tmp_path, ctl.address, "--capacity", "5") as proc:
            stream = await ctl.wait_stream(timeout=20)
            assert stream.hello is not None and stream.hello.capacity == 5
            ctl.assign(assignment(repo, "r1", "a1", ["sleep", "600"]))
            await ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
            reaper = reaper_of(proc.pid)
            proc.send_signal(signal.SIGTERM)
            final = await ctl.wait_final("r1", timeout=5)
            assert (final.state, final.error) == (ws.RUN_STATE_LOST, "worker shutting down")
            assert await exit_status(proc, tmp_path / "worker.log") == 0
            # A worker that stops tells its reaper (worker/reaper.py), which ends.
            await wait_for_async(lambda: not alive(reaper), 15, "the reaper to end with the worker")
            lines = (tmp_path / "worker.log").read_text().splitlines()
            records = [json.loads(line) for line in lines if line.startswith("{")]
            assert any(r["msg"] == "worker connected" and r["service"] == "worker" for r in records)
    finally:
        await ctl.stop()


async def kill_worker_running_sleeps(
    tmp_path: Path,
    ctl: FakeController,
    members: list[int],
    at_least: int,
    before_kill: Callable[[int], None] = lambda worker: None,
    **env: str,
) -> int:
    """Runs `sleep 600 & sleep 600` on a worker process, waits for `at_least` processes in the run's
    group (appended to `members`), calls `before_kill` with the worker's pid, SIGKILLs the worker and
    returns the group's id."""
    repo = make_git_repo(tmp_path / "repo")
    async with worker_process(tmp_path, ctl.address, **env) as proc:
        await ctl.wait_stream(timeout=20)
        ctl.assign(assignment(repo, "r1", "a1", ["sh", "-c", "sleep 600 & sleep 600"]))
        await ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
        beat = await ctl.wait_for(
            lambda r: r.WhichOneof("message") == "heartbeat" and any(s.pid for s in r.heartbeat.runs)
        )
        pgid = beat.heartbeat.runs[0].pid
        await wait_for_async(
            lambda: len(group_members(pgid)) >= at_least, 10, f"{at_least} processes in the run"
        )
        members.extend(group_members(pgid))
        before_kill(proc.pid)
        proc.kill()
        await proc.wait()
    return pgid


def reaper_of(worker: int) -> int:
    """The pid of the worker's reaper (worker/reaper.py): its child that runs procs.py."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if (
                not entry.name.isdigit()
                or int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != worker
            ):
                continue
            if procs.__file__.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                return int(entry.name)
    raise AssertionError(f"worker {worker} has no reaper")


async def test_a_killed_worker_leaves_nothing_of_its_runs_running(tmp_path: Path) -> None:
    # Unsandboxed, a run's grandchildren have no death signal of their own (in a sandbox the tree is
    # a PID namespace, see test_worker_sandbox.py): the worker's reaper kills them.
    ctl = await FakeController().start()
    members: list[int] = []
    try:
        pgid = await kill_worker_running_sleeps(tmp_path, ctl, members, 3, GODEL_SANDBOX="off")
        await wait_for_async(
            lambda: not any(alive(pid) for pid in [pgid, *members]), 15, "the run's processes to die"
        )
    finally:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await ctl.stop()


async def test_a_worker_killed_with_its_reaper_leaves_nothing_running_after_its_restart(
    tmp_path: Path,
) -> None:
    ctl = await FakeController().start()
    members: list[int] = []
    try:
        pgid = await kill_worker_running_sleeps(
            tmp_path,
            ctl,
            members,
            3,
            before_kill=lambda worker: os.kill(reaper_of(worker), signal.SIGKILL),
            GODEL_SANDBOX="off",
        )
        # The direct child dies with the worker (PR_SET_PDEATHSIG) ...
        await wait_for_async(lambda: not alive(pgid), 15, "the worker's direct child to die with it")
        survivors = [pid for pid in members if alive(pid)]
        assert survivors  # the grandchildren have no death signal of their own, and no reaper
        # ... and a new worker on the same worktree root kills what is left of the group.
        count = len(ctl.streams)
        async with worker_process(tmp_path, ctl.address, GODEL_SANDBOX="off"):
            await ctl.wait_stream(timeout=20, after=count)
            await wait_for_async(
                lambda: not any(alive(pid) for pid in survivors), 15, "the orphans to be killed"
            )
            assert not list((tmp_path / "worktrees" / ".pids").glob("*/r1"))
    finally:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await ctl.stop()


async def test_a_restarted_worker_is_the_same_worker_and_reports_what_died_with_it(tmp_path: Path) -> None:
    ctl = await FakeController(acks=False).start()  # nothing gets acknowledged before the crash
    repo = make_git_repo(tmp_path / "repo")
    journal = tmp_path / "home" / "workers" / "0" / "runs" / "r1"
    try:
        async with worker_process(tmp_path, ctl.address) as proc:
            before = await ctl.wait_stream(timeout=20)
            ctl.assign(assignment(repo, "r1", "a1", ["sleep", "600"]))
            running = await ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
            assert journal.exists()
            proc.kill()
            await proc.wait()
        count = len(ctl.streams)
        ctl.acks = True
        async with worker_process(tmp_path, ctl.address) as proc:
            stream = await ctl.wait_stream(timeout=20, after=count)
            assert stream.hello is not None and before.hello is not None
            assert stream.hello.worker_id == before.hello.worker_id
            assert [(s.run_id, s.state) for s in stream.hello.runs] == [("r1", ws.RUN_STATE_LOST)]
            ctl.control("r1", ws.CONTROL_ACTION_ADOPT, stream=stream)
            lost = await ctl.wait_for(
                lambda r: r.WhichOneof("message") == "update" and r.update.state == ws.RUN_STATE_LOST,
                source=stream.received,
            )
            assert lost.update.error == "the worker restarted; the run ended with its previous process"
            # What the dead process never had acknowledged comes first, as it was.
            resent = [r.update for r in stream.received if r.WhichOneof("message") == "update"]
            assert running.seq in [u.seq for u in resent] and lost.update.seq > running.seq
            await wait_for_async(lambda: not journal.exists(), 5, "the journal to go")
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc, tmp_path / "worker.log") == 0
    finally:
        await ctl.stop()
