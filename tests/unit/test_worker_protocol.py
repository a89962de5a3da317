"""The worker side of WorkerService.Connect: hello/welcome/heartbeats, run ownership across
replicas (ADOPT), buffering while the owner is unreachable, and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.worker import Worker, connection
from tests.fakes.worker_controller import FakeController
from tests.fakes.worker_env import assignment, make_git_repo, worker_settings
from tests.waits import wait_for_async

pytestmark = pytest.mark.timeout(60)


GATE = ".gate"


def gated(first: str, last: str) -> list[str]:
    """A command that prints `first`, waits until the test opens the gate, then prints `last`: the
    run cannot end before the test has done what it must do while the run still runs."""
    return ["sh", "-c", f"echo {first}; until [ -e {GATE} ]; do sleep 0.05; done; echo {last}"]


def open_gate(worker: Worker, run_id: str) -> None:
    """Creates the gate file in the run's worktree (its working directory, inside any sandbox)."""
    (worker.runs[run_id].worktree_path / GATE).touch()


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[FakeController, FakeController]]:
    a, b = await FakeController("replica-a").start(), await FakeController("replica-b").start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


@asynccontextmanager
async def connected_worker(
    tmp_path: Path, *controllers: FakeController
) -> AsyncIterator[tuple[Worker, Path]]:
    """A worker connected to every one of `controllers` (each has its stream), and a git repository
    for its runs; the worker is stopped at the end."""
    repo = make_git_repo(tmp_path / "repo")
    worker = Worker(worker_settings(tmp_path, *(ctl.address for ctl in controllers)))
    await worker.start()
    try:
        for ctl in controllers:
            await ctl.wait_stream()
        yield worker, repo
    finally:
        await worker.stop()


def _kinds(ctl: FakeController, run_id: str) -> list[str]:
    out: list[str] = []
    for r in ctl.received:
        kind = r.WhichOneof("message")
        if kind in ("update", "logs", "usage", "session_message") and getattr(r, kind).run_id == run_id:
            out.append(kind)
    return out


async def test_hello_heartbeats_and_api_key(
    tmp_path: Path, replicas: tuple[FakeController, FakeController]
) -> None:
    a, b = replicas
    settings = worker_settings(
        tmp_path, a.address, b.address, GODEL_API_KEY="godel_sk_test", GODEL_WORKER_CAPACITY="3"
    )
    worker = Worker(settings)
    await worker.start()
    try:
        for ctl in (a, b):
            stream = await ctl.wait_stream()
            assert stream.hello is not None
            assert stream.received[0].WhichOneof("message") == "hello"
            assert (stream.hello.worker_id, list(stream.hello.runtimes), stream.hello.capacity) == (
                "worker-test",
                ["command", "openai", "openclaw"],
                3,
            )
            assert stream.hello.hostname
            assert ctl.metadata[-1]["x-api-key"] == "godel_sk_test"
            beat = await ctl.wait_for(lambda r: r.WhichOneof("message") == "heartbeat", timeout=15)
            assert beat.heartbeat.free_capacity == 3
    finally:
        await worker.stop()


async def test_adopt_moves_a_runs_messages_to_the_adopting_stream(
    tmp_path: Path, replicas: tuple[FakeController, FakeController]
) -> None:
    a, b = replicas
    async with connected_worker(tmp_path, a, b) as (worker, repo):
        a.assign(assignment(repo, "r1", "a1", gated("tick 1", "tick 8")))
        await a.wait_update("r1", ws.RUN_STATE_RUNNING)
        assert _kinds(b, "r1") == []
        b.control("r1", ws.CONTROL_ACTION_ADOPT)
        assert (await b.wait_ack("r1", ws.CONTROL_ACTION_ADOPT)).ok
        before = len(_kinds(a, "r1"))
        open_gate(worker, "r1")
        final = await b.wait_final("r1")
        assert final.state == ws.RUN_STATE_SUCCEEDED
        assert len(_kinds(a, "r1")) == before  # nothing more went to the old owner
        assert b.states("r1")[0] == ws.RUN_STATE_RUNNING  # the adopter first gets the current state
        assert any(line.message == "tick 8" for line in b.log_lines("r1"))
        assert not any(line.message == "tick 8" for line in a.log_lines("r1"))
        # Heartbeats list the run until its final update is acknowledged, then it leaves the worker.
        await wait_for_async(lambda: "r1" not in worker.runs, 5, "the run to leave the worker")


async def test_messages_wait_for_the_owner_and_go_to_an_adopter(
    tmp_path: Path, replicas: tuple[FakeController, FakeController]
) -> None:
    a, b = replicas
    async with connected_worker(tmp_path, a, b) as (worker, repo):
        a.assign(assignment(repo, "r1", "a1", gated("early", "late")))
        await a.wait_for(lambda r: r.WhichOneof("message") == "logs")
        # What `a` got must be acknowledged before it goes: an update still unacknowledged is rightly
        # sent again to the adopter, and the adopter would then see more than what came meanwhile.
        await wait_for_async(lambda: len(worker.runs["r1"].outbox) == 0, 15, "a to acknowledge what it got")
        await a.stop()  # the owner goes away; the run finishes meanwhile
        open_gate(worker, "r1")
        await asyncio.wait_for(worker.runs["r1"].done.wait(), 15)
        assert worker.runs["r1"].finished and len(worker.runs["r1"].outbox) >= 2
        beat = await b.wait_for(
            lambda r: (
                r.WhichOneof("message") == "heartbeat"
                and any(s.run_id == "r1" and s.state == ws.RUN_STATE_SUCCEEDED for s in r.heartbeat.runs)
            ),
            timeout=15,
        )
        assert beat is not None
        b.control("r1", ws.CONTROL_ACTION_ADOPT)
        final = await b.wait_final("r1")
        assert final.state == ws.RUN_STATE_SUCCEEDED
        assert [line.message for line in b.log_lines("r1")] == ["late"]
        assert b.states("r1") == [ws.RUN_STATE_SUCCEEDED]
        assert [line.message for line in a.log_lines("r1")] == ["early"]


async def test_the_same_replica_gets_its_buffered_messages_after_reconnecting(tmp_path: Path) -> None:
    a = await FakeController("replica-a").start()
    try:
        async with connected_worker(tmp_path, a) as (worker, repo):
            a.assign(assignment(repo, "r1", "a1", gated("early", "late")))
            await a.wait_for(lambda r: r.WhichOneof("message") == "logs")
            await a.stop()  # the run finishes while its replica is away
            open_gate(worker, "r1")
            await asyncio.wait_for(worker.runs["r1"].done.wait(), 15)
            count = len(a.streams)
            await a.start()  # same port, same replica id
            stream = await a.wait_stream(after=count)
            assert stream.hello is not None
            assert [(s.run_id, s.state) for s in stream.hello.runs] == [("r1", ws.RUN_STATE_SUCCEEDED)]
            final = await a.wait_for(
                lambda r: r.WhichOneof("message") == "update" and r.update.state == ws.RUN_STATE_SUCCEEDED,
                source=stream.received,
            )
            assert final.update.run_id == "r1"
            assert [line.message for line in a.log_lines("r1")] == ["early", "late"]
    finally:
        await a.stop()


async def test_a_restarted_replica_must_adopt(tmp_path: Path) -> None:
    a = await FakeController("replica-a").start()
    try:
        async with connected_worker(tmp_path, a) as (_, repo):
            a.assign(assignment(repo, "r1", "a1", ["sleep", "600"]))
            await a.wait_update("r1", ws.RUN_STATE_RUNNING)
            await a.stop()
            restarted = await FakeController("replica-a2", port=a.port).start()
            try:
                stream = await restarted.wait_stream()
                assert stream.hello is not None
                assert [(s.run_id, s.state) for s in stream.hello.runs] == [("r1", ws.RUN_STATE_RUNNING)]
                assert stream.hello.runs[0].pid > 0
                restarted.control("r1", ws.CONTROL_ACTION_KILL)
                assert (await restarted.wait_ack("r1", ws.CONTROL_ACTION_KILL)).ok
                with pytest.raises(TimeoutError):
                    await restarted.wait_final("r1", timeout=0.5)  # not owned yet: buffered
                restarted.control("r1", ws.CONTROL_ACTION_ADOPT)
                assert (await restarted.wait_final("r1")).state == ws.RUN_STATE_KILLED
            finally:
                await restarted.stop()
    finally:
        await a.stop()


async def test_shutdown_reports_running_runs_lost(tmp_path: Path) -> None:
    a = await FakeController("replica-a").start()
    repo = make_git_repo(tmp_path / "repo")
    worker = Worker(worker_settings(tmp_path, a.address))
    await worker.start()
    try:
        await a.wait_stream()
        a.assign(assignment(repo, "r1", "a1", ["sleep", "600"]))
        await a.wait_update("r1", ws.RUN_STATE_RUNNING)
        await worker.stop()
        final = await a.wait_final("r1", timeout=15)
        # Not the agent's failure: LOST runs are run again by the agent service.
        assert (final.state, final.error) == (ws.RUN_STATE_LOST, "worker shutting down")
    finally:
        await a.stop()


async def test_a_new_run_of_an_agent_supersedes_its_old_run_even_at_capacity(tmp_path: Path) -> None:
    """A restart assigns the agent's new run before the kill of its old run has arrived or finished:
    the worker kills the old run and starts the new one once it has stopped (it used to reject the
    new run, and the agent service then failed the agent)."""
    a = await FakeController("replica-a").start()
    repo = make_git_repo(tmp_path / "repo")
    worker = Worker(worker_settings(tmp_path, a.address, GODEL_WORKER_CAPACITY="1"))
    await worker.start()
    try:
        await a.wait_stream()
        a.assign(assignment(repo, "r1", "a1", ["sleep", "600"]))
        await a.wait_update("r1", ws.RUN_STATE_RUNNING)
        a.assign(assignment(repo, "r2", "a1", ["sleep", "600"], reuse_worktree=True))  # as a restart does
        old = await a.wait_final("r1")
        assert (old.state, old.error) == (ws.RUN_STATE_KILLED, "superseded by run r2")
        await a.wait_update("r2", ws.RUN_STATE_RUNNING)
        assert worker.active_runs == 1
    finally:
        await worker.stop()
        await a.stop()


async def test_a_stop_goes_on_when_a_connection_ignores_its_cancel(
    tmp_path: Path,
    replicas: tuple[FakeController, FakeController],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker on SIGTERM must exit even when a task it cancels does not end (a stream call that
    swallows the cancel): once stopped, it waits a bounded time for it, says so, and goes on (CI
    once saw a worker that never logged "worker stopped")."""
    monkeypatch.setattr(connection, "CANCEL_WAIT_SECONDS", 0.3)
    caplog.set_level(logging.INFO, logger="godel_server.worker")
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    try:
        async with connected_worker(tmp_path, replicas[0]) as (worker, _):
            conn = worker.connections[0]
            assert conn._task is not None
            conn._task.cancel()
            conn._task = asyncio.create_task(stubborn())
            await asyncio.sleep(0)
            began = asyncio.get_running_loop().time()
        # connected_worker's exit has run worker.stop()
        assert asyncio.get_running_loop().time() - began < 5
        assert any("did not end within" in r.getMessage() for r in caplog.records)
        assert "worker stopped" in caplog.text
    finally:
        release.set()
