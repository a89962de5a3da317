"""Small parts of the worker: settings, the outbox bounds, the pausable clock, URLs, leftovers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.runtime.bounds import clamp
from godel_server.runtime.config import ConfigError, load_worker_settings, max_worker_capacity
from godel_server.worker.messages import log_line
from godel_server.worker.outbox import RunOutbox
from godel_server.worker.pause import PauseState
from godel_server.worker.procs import OWNER_VARIABLE, group_members, kill_leftovers, owner_env
from godel_server.worker.runtimes.command import render_argv
from godel_server.worker.runtimes.openai import chat_url
from tests.fakes.worker_env import alive
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(30)


def test_worker_settings_defaults_and_overrides(tmp_path: Path) -> None:
    s = load_worker_settings({"GODEL_HOME": str(tmp_path), "GODEL_AGENT_PORT": "6000"})
    assert s.connect == ("127.0.0.1:6000",)
    assert s.capacity == 16 and s.max_steps == 50
    # Beside GODEL_HOME, not in it: no key or database lies above a worktree.
    assert s.worktree_root == tmp_path.with_name(f"{tmp_path.name}-worktrees")
    assert s.openai_base_url == "https://api.openai.com"
    # The identity comes from the state directory (worker/statedir.py) unless GODEL_WORKER_ID is set.
    assert s.worker_id == "" and s.state_dir is None and s.api_key is None
    assert load_worker_settings({"GODEL_AGENT_ADDR": "agent:1"}).connect == ("agent:1",)
    key_file = tmp_path / "key"
    key_file.write_text("godel_sk_file\n")
    s = load_worker_settings(
        {
            "GODEL_WORKER_CONNECT": "a:1, b:2",
            "GODEL_WORKER_ID": "w1",
            "GODEL_WORKER_CAPACITY": "3",
            "GODEL_OPENAI_API_KEY": "sk-secret",
            "GODEL_API_KEY_FILE": str(key_file),
            "GODEL_WORKER_MAX_STEPS": "7",
        }
    )
    assert (s.connect, s.worker_id, s.capacity, s.max_steps) == (("a:1", "b:2"), "w1", 3, 7)
    assert s.api_key == "godel_sk_file" and s.openai_api_key == "sk-secret"
    assert "sk-secret" not in repr(s) and "godel_sk_file" not in repr(s)
    with pytest.raises(ConfigError, match="GODEL_WORKER_CAPACITY"):
        load_worker_settings({"GODEL_WORKER_CAPACITY": "many"})
    with pytest.raises(ConfigError, match="GODEL_API_KEY_FILE"):
        load_worker_settings({"GODEL_API_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="GODEL_WORKER_ID"):
        load_worker_settings({"GODEL_WORKER_ID": "../etc"})
    assert load_worker_settings({"GODEL_WORKER_STATE_DIR": str(tmp_path / "s")}).state_dir == tmp_path / "s"


def _logs(n: int) -> ws.ConnectRequest:
    return ws.ConnectRequest(logs=ws.RunLogs(run_id="r", lines=[log_line(f"l{i}") for i in range(n)]))


def test_a_heartbeat_of_a_worker_at_its_largest_capacity_is_not_cut(tmp_path: Path) -> None:
    """The agent service cuts a message to the contract's bounds, and a run a heartbeat does not list
    is taken for lost: a worker may list every run it may hold, ended ones awaiting acknowledgement
    included (twice its capacity). With a bound of 1,000, the 1,001st agent of a worker went missing."""
    largest = max_worker_capacity()
    assert largest == 10_000
    assert (
        load_worker_settings({"GODEL_HOME": str(tmp_path), "GODEL_WORKER_CAPACITY": str(largest)}).capacity
        == largest
    )
    with pytest.raises(ConfigError, match=f"GODEL_WORKER_CAPACITY must be 0..{largest}"):
        load_worker_settings({"GODEL_HOME": str(tmp_path), "GODEL_WORKER_CAPACITY": str(largest + 1)})
    runs = [
        ws.RunStatus(run_id=f"r{n}", agent_id=f"a{n}", state=ws.RUN_STATE_RUNNING) for n in range(2 * largest)
    ]
    for message in (ws.WorkerHeartbeat(runs=runs), ws.WorkerHello(worker_id="w", runs=runs)):
        assert clamp(message) == [] and len(message.runs) == 2 * largest


def test_outbox_drops_oldest_logs_first_and_never_updates() -> None:
    box = RunOutbox("r", "a", limit=4)  # no journal: memory only
    box.add(ws.ConnectRequest(update=ws.RunUpdate(run_id="r", state=ws.RUN_STATE_RUNNING)))
    box.add(_logs(2))
    box.add(ws.ConnectRequest(usage=ws.RunUsage(run_id="r", model="m", prompt_tokens=1, completion_tokens=2)))
    box.add(_logs(3))
    box.add(
        ws.ConnectRequest(usage=ws.RunUsage(run_id="r", model="m", prompt_tokens=10, completion_tokens=20))
    )
    box.add(ws.ConnectRequest(update=ws.RunUpdate(run_id="r", state=ws.RUN_STATE_SUCCEEDED)))
    box.add(ws.ConnectRequest(update=ws.RunUpdate(run_id="r", state=ws.RUN_STATE_SUCCEEDED)))
    assert box.dropped_lines == 5
    drained = [request for _, request in box.take()]
    kinds = [r.WhichOneof("message") for r in drained]
    assert kinds == ["logs", "update", "usage", "update", "update"]
    assert "5 log lines" in drained[0].logs.lines[0].message
    usage = drained[2].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 22)
    # Updates and usage are numbered in the order they were made, and kept until acknowledged.
    assert [drained[i].update.seq or drained[i].usage.seq for i in (1, 2, 3, 4)] == [1, 3, 5, 6]
    assert box.take() == [] and box.unacknowledged == 4
    box.ack(5)
    assert box.unacknowledged == 1
    box.ack(6)
    assert len(box) == 0


async def test_pausable_clock_stops_while_paused() -> None:
    active, paused_for = 2.0, 2.5  # seconds; 2 s of slack for a stalled, loaded machine
    pause = PauseState()
    start = time.monotonic()
    sleeper = asyncio.create_task(pause.sleep_active(active))
    await asyncio.sleep(0)  # the sleeper starts counting
    pause.set_paused(True)
    counted = time.monotonic() - start  # at most this much active time was spent before the pause
    assert counted < active, f"the test itself stalled for {counted:.2f}s before it could pause"
    await asyncio.sleep(paused_for)  # longer than `active`: only a stopped clock keeps it waiting
    assert not sleeper.done()
    resumed = time.monotonic()
    pause.set_paused(False)
    await asyncio.wait_for(sleeper, 15)
    # The rest of the active time is spent after the resume (a timer may fire 1 ms early).
    assert time.monotonic() - resumed >= active - counted - 0.001


def test_chat_url_and_argv_rendering() -> None:
    for base in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"):
        assert chat_url(base) == "http://h:1/v1/chat/completions"
    assert chat_url("http://h/api/v1") == "http://h/api/v1/chat/completions"
    values = {"task": "say {model}", "worktree": "/w", "agent_id": "a", "model": "m"}
    assert render_argv(["x", "{task}:{agent_id}", "{unknown}"], values) == ["x", "say {model}:a", "{unknown}"]


def test_what_a_gone_worker_on_the_root_left_running_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "worktrees"
    # Marked by a worker that is gone (no such pid), by a live one (this test's parent, with its
    # real start time), by a gone one on another root, and not marked at all.
    parent_start = Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    assert owner_env(root) == {OWNER_VARIABLE: f"{os.getpid()}:{own_start_time()}:{root}"}

    def start(script: str, owner: str | None) -> subprocess.Popen[bytes]:
        env = {**os.environ, OWNER_VARIABLE: owner} if owner else dict(os.environ)
        return subprocess.Popen(["sh", "-c", script], env=env, start_new_session=True)

    marked = start("sleep 600 & sleep 600", f"4194999:1:{root}")
    others = [
        start("sleep 600", f"{os.getppid()}:{parent_start}:{root}"),
        start("sleep 600", f"4194999:1:{tmp_path / 'elsewhere'}"),
        start("sleep 600", None),
    ]
    try:
        wait_for(lambda: len(group_members(marked.pid)) >= 3, 10, "sh and its two sleeps", interval=0.01)
        members = group_members(marked.pid)
        assert len(members) == 3
        assert kill_leftovers(root) == [marked.pid]
        marked.wait(timeout=15)
        # The sleeps would live 600 s: dying within the deadline is the kill's doing.
        wait_for(lambda: not any(alive(pid) for pid in members), 15, "the group to die", interval=0.01)
        assert all(proc.poll() is None for proc in others)
    finally:
        for proc in (marked, *others):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=2)


def own_start_time() -> str:
    return Path("/proc/self/stat").read_text().rsplit(")", 1)[-1].split()[19]
