"""Acknowledged delivery on the worker side: numbered updates and usage kept (in memory and in the
run's journal) until the replica acknowledges them and sent again after a reconnect; merges and a
window that keep a run's backlog small; the state directory that keeps a worker's identity; and
the run lease that stops a run whose owner has gone silent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.worker.outbox import WINDOW, Journal, RunOutbox, seq_of
from godel_server.worker.statedir import StateDirError, claim
from tests.fakes.worker_controller import FakeController
from tests.fakes.worker_env import assignment, running_worker, worker_settings
from tests.waits import wait_for_async

pytestmark = pytest.mark.timeout(60)


def _update(state: int, run_id: str = "r") -> ws.ConnectRequest:
    return ws.ConnectRequest(update=ws.RunUpdate(run_id=run_id, agent_id="a", state=state))  # type: ignore[arg-type]


def _usage(model: str, prompt: int) -> ws.ConnectRequest:
    return ws.ConnectRequest(usage=ws.RunUsage(run_id="r", agent_id="a", model=model, prompt_tokens=prompt))


def _logs(text: str) -> ws.ConnectRequest:
    return ws.ConnectRequest(logs=ws.RunLogs(run_id="r", lines=[ws.RunLogLine(message=text)]))


def _describe(requests: list[ws.ConnectRequest]) -> list[str]:
    out = []
    for r in requests:
        kind = r.WhichOneof("message")
        if kind == "update":
            out.append(f"{ws.RunState.Name(r.update.state).removeprefix('RUN_STATE_')}#{r.update.seq}")
        elif kind == "usage":
            out.append(f"usage:{r.usage.model}:{r.usage.prompt_tokens}#{r.usage.seq}")
        else:
            out.append(f"log:{r.logs.lines[0].message}")
    return out


def test_waiting_messages_merge_and_the_journal_keeps_what_is_unacknowledged(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    box = RunOutbox("r", "a", journal)
    box.add(_update(ws.RUN_STATE_STARTING))
    box.add(_logs("one"))
    box.add(_usage("m", 1))
    box.add(_update(ws.RUN_STATE_WORKTREE_READY))  # supersedes STARTING: neither was sent
    box.add(_usage("m", 2))  # added into the waiting usage of the same model
    box.add(_usage("n", 5))
    box.add(_update(ws.RUN_STATE_RUNNING))
    box.add(_update(ws.RUN_STATE_SUCCEEDED))  # final: never merged, never superseded
    expected = ["log:one", "usage:m:3#3", "usage:n:5#5", "RUNNING#6", "SUCCEEDED#7"]
    assert _describe(journal.load()["r"]) == [e for e in expected if not e.startswith("log")]
    taken = box.take()
    assert _describe([r for _, r in taken]) == expected
    # Once handed to a stream a message never changes: a later usage gets a number of its own.
    box.add(_usage("m", 4))
    assert _describe([r for _, r in box.take()]) == ["usage:m:4#8"]
    assert box.ack(6) and _describe(journal.load()["r"]) == ["SUCCEEDED#7", "usage:m:4#8"]
    # The stream broke: what was in flight goes again, in its order, after a reconnect.
    box.rewind()
    assert _describe([r for _, r in box.take()]) == ["SUCCEEDED#7", "usage:m:4#8"]
    box.ack(8)
    assert len(box) == 0 and not (tmp_path / "r").exists()


def test_a_broken_stream_gives_back_its_unwritten_messages_in_their_place() -> None:
    box = RunOutbox("r", "a")
    box.add(_update(ws.RUN_STATE_RUNNING))
    box.add(_logs("a"))
    box.add(_usage("m", 1))
    box.add(_logs("b"))
    taken = box.take()
    # The stream wrote the first two, then broke: the other two come back from the connection,
    # and what it wrote without an acknowledgement goes again too.
    box.requeue(taken[2:])
    assert _describe([r for _, r in box.take()]) == ["RUNNING#1", "usage:m:1#3", "log:b"]


def test_at_most_a_window_of_messages_is_in_flight() -> None:
    box = RunOutbox("r", "a")
    for i in range(WINDOW + 5):
        box.add(_usage(f"m{i}", 1))
    box.add(_logs("after"))  # behind them, in order
    first = box.take()
    assert len(first) == WINDOW and box.take() == []
    box.ack(seq_of(first[9][1]))
    second = box.take()
    assert _describe([r for _, r in second])[-1] == "log:after" and len(second) == 6
    assert box.unacknowledged == WINDOW - 10 + 5
    box.ack(seq_of(second[-2][1]))
    assert len(box) == 0
    box.add(_usage("m0", 1))
    box.add(_usage("m0", 1))
    assert _describe([r for _, r in box.take()]) == ["usage:m0:2#71"]


async def test_acknowledgements_are_saved_together_a_moment_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new message is in the journal before it is sent; what acknowledgements remove is saved a
    moment later, every run's in one batch (a thousand agents coming up rewrote a file per
    acknowledgement, in the event loop). Killed in between, the worker sends those again."""
    journal = Journal(tmp_path)
    boxes = [RunOutbox(f"r{n}", "a", journal) for n in range(50)]
    for n, box in enumerate(boxes):
        box.add(_update(ws.RUN_STATE_RUNNING, run_id=f"r{n}"))
        box.take()
    assert len(journal.load()) == 50
    saves: list[str] = []
    real = journal.save

    def counted(run_id: str, requests: list[ws.ConnectRequest]) -> None:
        saves.append(run_id)
        real(run_id, requests)

    monkeypatch.setattr(journal, "save", counted)
    assert all(box.ack(1) for box in boxes)
    assert saves == [] and len(journal.load()) == 50  # a restart now would send them again
    await wait_for_async(lambda: not journal.load(), 5, "the acknowledged messages to leave the journal")
    assert sorted(saves) == sorted(f"r{n}" for n in range(50))
    # A message added before the batch is saved with it at once.
    boxes[0].add(_update(ws.RUN_STATE_SUCCEEDED, run_id="r0"))
    assert _describe(journal.load()["r0"]) == ["SUCCEEDED#2"]


def test_a_journal_restores_what_a_dead_process_left(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    box = RunOutbox("r", "a", journal)
    box.add(_update(ws.RUN_STATE_RUNNING))
    box.add(_usage("m", 7))
    (tmp_path / "garbage").write_bytes(b"\x00\x00\x00\x09not-proto")
    (tmp_path / ".r.tmp").write_bytes(b"half written")
    left = journal.load()
    assert list(left) == ["r"] and not (tmp_path / "garbage").exists()
    restored = RunOutbox.restore("r", "a", journal, left["r"])
    restored.add(_update(ws.RUN_STATE_LOST))
    # Sent again as they were (they may have been applied), numbering goes on after them.
    assert _describe([r for _, r in restored.take()]) == ["RUNNING#1", "usage:m:7#2", "LOST#3"]


def test_the_state_directory_keeps_the_identity_and_is_held_by_one_worker(tmp_path: Path) -> None:
    settings = worker_settings(tmp_path, "127.0.0.1:1", GODEL_WORKER_ID="")
    first = claim(settings)
    second = claim(settings)  # a second worker on the same home takes the next directory
    assert first.path.name == "0" and second.path.name == "1"
    assert first.worker_id.startswith("worker-") and first.worker_id != second.worker_id
    first.release()
    again = claim(settings)  # a restarted worker takes its predecessor's place, and identity
    assert (again.path, again.worker_id) == (first.path, first.worker_id)
    explicit = dataclasses.replace(settings, state_dir=again.path)
    with pytest.raises(StateDirError, match="held by another live worker"):
        claim(explicit)
    for state in (second, again):
        state.release()


async def test_unacknowledged_updates_are_sent_again_after_a_reconnect(tmp_path: Path) -> None:
    async with running_worker(tmp_path, FakeController("replica-a", acks=False)) as env:
        ctl, worker = env.ctl, env.worker
        ctl.assign(assignment(env.repo, "r1", "a1", ["true"]))
        first = await ctl.wait_final("r1")
        journal = worker.state.journal / "r1"
        assert journal.exists() and "r1" in worker.runs  # kept until acknowledged
        count = len(ctl.streams)
        ctl.acks = True
        await ctl.stop()
        await ctl.start()  # the same replica comes back
        stream = await ctl.wait_stream(after=count)
        again = await ctl.wait_for(
            lambda r: r.WhichOneof("message") == "update" and r.update.state == ws.RUN_STATE_SUCCEEDED,
            source=stream.received,
        )
        assert again.update.seq == first.seq  # the same message: the replica applies it once
        await wait_for_async(
            lambda: "r1" not in worker.runs and not journal.exists(), 5, "the run and its journal to go"
        )


async def test_a_run_whose_owner_goes_silent_is_stopped_and_reported_lost(tmp_path: Path) -> None:
    silent_soon = FakeController("replica-a", heartbeat_interval_ms=100, run_lease_ms=800)
    async with running_worker(tmp_path, silent_soon) as env:
        env.ctl.assign(assignment(env.repo, "r1", "a1", ["sleep", "600"]))
        await env.ctl.wait_update("r1", ws.RUN_STATE_RUNNING)
        await wait_for_async(lambda: env.worker.runs["r1"].pid > 0, 5, "the run's process")
        env.ctl.acks = False  # heartbeats go unanswered from now on (the replica hangs, or the network)
        final = await env.ctl.wait_final("r1", timeout=5)
        assert final.state == ws.RUN_STATE_LOST
        assert "lost contact with agent-service replica replica-a" in final.error
